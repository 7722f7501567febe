//! kvlab against an independent implementation of the same weights: HF transformers loading
//! the same GGUF (dequantized by the `gguf` package), with SmolLM2's original tokenizer. The
//! fixture is made by `scripts/reference/make_fixture.py`; the model is fetched as a user's
//! first run fetches it.

use std::sync::OnceLock;

use burn::prelude::*;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::gguf::GgufFile;
use kvlab_model::loader::weights_from_gguf;
use kvlab_model::model::tokens_tensor;
use kvlab_model::tokenizer::Tokenizer;
use kvlab_model::{KvCache, Model, ModelWeights, NoCache, perplexity};
use serde_json::Value;

type B = burn_flex::Flex;

fn fixture() -> &'static Value {
    static FIXTURE: OnceLock<Value> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = include_str!("fixtures/smollm2_reference.json");
        serde_json::from_str(text).expect("fixture parses")
    })
}

fn assets() -> &'static (ModelWeights, Tokenizer) {
    static ASSETS: OnceLock<(ModelWeights, Tokenizer)> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let path = kvlab_model::assets::smollm2_gguf(None).expect("SmolLM2 GGUF fetched");
        let file = GgufFile::open(&path).expect("GGUF opens");
        let weights = weights_from_gguf(&file).expect("weights load");
        let tokenizer = Tokenizer::from_gguf(&file).expect("tokenizer builds");
        (weights, tokenizer)
    })
}

fn model() -> Model<B> {
    Model::from_weights(&assets().0, &Default::default()).expect("model uploads")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

#[test]
fn tokenization_equals_the_original_tokenizer() {
    let tokenizer = &assets().1;
    for case in fixture()["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let got = tokenizer.encode(text).unwrap();
        assert_eq!(got, ids(&case["ids"]), "tokenization of {:?}", case["name"]);
        assert_eq!(tokenizer.decode(&got).unwrap(), text, "round trip of {:?}", case["name"]);
    }
}

#[test]
fn logits_match_the_reference_on_the_fixture_sequence() {
    let model = model();
    let logits_fx = &fixture()["logits"];
    let input = ids(&logits_fx["ids"]);
    let logits =
        model.forward(tokens_tensor(&[&input], &model.device()), &mut NoCache::new(1)).unwrap();
    let [_, t, vocab] = logits.dims();
    let host: Vec<f32> = logits.into_data().to_vec().unwrap();
    let positions = logits_fx["positions"].as_array().unwrap();
    assert_eq!(positions.len(), t);
    let (mut max_diff, mut top1_agree) = (0.0f32, 0);
    for (pos, want) in positions.iter().enumerate() {
        let row = &host[pos * vocab..(pos + 1) * vocab];
        let top_k = want["top_k"].as_array().unwrap();
        let want_top1 = top_k[0][0].as_u64().unwrap() as u32;
        top1_agree += usize::from(kvlab_model::generate::argmax(row) == want_top1);
        for pair in top_k {
            let (id, logit) =
                (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
            max_diff = max_diff.max((row[id] - logit).abs());
        }
    }
    println!("top-1 agreement {top1_agree}/{t}, max |Δlogit| over reference top-10 = {max_diff}");
    assert_eq!(top1_agree, t, "top-1 must agree at every position");
    assert!(max_diff <= 1e-3, "max |Δlogit| = {max_diff}");
}

#[test]
fn perplexity_matches_and_streaming_through_the_full_cache_is_exact() {
    let model = model();
    let fx = &fixture()["perplexity"];
    let tokens = ids(&fx["text_ids"]);
    let want = fx["ppl"].as_f64().unwrap();
    let chunked =
        perplexity::chunked(&model, &tokens, fx["chunk"].as_u64().unwrap() as usize).unwrap();
    let rel = (chunked.ppl - want).abs() / want;
    println!("chunked ppl {} vs reference {want} ({:.4}%)", chunked.ppl, rel * 100.0);
    assert_eq!(chunked.predicted, fx["n_predicted"].as_u64().unwrap() as usize);
    assert!(rel <= 0.005, "ppl {} vs reference {want}", chunked.ppl);

    // The seam is exact on the real model: one token at a time through a full cache gives the
    // same perplexity as full attention over the same tokens.
    let config = &model.config;
    let mut cache = kvlab_model_test_support::full_cache(config, tokens.len());
    let streamed = perplexity::streaming(&model, cache.as_mut(), &tokens, |_, _| {}).unwrap();
    let rel = (streamed.ppl - chunked.ppl).abs() / chunked.ppl;
    println!("streaming ppl {} vs chunked {} (rel {rel:e})", streamed.ppl, chunked.ppl);
    assert!(rel <= 1e-4, "streaming {} vs chunked {}", streamed.ppl, chunked.ppl);
}

#[test]
fn greedy_continuation_matches_the_reference() {
    let model = model();
    let fx = &fixture()["greedy"];
    let prompt = assets().1.encode(fx["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(prompt, ids(&fx["prompt_ids"]));
    let want = ids(&fx["ids"]);
    let mut cache = kvlab_model_test_support::full_cache(&model.config, prompt.len() + want.len());
    let got =
        generate(&model, cache.as_mut(), &[prompt], want.len(), &Sampling::Greedy, |_| {}).unwrap();
    println!("continuation: {:?}", assets().1.decode(&got[0]).unwrap());
    assert_eq!(got[0], want);
}

/// A full contiguous cache without depending on the strategies crate: concatenation, the
/// simplest cache there is.
mod kvlab_model_test_support {
    use super::*;
    use kvlab_model::{AttentionMask, CacheError, KvMemory, KvView, ModelConfig, RotaryEncoding};
    use std::ops::Range;

    pub struct Concat {
        layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
        len: usize,
    }

    pub fn full_cache(config: &ModelConfig, _max: usize) -> Box<dyn KvCache<B>> {
        Box::new(Concat { layers: vec![None; config.n_layers], len: 0 })
    }

    impl KvCache<B> for Concat {
        fn next_input(&self, total: usize) -> Range<usize> {
            self.len..total
        }
        fn query_start(&self) -> Vec<usize> {
            vec![self.len]
        }
        fn write(
            &mut self,
            layer: usize,
            k: Tensor<B, 4>,
            v: Tensor<B, 4>,
            rope: &RotaryEncoding<B>,
        ) -> Result<(), CacheError> {
            let k = rope.apply(k, &[self.len]);
            let (k, v) = match self.layers[layer].take() {
                Some((ok, ov)) => (Tensor::cat(vec![ok, k], 2), Tensor::cat(vec![ov, v], 2)),
                None => (k, v),
            };
            self.layers[layer] = Some((k, v));
            Ok(())
        }
        fn view(
            &self,
            layer: usize,
            _new_tokens: usize,
            _rope: &RotaryEncoding<B>,
        ) -> Result<KvView<B>, CacheError> {
            let (k, v) = self.layers[layer].clone().expect("written before viewed");
            Ok(KvView::dense(k, v, AttentionMask::CausalEnd))
        }
        fn commit(&mut self, n: usize) {
            self.len += n;
        }
        fn reset(&mut self) {
            self.layers.iter_mut().for_each(|l| *l = None);
            self.len = 0;
        }
        fn memory(&self) -> KvMemory {
            KvMemory::default()
        }
        fn stored_shape(&self, _: usize) -> Option<[usize; 4]> {
            None
        }
    }
}

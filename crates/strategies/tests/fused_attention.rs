//! The fused attention (`kvlab_model::fused_attention`, one pass on flex) against the dense path
//! it replaces, within 1e-4:
//! - on the very views every strategy × bits × batch 1/3 × MHA/GQA/MQA hands attention (their
//!   strides, gathers, masks), step by step past every budget, against a dense reference
//!   written here;
//! - end to end, the model's logits with fused and dense attention for every f32 strategy and
//!   for a paged batch with ragged rows (a hidden-key mask). (Over int8/int4 stores the two
//!   models' K/V can round to neighbouring codes — a 1e-7 difference crossing a rounding
//!   boundary — so their logits are compared through the views instead.)

mod common;

use std::ops::Range;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use common::{B, assert_close, prompts, run, toy_model};
use kvlab_model::fused_attention::{Visible, attend};
use kvlab_model::model::tokens_tensor;
use kvlab_model::{
    AttentionMask, CacheError, KvCache, KvData, KvMemory, KvView, Model, RotaryEncoding,
};
use kvlab_strategies::store::F32Store;
use kvlab_strategies::{KvLayout, PagedCache, StrategyKind, StrategySpec};

/// A spec of `kind` whose budgets the 6 + 10 tokens below outgrow.
fn spec(kind: StrategyKind, bits: Option<u8>) -> StrategySpec {
    StrategySpec {
        cache_tokens: Some(8),
        sink_tokens: Some(2),
        block_size: Some(4),
        window: Some(2),
        kernel: Some(3),
        bits,
        ..StrategySpec::new(kind)
    }
}

fn with_fused(model: &Model<B>, fused: bool) -> Model<B> {
    let mut m = model.clone();
    m.set_fused_attention(fused);
    m
}

#[test]
fn fused_attention_equals_the_dense_path_for_every_strategy() {
    let (mut checked, mut bitwise_equal) = (0, 0);
    for kv_heads in [4, 2, 1] {
        let (config, model) = toy_model(kv_heads);
        let (dense, fused) = (with_fused(&model, false), with_fused(&model, true));
        for batch in [1, 3] {
            let p = prompts(batch, 6);
            for kind in StrategyKind::all() {
                let what = format!("{kind} batch {batch} kv_heads {kv_heads}");
                let build = || spec(kind, None).build::<B>(&config, batch, 32, &Default::default());
                let (want_tokens, want) = run(&dense, build().unwrap().as_mut(), &p, 10);
                let (got_tokens, got) = run(&fused, build().unwrap().as_mut(), &p, 10);
                assert_close(&what, &got, &want);
                assert_eq!(got_tokens, want_tokens, "{what}: greedy tokens");
                checked += 1;
                bitwise_equal += usize::from(got == want);
            }
        }
    }
    assert_eq!(checked, 3 * 2 * StrategyKind::all().count());
    // Another summation order: had the model fallen back to the dense path, every run would be
    // bit for bit the same.
    assert!(bitwise_equal < checked / 2, "{bitwise_equal} of {checked} runs bitwise equal");
}

/// Delegates to a strategy and keeps every view it hands attention.
struct Recording {
    inner: Box<dyn KvCache<B>>,
    views: Vec<KvView<B>>,
}

impl KvCache<B> for Recording {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.inner.next_input(total)
    }
    fn max_step_tokens(&self) -> usize {
        self.inner.max_step_tokens()
    }
    fn query_start(&self) -> Vec<usize> {
        self.inner.query_start()
    }
    fn reserve(&mut self, new_tokens: usize) -> Result<(), CacheError> {
        self.inner.reserve(new_tokens)
    }
    fn observes_attention(&self, layer: usize) -> bool {
        self.inner.observes_attention(layer)
    }
    fn observe_attention(&mut self, layer: usize, probs: Tensor<B, 4>) {
        self.inner.observe_attention(layer, probs)
    }
    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        self.inner.write(layer, k, v, rope)
    }
    fn view(
        &self,
        layer: usize,
        t: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        self.inner.view(layer, t, rope)
    }
    fn update(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let view = self.inner.update(layer, k, v, rope)?;
        self.views.push(view.clone());
        Ok(view)
    }
    fn commit(&mut self, new_tokens: usize) {
        self.inner.commit(new_tokens)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn memory(&self) -> KvMemory {
        self.inner.memory()
    }
    fn stored_shape(&self, layer: usize) -> Option<[usize; 4]> {
        self.inner.stored_shape(layer)
    }
}

/// The dense formula, written out: `softmax(q·kᵀ/√d + mask)·v` over folded query rows.
///
/// # Shapes
/// - q: `[b, kvh, n_rep · t, d]`; k, v: `[b, kvh, s, d]`; hidden: `[b, t, s]`
fn dense(q: Tensor<B, 4>, view: &KvView<B>, t: usize) -> Tensor<B, 4> {
    let [b, _, rows, d] = q.dims();
    let (k, v) = view.to_dense();
    let s = k.dims()[2];
    let n_rep = rows / t;
    let hidden: Vec<bool> = match &view.mask {
        AttentionMask::CausalEnd => (0..b)
            .flat_map(|_| (0..t).flat_map(move |i| (0..s).map(move |j| j + t > s + i)))
            .collect(),
        AttentionMask::Hidden(h) => h.clone().into_data().to_vec().unwrap(),
    };
    // [b, 1, n_rep · t, s]: row r of a group is token r % t.
    let bias: Vec<f32> = (0..b)
        .flat_map(|bi| {
            let hidden = &hidden;
            (0..n_rep * t).flat_map(move |r| {
                (0..s).map(move |j| if hidden[(bi * t + r % t) * s + j] { -1e30 } else { 0.0 })
            })
        })
        .collect();
    let bias = Tensor::<B, 4>::from_data(TensorData::new(bias, [b, 1, n_rep * t, s]), &q.device());
    let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f32).sqrt()) + bias;
    softmax(scores, 3).matmul(v)
}

#[test]
fn on_every_strategys_views_fused_equals_the_dense_formula() {
    let (mut views, mut in_place) = (0, 0);
    for kv_heads in [4, 2, 1] {
        let (config, model) = toy_model(kv_heads);
        let n_rep = config.n_heads / kv_heads;
        for batch in [1, 3] {
            let p = prompts(batch, 6);
            for kind in StrategyKind::all() {
                for bits in [None, Some(8), Some(4)] {
                    let spec = spec(kind, bits);
                    if bits.is_some() && !spec.stores_slots() {
                        continue;
                    }
                    let inner = spec.build::<B>(&config, batch, 32, &Default::default()).unwrap();
                    let mut cache = Recording { inner, views: Vec::new() };
                    run(&model, &mut cache, &p, 10);
                    for (n, view) in cache.views.iter().enumerate() {
                        let [b, kvh, s, d] = view.to_dense().0.dims();
                        // Prefill views carry the prompt's queries; decode views one.
                        let t = if n < config.n_layers { 6.min(s) } else { 1 };
                        let t = match &view.mask {
                            AttentionMask::Hidden(h) => h.dims()[1],
                            AttentionMask::CausalEnd => t,
                        };
                        let q = Tensor::<B, 4>::random(
                            [b, kvh, n_rep * t, d],
                            burn::tensor::Distribution::Normal(0.0, 1.0),
                            &Default::default(),
                        );
                        let visible = match &view.mask {
                            AttentionMask::CausalEnd => Visible::CausalEnd,
                            AttentionMask::Hidden(h) => {
                                Visible::Hidden(h.clone().into_data().to_vec().unwrap())
                            }
                        };
                        let got = attend(&q, &view.kv, t, visible).expect("flex tensors");
                        let want = dense(q, view, t);
                        let diff = (got - want).abs().max().into_scalar();
                        assert!(
                            diff <= 1e-4,
                            "{kind} bits {bits:?} batch {batch} kv_heads {kv_heads} view {n}: {diff}"
                        );
                        views += 1;
                        in_place += usize::from(matches!(view.kv, KvData::Runs(_)));
                    }
                }
            }
        }
    }
    assert!(views > 1000, "{views} views");
    // The static, paged and window caches over f32 hand their slots in place: the fused
    // kernel's run walk is what was checked for those.
    assert!(in_place > views / 10, "{in_place} of {views} views handed as runs");
}

/// Paged rows of different lengths: attention hides each row's keys past its own length.
#[test]
fn fused_attention_hides_the_keys_of_ragged_paged_rows() {
    let (config, model) = toy_model(2);
    let device = Default::default();
    let mut logits = Vec::new();
    for fused in [false, true] {
        let model = with_fused(&model, fused);
        let layout = KvLayout::new(&config, 2);
        let (blocks, block) = (12, 4);
        let store =
            Box::new(F32Store::new(config.n_layers, blocks * block, 2, config.head_dim, &device));
        let mut cache = PagedCache::<B>::new(layout, blocks, block, store).unwrap();
        let mut seqs: Vec<Vec<u32>> = prompts(2, 6);
        let rows: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let mut steps =
            vec![model.forward_last(tokens_tensor(&rows, &device), &mut cache).unwrap()];
        // Row 1 finishes and a new request takes its place: rows of 6 and 0 tokens, then decode.
        cache.free_row(1).unwrap();
        seqs[1].clear();
        for step in 0..8u32 {
            let feed = [[(step * 7 + 3) % 100], [(step * 11 + 5) % 100]];
            let rows: Vec<&[u32]> = feed.iter().map(|f| f.as_slice()).collect();
            steps.push(model.forward_last(tokens_tensor(&rows, &device), &mut cache).unwrap());
        }
        logits.push(
            steps.into_iter().map(|l| l.into_data().to_vec::<f32>().unwrap()).collect::<Vec<_>>(),
        );
    }
    assert_close("ragged paged rows", &logits[1], &logits[0]);
}

//! On the real model (SmolLM2-135M, fetched as a user's first run fetches it): every lossless
//! strategy gives the logits of recomputation, and the head-layout conversions behave: repeating
//! the 3 KV heads to 9 (MHA) is exact, and reducing to 1 (MQA) by mean-pooling or keeping the
//! first head of each group loads and runs.

use std::sync::OnceLock;

use kvlab_model::generate::{Sampling, generate};
use kvlab_model::perplexity::{Compared, FullReference, streaming_against};
use kvlab_model::{KvCache, Model, ModelWeights, NoCache};
use kvlab_strategies::heads::{HeadReduction, convert_kv_heads};
use kvlab_strategies::{StrategyKind, StrategySpec};

type B = burn_flex::Flex;
const TOL: f32 = 1e-4;

fn weights() -> &'static ModelWeights {
    static W: OnceLock<ModelWeights> = OnceLock::new();
    W.get_or_init(|| {
        let path = kvlab_model::assets::smollm2_gguf(None).expect("SmolLM2 GGUF fetched");
        kvlab_model::loader::load_gguf(&path).expect("weights load")
    })
}

/// A 12-token prompt (from the reference fixture's Hamlet passage), then 6 greedy steps.
fn run(model: &Model<B>, cache: &mut dyn KvCache<B>) -> (Vec<u32>, Vec<Vec<f32>>) {
    let prompt = vec![12199, 339, 30, 198, 198, 48891, 339, 30, 5614, 1036, 30, 330];
    let mut logits = Vec::new();
    let tokens = generate(model, cache, &[prompt], 6, &Sampling::Greedy, |s| {
        logits.push(s.logits.clone().into_data().to_vec::<f32>().unwrap())
    })
    .unwrap();
    (tokens.into_iter().next().unwrap(), logits)
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn lossless_strategies_equal_recompute_on_smollm2() {
    let model = Model::<B>::from_weights(weights(), &Default::default()).unwrap();
    let (want_tokens, want) = run(&model, &mut NoCache::new(1));
    let budget = 18;
    let specs = [
        StrategySpec::new(StrategyKind::CONCAT),
        StrategySpec::new(StrategyKind::STATIC),
        StrategySpec { block_size: Some(8), ..StrategySpec::new(StrategyKind::PAGED) },
        StrategySpec {
            cache_tokens: Some(budget),
            ..StrategySpec::new(StrategyKind::named("window"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            ..StrategySpec::new(StrategyKind::named("shift-window"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            sink_tokens: Some(4),
            ..StrategySpec::new(StrategyKind::named("sink"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            ..StrategySpec::new(StrategyKind::named("h2o"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            ..StrategySpec::new(StrategyKind::named("tova"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            ..StrategySpec::new(StrategyKind::named("key-norm"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            window: Some(4),
            ..StrategySpec::new(StrategyKind::named("snapkv"))
        },
        StrategySpec {
            cache_tokens: Some(budget),
            window: Some(4),
            ..StrategySpec::new(StrategyKind::named("pyramidkv"))
        },
    ];
    for spec in specs {
        let mut cache = spec.build::<B>(&model.config, 1, budget, &Default::default()).unwrap();
        let (tokens, got) = run(&model, cache.as_mut());
        let diff = max_diff(&got, &want);
        println!("{}: max |Δlogit| vs recompute {diff:e}", spec.kind);
        assert_eq!(tokens, want_tokens, "{}", spec.kind);
        assert!(diff <= TOL, "{}: max |Δlogit| {diff}", spec.kind);
    }
}

#[test]
fn head_conversions_of_smollm2() {
    let base = weights();
    let device = Default::default();
    let original = Model::<B>::from_weights(base, &device).unwrap();
    let (_, want) = run(&original, &mut NoCache::new(1));

    // Repeating each KV head to serve one query head (MHA, 9 KV heads) changes nothing.
    let mha = convert_kv_heads(base, 9, HeadReduction::MeanPool).unwrap();
    assert_eq!(mha.config.n_kv_heads, 9);
    let mha = Model::<B>::from_weights(&mha, &device).unwrap();
    let mut cache =
        StrategySpec::new(StrategyKind::STATIC).build::<B>(&mha.config, 1, 18, &device).unwrap();
    let (_, got) = run(&mha, cache.as_mut());
    let diff = max_diff(&got, &want);
    println!("MHA (9 KV heads) vs original (3): max |Δlogit| {diff:e}");
    assert!(diff <= TOL, "repeat to MHA: max |Δlogit| {diff}");
    assert_eq!(cache.memory().allocated_bytes, 3 * 46_080 * 18, "3x the KV bytes of GQA");

    // MQA: one KV head, by mean-pooling or keeping the first head of each group. Lossy, so the
    // test checks they load and run and that the KV bytes drop to a third.
    for how in [HeadReduction::MeanPool, HeadReduction::FirstHead] {
        let mqa = convert_kv_heads(base, 1, how).unwrap();
        let mqa = Model::<B>::from_weights(&mqa, &device).unwrap();
        let mut cache = StrategySpec::new(StrategyKind::STATIC)
            .build::<B>(&mqa.config, 1, 18, &device)
            .unwrap();
        let (tokens, got) = run(&mqa, cache.as_mut());
        assert_eq!(tokens.len(), 6);
        assert!(got.iter().flatten().all(|x| x.is_finite()), "{how}");
        assert_eq!(cache.memory().allocated_bytes, 46_080 / 3 * 18, "{how}: one head's bytes");
        println!("MQA {how}: max |Δlogit| vs original {}", max_diff(&got, &want));
    }
}

/// The first `n` tokens of Hamlet, as the perplexity workload reads them.
fn hamlet_tokens(n: usize) -> Vec<u32> {
    let path = kvlab_model::assets::smollm2_gguf(None).expect("SmolLM2 GGUF fetched");
    let gguf = kvlab_model::gguf::GgufFile::open(&path).unwrap();
    let tokenizer = kvlab_model::tokenizer::Tokenizer::from_gguf(&gguf).unwrap();
    let text = kvlab_model::corpus::corpus_spec("shakespeare:hamlet", None).unwrap();
    let mut ids = tokenizer.encode(&text[..n * 8]).unwrap();
    ids.truncate(n);
    assert_eq!(ids.len(), n);
    ids
}

#[test]
fn lossless_strategies_agree_with_a_lock_step_full_cache_on_smollm2() {
    let model = Model::<B>::from_weights(weights(), &Default::default()).unwrap();
    let tokens = hamlet_tokens(257); // 256 predicted tokens
    let build = |spec: &StrategySpec| spec.build::<B>(&model.config, 1, 257, &Default::default());
    let concat = StrategySpec::new(StrategyKind::CONCAT);
    fn compare(
        model: &Model<B>,
        tokens: &[u32],
        spec: &StrategySpec,
        reference: FullReference<'_, B>,
        record: Option<&mut Vec<Vec<f32>>>,
    ) -> Compared {
        let mut cache =
            spec.build::<B>(&model.config, 1, tokens.len(), &Default::default()).unwrap();
        streaming_against(model, cache.as_mut(), tokens, reference, record, |_, _| {}).unwrap()
    }

    // Static in lock step with concat; the reference's logits are recorded for the others.
    let mut recorded = Vec::new();
    let mut full = build(&concat).unwrap();
    let lock_step = FullReference::LockStep { model: &model, cache: full.as_mut() };
    let got = compare(
        &model,
        &tokens,
        &StrategySpec::new(StrategyKind::STATIC),
        lock_step,
        Some(&mut recorded),
    );
    assert_eq!(recorded.len(), 256);
    let reference = got.reference.expect("the lock step's own perplexity");
    assert!((got.run.ppl - reference.ppl).abs() <= 1e-9 * reference.ppl);

    let lossless = [
        StrategySpec::new(StrategyKind::STATIC),
        StrategySpec { block_size: Some(16), ..StrategySpec::new(StrategyKind::PAGED) },
        StrategySpec {
            cache_tokens: Some(257),
            ..StrategySpec::new(StrategyKind::named("window"))
        },
        StrategySpec {
            cache_tokens: Some(257),
            sink_tokens: Some(4),
            ..StrategySpec::new(StrategyKind::named("sink"))
        },
        StrategySpec {
            rotation: Some(kvlab_strategies::rotation::Rotation::Hadamard),
            ..StrategySpec::new(StrategyKind::STATIC)
        },
        // The keep-policies with room for every token: attention is shown to them at every
        // step (H2O, TOVA) or key norms reported (key-norm), and nothing leaves.
        StrategySpec { cache_tokens: Some(257), ..StrategySpec::new(StrategyKind::named("h2o")) },
        StrategySpec { cache_tokens: Some(257), ..StrategySpec::new(StrategyKind::named("tova")) },
        StrategySpec {
            cache_tokens: Some(257),
            ..StrategySpec::new(StrategyKind::named("key-norm"))
        },
    ];
    for (i, spec) in lossless.iter().enumerate() {
        let d = if i == 0 {
            got.divergence
        } else {
            compare(&model, &tokens, spec, FullReference::Recorded(&recorded), None).divergence
        };
        println!("{}: {d:?}", spec.kind);
        assert_eq!(d.tokens, 256);
        assert!(d.kl_max < 1e-6, "{}: kl_max {}", spec.kind, d.kl_max);
        assert_eq!(d.top1_agree_pct, 100.0, "{}", spec.kind);
    }

    // A window of 16 tokens forgets: the same measure sees it.
    let small =
        StrategySpec { cache_tokens: Some(16), ..StrategySpec::new(StrategyKind::named("window")) };
    let d = compare(&model, &tokens, &small, FullReference::Recorded(&recorded), None).divergence;
    println!("window 16: {d:?}");
    assert!(d.kl_mean > 1e-2 && d.top1_agree_pct < 95.0, "{d:?}");
}

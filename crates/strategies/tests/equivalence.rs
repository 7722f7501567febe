//! The seam is exact: decoding through a cache gives the logits of recomputing without one.
//!
//! MHA, GQA and MQA variants of the article's toy model, each in three architectures (Llama;
//! Gemma 3's QK-norm, sandwich norms, GeGLU, scaled embeddings and sliding-window layers, with a
//! window of 6 tokens that the 26-token sequences cross, so its cache plan's rolling windows
//! evict; Qwen2's Q/K/V biases), batch 2, a 10-token prompt and 16 decode steps: every cached
//! strategy kind with room for every token (lossless: concat, static, paged; the windows and
//! keep-policies with a budget of 26) must choose the same greedy tokens as `none` and agree on
//! every step's logits within 1e-4 (f32), on flex and on ndarray. Attention's key buckets
//! (`Model::set_key_bucket`) change no logit either, for every strategy kind.

use burn::prelude::*;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{Arch, KvCache, Model, ModelConfig, NoCache, SlidingWindow};
use kvlab_strategies::{StrategyKind, StrategySpec};

const PROMPT: usize = 10;
const STEPS: usize = 16;
const TOL: f32 = 1e-4;

/// Greedy tokens and every step's `[batch, vocab]` logits, flattened.
fn decode<B: Backend>(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    prompts: &[Vec<u32>],
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let mut logits = Vec::new();
    let tokens = generate(model, cache, prompts, STEPS, &Sampling::Greedy, |step| {
        logits.push(step.logits.clone().into_data().convert::<f32>().to_vec::<f32>().unwrap());
    })
    .unwrap();
    (tokens, logits)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The toy model in each family's architecture.
fn architectures(kv_heads: usize) -> Vec<(&'static str, ModelConfig)> {
    let llama = ModelConfig::seed_toy().with_kv_heads(kv_heads).unwrap();
    let window = SlidingWindow { tokens: 6, global_every: 2, rope_theta: 1_000.0 };
    vec![
        ("llama", llama.clone()),
        ("gemma3", ModelConfig { arch: Arch::gemma3(window), ..llama.clone() }),
        ("qwen2", ModelConfig { arch: Arch::qwen2(), ..llama }),
    ]
}

fn check_backend<B: Backend>(device: &B::Device) {
    for (arch, config) in [4, 2, 1].into_iter().flat_map(architectures) {
        let kv_heads = config.n_kv_heads;
        let model = Model::<B>::from_weights(&random_weights(&config, 7), device).unwrap();
        let prompts: Vec<Vec<u32>> = (0..2)
            .map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect())
            .collect();
        let (want_tokens, want_logits) = decode(&model, &mut NoCache::new(2), &prompts);
        // Evicting policies with room for every token must be exact too.
        let room = Some(PROMPT + STEPS);
        for kind in StrategyKind::all().filter(|&k| k != StrategyKind::NONE) {
            let name = kind.name();
            let spec = StrategySpec {
                block_size: Some(4),
                cache_tokens: room,
                sink_tokens: Some(4),
                window: Some(4),
                ..StrategySpec::new(kind)
            };
            let mut cache = spec.build::<B>(&config, 2, PROMPT + STEPS, device).unwrap();
            let (tokens, logits) = decode(&model, cache.as_mut(), &prompts);
            assert_eq!(tokens, want_tokens, "{arch} {name}, kv_heads {kv_heads}: tokens differ");
            assert_eq!(logits.len(), STEPS);
            for (step, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
                let diff = max_abs_diff(got, want);
                assert!(
                    diff <= TOL,
                    "{arch} {name}, kv_heads {kv_heads}, step {step}: max |Δlogit| {diff}"
                );
            }
        }
    }
}

#[test]
fn cached_decode_equals_recompute_on_flex() {
    check_backend::<burn_flex::Flex>(&Default::default());
}

#[test]
fn cached_decode_equals_recompute_on_ndarray() {
    check_backend::<burn_ndarray::NdArray<f32>>(&Default::default());
}

/// Attention over keys padded to a bucket (zeros, hidden by the mask) gives the logits of
/// unpadded attention: every strategy kind (causal-end and hidden masks, ring and paged caches,
/// an int8 store), MHA/GQA/MQA, with buckets that divide nothing (5), the prompt's multiples (8)
/// and more than the sequence (64).
fn specs() -> Vec<(String, Option<StrategySpec>)> {
    let window = |kind| StrategySpec { cache_tokens: Some(8), ..StrategySpec::new(kind) };
    vec![
        ("none".into(), None),
        ("concat".into(), Some(StrategySpec::new(StrategyKind::CONCAT))),
        ("static".into(), Some(StrategySpec::new(StrategyKind::STATIC))),
        (
            "static int8".into(),
            Some(StrategySpec { bits: Some(8), ..StrategySpec::new(StrategyKind::STATIC) }),
        ),
        ("window".into(), Some(window(StrategyKind::named("window")))),
        ("shift-window".into(), Some(window(StrategyKind::named("shift-window")))),
        (
            "sink".into(),
            Some(StrategySpec { sink_tokens: Some(2), ..window(StrategyKind::named("sink")) }),
        ),
        (
            "paged".into(),
            Some(StrategySpec { block_size: Some(4), ..StrategySpec::new(StrategyKind::PAGED) }),
        ),
    ]
}

#[test]
fn bucketed_keys_give_unbucketed_logits_for_every_strategy() {
    type B = burn_flex::Flex;
    let device = Default::default();
    for kv_heads in [4, 2, 1] {
        let config = ModelConfig::seed_toy().with_kv_heads(kv_heads).unwrap();
        let mut model = Model::<B>::from_weights(&random_weights(&config, 7), &device).unwrap();
        let prompts: Vec<Vec<u32>> = (0..2)
            .map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect())
            .collect();
        for (name, spec) in specs() {
            let cache = || -> Box<dyn KvCache<B>> {
                match &spec {
                    None => Box::new(NoCache::new(2)),
                    Some(s) => s.build::<B>(&config, 2, PROMPT + STEPS, &device).unwrap(),
                }
            };
            model.set_key_bucket(0);
            let (want_tokens, want_logits) = decode(&model, cache().as_mut(), &prompts);
            for bucket in [5, 8, 64] {
                model.set_key_bucket(bucket);
                let (tokens, logits) = decode(&model, cache().as_mut(), &prompts);
                let what = format!("{name}, kv_heads {kv_heads}, bucket {bucket}");
                assert_eq!(tokens, want_tokens, "{what}: greedy tokens differ");
                for (step, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
                    let diff = max_abs_diff(got, want);
                    assert!(diff <= TOL, "{what}, step {step}: max |Δlogit| {diff}");
                }
            }
        }
    }
}

#[test]
fn buckets_round_key_counts_up_to_their_multiples() {
    use kvlab_model::attention::bucketed;
    assert_eq!(bucketed(17, 0), 17, "0 is off");
    assert_eq!(bucketed(1, 64), 64);
    assert_eq!(bucketed(64, 64), 64);
    assert_eq!(bucketed(65, 64), 128);
    // A 512-token decode sees at most 512 / 64 = 8 key counts.
    let shapes: std::collections::BTreeSet<usize> = (1..=512).map(|s| bucketed(s, 64)).collect();
    assert_eq!(shapes.len(), 8);
}

#[test]
fn streaming_perplexity_of_recomputation_equals_the_full_cache() {
    // Recomputation is fed the whole prefix at every step (its `next_input`), a cache only the
    // newest token; both must score every token with the same distribution.
    type B = burn_flex::Flex;
    let config = ModelConfig::seed_toy();
    let model = Model::<B>::from_weights(&random_weights(&config, 7), &Default::default()).unwrap();
    let tokens: Vec<u32> = (0..24u32).map(|i| (i * 11 + 5) % 100).collect();
    let mut full = StrategySpec::new(StrategyKind::CONCAT)
        .build::<B>(&config, 1, tokens.len(), &Default::default())
        .unwrap();
    let compared = kvlab_model::perplexity::streaming_against(
        &model,
        &mut NoCache::new(1),
        &tokens,
        kvlab_model::perplexity::FullReference::LockStep { model: &model, cache: full.as_mut() },
        None,
        |_, _| {},
    )
    .unwrap();
    let reference = compared.reference.unwrap();
    assert!((compared.run.ppl / reference.ppl - 1.0).abs() < 1e-5, "{compared:?}");
    assert!(compared.divergence.kl_max < 1e-6, "{compared:?}");
    assert_eq!(compared.divergence.top1_agree_pct, 100.0);
}

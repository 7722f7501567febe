//! The seam is exact: decoding through a cache gives the logits of recomputing without one.
//!
//! MHA, GQA and MQA variants of the article's toy model, batch 2, a 10-token prompt and 16
//! decode steps: `concat` and `static` must choose the same greedy tokens as `none` and agree on
//! every step's logits within 1e-4 (f32), on flex and on ndarray.

use burn::prelude::*;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{KvCache, Model, ModelConfig, NoCache};
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

fn check_backend<B: Backend>(device: &B::Device) {
    for kv_heads in [4, 2, 1] {
        let config = ModelConfig::seed_toy().with_kv_heads(kv_heads).unwrap();
        let model = Model::<B>::from_weights(&random_weights(&config, 7), device).unwrap();
        let prompts: Vec<Vec<u32>> = (0..2)
            .map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect())
            .collect();
        let (want_tokens, want_logits) = decode(&model, &mut NoCache::new(2), &prompts);
        for kind in [StrategyKind::Concat, StrategyKind::Static, StrategyKind::Paged] {
            let name = kind.name();
            let spec = StrategySpec { block_size: Some(4), ..StrategySpec::new(kind) };
            let mut cache = spec.build::<B>(&config, 2, PROMPT + STEPS, device).unwrap();
            let (tokens, logits) = decode(&model, cache.as_mut(), &prompts);
            assert_eq!(tokens, want_tokens, "{name}, kv_heads {kv_heads}: greedy tokens differ");
            assert_eq!(logits.len(), STEPS);
            for (step, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
                let diff = max_abs_diff(got, want);
                assert!(
                    diff <= TOL,
                    "{name}, kv_heads {kv_heads}, step {step}: max |Δlogit| {diff}"
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

//! Helpers the bounded and evicting caches' reference tests share: the toy model, prompts, a
//! greedy run's logits, and the tolerance check.

use burn::tensor::Tensor;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{KvCache, Model, ModelConfig};

pub type B = burn_flex::Flex;
pub const TOL: f32 = 1e-4;

/// The article's toy model with `kv_heads` KV heads (random weights, seed 11).
pub fn toy_model(kv_heads: usize) -> (ModelConfig, Model<B>) {
    let config = ModelConfig::seed_toy().with_kv_heads(kv_heads).unwrap();
    let model =
        Model::<B>::from_weights(&random_weights(&config, 11), &Default::default()).unwrap();
    (config, model)
}

/// `batch` deterministic prompts of `len` tokens.
pub fn prompts(batch: usize, len: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|r| (0..len as u32).map(|i| (i * 31 + r as u32 * 17 + 5) % 100).collect())
        .collect()
}

/// A greedy run's tokens and every step's `[batch, vocab]` logits, flattened.
pub fn run(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let mut logits = Vec::new();
    let tokens = generate(model, cache, prompts, steps, &Sampling::Greedy, |s| {
        logits.push(s.logits.clone().into_data().to_vec::<f32>().unwrap());
    })
    .unwrap();
    (tokens, logits)
}

/// Every step's logits within [`TOL`].
pub fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}: step count");
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        let diff = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= TOL, "{what}: step {step}: max |Δlogit| = {diff}");
    }
}

/// A reference cache's history of one layer, `[batch, n_kv, seen, head_dim]` keys and values,
/// grown by this step's `[batch, n_kv, t, head_dim]`.
#[allow(dead_code)] // each test binary compiles its own copy; not every one keeps a history
pub fn append(
    history: &mut Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) {
    *history = Some(match history.take() {
        Some((hk, hv)) => (Tensor::cat(vec![hk, k], 2), Tensor::cat(vec![hv, v], 2)),
        None => (k, v),
    });
}

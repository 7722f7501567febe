//! Perplexity, natural-log: `ppl = exp(mean NLL)` over the predicted tokens.
//!
//! Two evaluators, usable with every strategy:
//! - [`chunked`]: full attention over consecutive chunks (no cache; each chunk starts fresh);
//! - [`streaming`]: one token at a time through a cache, as StreamingLLM evaluates, so a
//!   bounded cache's evictions show up in the loss.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::cache::{CacheError, KvCache};
use crate::model::{Model, tokens_tensor};
use crate::no_cache::NoCache;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Perplexity {
    /// Mean negative log-likelihood per predicted token, in nats.
    pub mean_nll: f64,
    pub ppl: f64,
    /// Tokens whose likelihood was scored.
    pub predicted: usize,
}

impl Perplexity {
    fn from_total(total_nll: f64, predicted: usize) -> Self {
        let mean_nll = total_nll / predicted.max(1) as f64;
        Self { mean_nll, ppl: mean_nll.exp(), predicted }
    }
}

/// Full attention over chunks of `chunk` tokens; in each chunk tokens `1..` are scored.
pub fn chunked<B: Backend>(
    model: &Model<B>,
    tokens: &[u32],
    chunk: usize,
) -> Result<Perplexity, CacheError> {
    if chunk < 2 {
        return Err(CacheError::Invalid(format!("perplexity chunk = {chunk}: must be >= 2")));
    }
    let device = model.device();
    let (mut total, mut predicted) = (0.0, 0);
    for piece in tokens.chunks(chunk).filter(|p| p.len() >= 2) {
        let mut cache = NoCache::new(1);
        let logits = model.forward(tokens_tensor(&[piece], &device), &mut cache)?;
        let [_, t, vocab] = logits.dims();
        // Positions 0..t-1 predict tokens 1..t.
        let logits = logits.slice([0..1, 0..t - 1, 0..vocab]);
        total += target_nll(logits, &piece[1..], &device);
        predicted += t - 1;
    }
    Ok(Perplexity::from_total(total, predicted))
}

/// Feeds `tokens` one at a time through `cache` (reset first) and scores each next token.
/// `progress(done, total)` is called after every token.
pub fn streaming<B: Backend>(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    tokens: &[u32],
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity, CacheError> {
    cache.reset();
    let device = model.device();
    let steps = tokens.len().saturating_sub(1);
    let mut total = 0.0;
    for i in 0..steps {
        // [1, vocab] -> [1, 1, vocab]
        let logits = model.forward_last(tokens_tensor(&[&tokens[i..=i]], &device), cache)?;
        total += target_nll(logits.unsqueeze_dim(1), &tokens[i + 1..=i + 1], &device);
        progress(i + 1, steps);
    }
    Ok(Perplexity::from_total(total, steps))
}

/// Sum over positions of `-log softmax(logits)[target]`.
///
/// # Shapes
/// - logits: `[1, t, vocab]`; targets: `t` ids
fn target_nll<B: Backend>(logits: Tensor<B, 3>, targets: &[u32], device: &B::Device) -> f64 {
    let t = targets.len();
    let index: Vec<i64> = targets.iter().map(|&id| id as i64).collect();
    let index = Tensor::<B, 3, Int>::from_data(TensorData::new(index, [1, t, 1]), device);
    let picked = log_softmax(logits, 2).gather(2, index);
    let values: Vec<f32> = picked.into_data().convert::<f32>().to_vec().expect("f32 log-probs");
    values.iter().map(|&lp| -(lp as f64)).sum()
}

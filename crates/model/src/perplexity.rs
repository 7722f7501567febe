//! Perplexity, natural-log: `ppl = exp(mean NLL)` over the predicted tokens.
//!
//! Two evaluators, usable with every strategy:
//! - [`chunked`]: full attention over consecutive chunks (no cache; each chunk starts fresh);
//! - [`streaming`]: one token at a time through a cache, as StreamingLLM evaluates, so a
//!   bounded cache's evictions show up in the loss;
//! - [`streaming_against`]: the same, with a full-cache reference in lock step, for the KL and
//!   top-1 agreement of every predicted token ([`crate::divergence`]).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::Serialize;

use crate::cache::{CacheError, KvCache};
use crate::divergence::{Divergence, DivergenceStats};
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
        let logits = model.forward_last(step_input(cache, tokens, i, &device), cache)?;
        total += target_nll(logits.unsqueeze_dim(1), &tokens[i + 1..=i + 1], &device);
        progress(i + 1, steps);
    }
    Ok(Perplexity::from_total(total, steps))
}

/// The full-cache run a streaming run is compared with, step by step.
pub enum FullReference<'a, B: Backend> {
    /// A full cache fed the same token at the same step: one extra forward per step.
    LockStep { model: &'a Model<B>, cache: &'a mut dyn KvCache<B> },
    /// The logits of such a run over the same tokens, kept from an earlier pass (exact f32,
    /// what the lock step would compute again): `[steps][vocab]`.
    Recorded(&'a [Vec<f32>]),
    /// The run being measured is the full cache itself: KL 0 and agreement by definition.
    Itself,
}

/// A streaming run beside its full-cache reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub run: Perplexity,
    /// The reference's perplexity when it was computed here (lock step), else `None`.
    pub reference: Option<Perplexity>,
    pub divergence: Divergence,
}

/// [`streaming`] with the next-token distributions compared against `reference` at every
/// step. `record`, when given, receives the reference's logits per step (for a later
/// [`FullReference::Recorded`]).
pub fn streaming_against<B: Backend>(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    tokens: &[u32],
    mut reference: FullReference<'_, B>,
    mut record: Option<&mut Vec<Vec<f32>>>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Compared, CacheError> {
    cache.reset();
    if let FullReference::LockStep { cache, .. } = &mut reference {
        cache.reset();
    }
    let device = model.device();
    let steps = tokens.len().saturating_sub(1);
    if let FullReference::Recorded(logits) = &reference
        && logits.len() < steps
    {
        return Err(CacheError::Invalid(format!(
            "the recorded reference has {} steps, the run {steps}",
            logits.len()
        )));
    }
    let (mut total, mut reference_total) = (0.0, 0.0);
    let mut stats = DivergenceStats::default();
    for i in 0..steps {
        let target = &tokens[i + 1..=i + 1];
        // [1, vocab]
        let logits = model.forward_last(step_input(cache, tokens, i, &device), cache)?;
        total += target_nll(logits.clone().unsqueeze_dim(1), target, &device);
        // The run's logits go to the host only where they are compared or recorded.
        match &mut reference {
            FullReference::LockStep { model: full_model, cache: full_cache } => {
                let input = step_input(&**full_cache, tokens, i, &device);
                let full = full_model.forward_last(input, &mut **full_cache)?;
                reference_total += target_nll(full.clone().unsqueeze_dim(1), target, &device);
                let full = host_row(full);
                stats.push(&full, &host_row(logits));
                if let Some(r) = record.as_deref_mut() {
                    r.push(full);
                }
            }
            FullReference::Recorded(recorded) => stats.push(&recorded[i], &host_row(logits)),
            FullReference::Itself => {
                stats.push_identical();
                if let Some(r) = record.as_deref_mut() {
                    r.push(host_row(logits));
                }
            }
        }
        progress(i + 1, steps);
    }
    let reference = matches!(reference, FullReference::LockStep { .. })
        .then(|| Perplexity::from_total(reference_total, steps));
    Ok(Compared {
        run: Perplexity::from_total(total, steps),
        reference,
        divergence: stats.summary(),
    })
}

/// The input of step `i` (which predicts token `i + 1`): what the cache has not seen of
/// `tokens[..=i]`, the newest token for a cache and the whole prefix for recomputation.
fn step_input<B: Backend>(
    cache: &dyn KvCache<B>,
    tokens: &[u32],
    i: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    tokens_tensor(&[&tokens[cache.next_input(i + 1)]], device)
}

/// `[1, vocab]` logits on the host.
fn host_row<B: Backend>(logits: Tensor<B, 2>) -> Vec<f32> {
    logits.into_data().convert::<f32>().to_vec().expect("f32 logits")
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

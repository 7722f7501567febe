//! The generation loop over any cache: a prompt, then token by token.

use burn::prelude::*;
use rand::SeedableRng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use rand_chacha::ChaCha8Rng;

use crate::cache::{CacheError, KvCache};
use crate::model::{Model, tokens_tensor};

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Softmax at `temperature`, drawn from a ChaCha8 stream seeded with `seed`.
    Seeded {
        temperature: f32,
        seed: u64,
    },
}

/// What one forward pass of the loop did, for observers (the walkthrough prints it, tests
/// compare logits).
#[derive(Debug)]
pub struct Step<B: Backend> {
    /// 0 for the prompt's forward, then 1, 2, ... for each new token.
    pub index: usize,
    /// `[batch, t]` of the tokens fed.
    pub input_shape: [usize; 2],
    /// `[batch, vocab]` logits of the last fed position.
    pub logits: Tensor<B, 2>,
    /// The tokens chosen from these logits, one per row.
    pub chosen: Vec<u32>,
}

/// Generates `new_tokens` tokens per row after `prompts` (rows of equal length).
///
/// Each step feeds what the cache asks for ([`KvCache::next_input`]): only the newest token for
/// a cache, the whole sequence for recomputation; a long prompt is split where the cache takes
/// fewer tokens per step. Returns the new tokens per row.
pub fn generate<B: Backend>(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    prompts: &[Vec<u32>],
    new_tokens: usize,
    sampling: &Sampling,
    mut observe: impl FnMut(&Step<B>),
) -> Result<Vec<Vec<u32>>, CacheError> {
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    let mut rng = match sampling {
        Sampling::Seeded { seed, .. } => Some(ChaCha8Rng::seed_from_u64(*seed)),
        Sampling::Greedy => None,
    };
    let device = model.device();
    for index in 0..new_tokens {
        let (logits, input_shape) = feed_pending(model, cache, &seqs, &device)?;
        let chosen = choose(&logits, sampling, rng.as_mut());
        for (row, &tok) in seqs.iter_mut().zip(&chosen) {
            row.push(tok);
        }
        observe(&Step { index, input_shape, logits, chosen });
    }
    Ok(seqs.into_iter().zip(prompts).map(|(s, p)| s[p.len()..].to_vec()).collect())
}

/// Feeds every token the cache has not seen, in steps the cache accepts; returns the logits of
/// the last position, `[batch, vocab]`, and the shape of the last forward's input.
pub fn feed_pending<B: Backend>(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    seqs: &[Vec<u32>],
    device: &B::Device,
) -> Result<(Tensor<B, 2>, [usize; 2]), CacheError> {
    let total = seqs[0].len();
    loop {
        let pending = cache.next_input(total);
        if pending.is_empty() {
            return Err(CacheError::Invalid("nothing to feed: the cache has every token".into()));
        }
        let end = pending.start + pending.len().min(cache.max_step_tokens().max(1));
        let rows: Vec<&[u32]> = seqs.iter().map(|s| &s[pending.start..end]).collect();
        let logits = model.forward_last(tokens_tensor(&rows, device), cache)?;
        if end == total {
            return Ok((logits, [seqs.len(), end - pending.start]));
        }
    }
}

fn choose<B: Backend>(
    logits: &Tensor<B, 2>,
    sampling: &Sampling,
    rng: Option<&mut ChaCha8Rng>,
) -> Vec<u32> {
    let [batch, vocab] = logits.dims();
    let host: Vec<f32> = logits.clone().into_data().convert::<f32>().to_vec().expect("f32 logits");
    let rows = host.chunks(vocab).take(batch);
    match (sampling, rng) {
        (Sampling::Seeded { temperature, .. }, Some(rng)) => rows
            .map(|row| {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let weights: Vec<f64> = row
                    .iter()
                    .map(|&l| (((l - max) / temperature.max(1e-6)) as f64).exp())
                    .collect();
                WeightedIndex::new(&weights).map(|w| w.sample(rng) as u32).unwrap_or(0)
            })
            .collect(),
        _ => rows.map(argmax).collect(),
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

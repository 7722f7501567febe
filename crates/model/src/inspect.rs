//! What `runner logits` prints: the top-k next-token logits at every input position, for users
//! debugging a model and for checking kvlab against other implementations.

use burn::prelude::*;
use serde::Serialize;

use crate::cache::CacheError;
use crate::model::{Model, tokens_tensor};
use crate::no_cache::NoCache;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionTopK {
    /// `[id, logit]` pairs, largest logit first (ties: smaller id first).
    pub top_k: Vec<(u32, f32)>,
    /// `-log p(next id)` under this position's logits (softmax in f64); `None` at the last
    /// position.
    pub next_nll: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitsReport {
    pub ids: Vec<u32>,
    pub positions: Vec<PositionTopK>,
    /// Mean of `next_nll` over every position but the last (the perplexity's log); `None` for
    /// one id.
    pub mean_nll: Option<f64>,
}

/// One full-attention forward over `ids`; the `k` largest logits after each position.
pub fn top_k_logits<B: Backend>(
    model: &Model<B>,
    ids: &[u32],
    k: usize,
) -> Result<LogitsReport, CacheError> {
    if ids.is_empty() {
        return Err(CacheError::Invalid("no token ids to score".into()));
    }
    let logits = model.forward(tokens_tensor(&[ids], &model.device()), &mut NoCache::new(1))?;
    let [_, t, vocab] = logits.dims();
    let host: Vec<f32> = logits.into_data().convert::<f32>().to_vec().expect("f32 logits");
    let positions = (0..t)
        .map(|p| {
            let row = &host[p * vocab..(p + 1) * vocab];
            let mut order: Vec<u32> = (0..vocab as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            PositionTopK {
                top_k: order[..k.min(vocab)].iter().map(|&i| (i, row[i as usize])).collect(),
                next_nll: ids.get(p + 1).map(|&next| nll(row, next)),
            }
        })
        .collect::<Vec<_>>();
    let nlls: Vec<f64> = positions.iter().filter_map(|p: &PositionTopK| p.next_nll).collect();
    let mean_nll = (!nlls.is_empty()).then(|| nlls.iter().sum::<f64>() / nlls.len() as f64);
    Ok(LogitsReport { ids: ids.to_vec(), positions, mean_nll })
}

/// `-log softmax(row)[id]`, in f64.
fn nll(row: &[f32], id: u32) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
    let log_z = max + row.iter().map(|&x| (f64::from(x) - max).exp()).sum::<f64>().ln();
    log_z - f64::from(row[id as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::init::random_weights;

    #[test]
    fn top_k_is_sorted_and_has_one_entry_per_position() {
        let config = ModelConfig::seed_toy();
        let model = Model::<burn_flex::Flex>::from_weights(
            &random_weights(&config, 0),
            &Default::default(),
        )
        .unwrap();
        let report = top_k_logits(&model, &[1, 2, 3, 4], 5).unwrap();
        assert_eq!(report.positions.len(), 4);
        for p in &report.positions {
            assert_eq!(p.top_k.len(), 5);
            assert!(p.top_k.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.starts_with("{\"ids\":[1,2,3,4],\"positions\":[{\"top_k\":[["), "{json}");
        assert!(top_k_logits(&model, &[], 5).is_err());
        // The NLL of the next id, against a hand softmax of a three-logit row.
        let by_hand = -((2.0f64).exp() / (1.0f64.exp() + 2.0f64.exp() + 3.0f64.exp())).ln();
        assert!((nll(&[1.0, 2.0, 3.0], 1) - by_hand).abs() < 1e-12);
        assert!(report.positions[3].next_nll.is_none() && report.mean_nll.is_some());
    }
}

//! Head layouts as a model transform: change a checkpoint's number of KV heads.
//!
//! - fewer heads (GQA / MQA): each new head replaces a group of `n_kv / n_kv'` old heads, either
//!   by mean-pooling the group's K and V projection rows (the GQA paper's uptraining init) or by
//!   keeping the group's first head;
//! - more heads (towards MHA): every old head is repeated `n_kv' / n_kv` times, which is exact
//!   (every query head still reads the same keys) and costs proportionally more KV memory.
//!
//! Query head `h` reads KV head `h / (n_heads / n_kv)` (HF's `repeat_kv` order); a group of old
//! heads `g * m .. (g + 1) * m` serves exactly the query heads new head `g` serves, so pooling a
//! group keeps every query head reading a mix of the heads it read before.

use std::fmt;
use std::str::FromStr;

use kvlab_model::ModelWeights;
use kvlab_model::weights::HostTensor;
use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// How a group of KV heads becomes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HeadReduction {
    #[default]
    MeanPool,
    FirstHead,
}

impl HeadReduction {
    pub fn name(self) -> &'static str {
        match self {
            Self::MeanPool => "mean-pool",
            Self::FirstHead => "first-head",
        }
    }
}

impl fmt::Display for HeadReduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadReduction {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "mean-pool" => Ok(Self::MeanPool),
            "first-head" => Ok(Self::FirstHead),
            other => Err(SpecError::Invalid {
                key: "head_reduction",
                value: other.into(),
                why: "expected mean-pool or first-head".into(),
            }),
        }
    }
}

/// Checks that `kv_heads` is reachable from the checkpoint's `n_kv` heads under `n_heads`.
pub fn check_kv_heads(n_heads: usize, n_kv: usize, kv_heads: usize) -> Result<(), SpecError> {
    let invalid =
        |why: String| SpecError::Invalid { key: "kv_heads", value: kv_heads.to_string(), why };
    if kv_heads == 0 || !n_heads.is_multiple_of(kv_heads) {
        return Err(invalid(format!("must divide n_heads = {n_heads}")));
    }
    if kv_heads < n_kv && !n_kv.is_multiple_of(kv_heads) {
        return Err(invalid(format!("fewer heads must divide the checkpoint's {n_kv} KV heads")));
    }
    if kv_heads > n_kv && !kv_heads.is_multiple_of(n_kv) {
        return Err(invalid(format!("more heads must be a multiple of the checkpoint's {n_kv}")));
    }
    Ok(())
}

/// Returns the weights with `kv_heads` KV heads (K and V projections and their biases
/// rewritten; nothing else changes: a QK-norm's weights are per dimension, shared by heads).
pub fn convert_kv_heads(
    weights: &ModelWeights,
    kv_heads: usize,
    reduction: HeadReduction,
) -> Result<ModelWeights, SpecError> {
    let c = &weights.config;
    check_kv_heads(c.n_heads, c.n_kv_heads, kv_heads)?;
    let mut out = weights.clone();
    out.config.n_kv_heads = kv_heads;
    for layer in &mut out.layers {
        layer.wk = regroup(&layer.wk, c.n_kv_heads, kv_heads, c.head_dim, reduction);
        layer.wv = regroup(&layer.wv, c.n_kv_heads, kv_heads, c.head_dim, reduction);
        if let Some(bias) = &mut layer.qkv_bias {
            // A bias is a one-column projection: regrouped as its rows are.
            for b in [&mut bias.k, &mut bias.v] {
                let column = HostTensor::new(b.data.clone(), vec![b.data.len(), 1]);
                let grouped = regroup(&column, c.n_kv_heads, kv_heads, c.head_dim, reduction);
                *b = HostTensor::new(grouped.data, vec![kv_heads * c.head_dim]);
            }
        }
    }
    Ok(out)
}

/// `[n_kv * head_dim, in]` -> `[kv_heads * head_dim, in]`.
fn regroup(
    w: &HostTensor,
    n_kv: usize,
    kv_heads: usize,
    head_dim: usize,
    how: HeadReduction,
) -> HostTensor {
    let [_, cols] = w.dims2();
    let head = |h: usize| w.rows(h * head_dim, (h + 1) * head_dim);
    let mut data = Vec::with_capacity(kv_heads * head_dim * cols);
    for new in 0..kv_heads {
        if kv_heads >= n_kv {
            data.extend_from_slice(head(new / (kv_heads / n_kv)));
            continue;
        }
        let m = n_kv / kv_heads;
        match how {
            HeadReduction::FirstHead => data.extend_from_slice(head(new * m)),
            HeadReduction::MeanPool => {
                let mut acc = vec![0.0f64; head_dim * cols];
                for old in new * m..(new + 1) * m {
                    acc.iter_mut().zip(head(old)).for_each(|(a, &x)| *a += x as f64);
                }
                data.extend(acc.into_iter().map(|a| (a / m as f64) as f32));
            }
        }
    }
    HostTensor::new(data, vec![kv_heads * head_dim, cols])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvlab_model::ModelConfig;
    use kvlab_model::init::random_weights;

    #[test]
    fn mean_pool_averages_each_group_and_first_head_keeps_the_first() {
        let w = random_weights(&ModelConfig::seed_toy(), 1); // 4 KV heads of 64
        let pooled = convert_kv_heads(&w, 2, HeadReduction::MeanPool).unwrap();
        let first = convert_kv_heads(&w, 1, HeadReduction::FirstHead).unwrap();
        let (old, new) = (&w.layers[0].wk, &pooled.layers[0].wk);
        let cols = old.dims2()[1];
        // New head 1, row 3, col 5 = mean of old heads 2 and 3 at that place.
        let at = |t: &HostTensor, head: usize| t.data[(head * 64 + 3) * cols + 5];
        assert!((at(new, 1) - (at(old, 2) + at(old, 3)) / 2.0).abs() < 1e-6);
        assert_eq!(first.layers[0].wv.rows(0, 64), w.layers[0].wv.rows(0, 64));
        assert_eq!(first.config.n_kv_heads, 1);
    }

    #[test]
    fn repeat_copies_each_head_in_query_order() {
        let w = random_weights(&ModelConfig::seed_toy().with_kv_heads(2).unwrap(), 1);
        let mha = convert_kv_heads(&w, 4, HeadReduction::MeanPool).unwrap();
        let (old, new) = (&w.layers[1].wk, &mha.layers[1].wk);
        assert_eq!(new.rows(0, 64), old.rows(0, 64));
        assert_eq!(new.rows(64, 128), old.rows(0, 64));
        assert_eq!(new.rows(128, 192), old.rows(64, 128));
    }

    #[test]
    fn impossible_head_counts_are_rejected() {
        assert!(check_kv_heads(9, 3, 2).unwrap_err().to_string().contains("kv_heads = 2"));
        assert!(check_kv_heads(9, 3, 0).is_err());
        assert!(check_kv_heads(9, 3, 9).is_ok());
        assert!(check_kv_heads(9, 3, 1).is_ok());
    }
}

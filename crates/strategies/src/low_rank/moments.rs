//! Second moments `Σ x·xᵀ` per KV head, the matrices whose top eigenvectors are a low-rank
//! cache's bases: of a projection's columns (its Gram matrix) or of the keys and values
//! themselves (calibration). A leaf, so both reach down for it.

/// One layer's second moments, row-major `[n_kv, head_dim, head_dim]` in f64, of keys and of
/// values with their biases taken off (the part a low-rank store projects).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMoments {
    pub k: Vec<f64>,
    pub v: Vec<f64>,
}

/// Adds `x·xᵀ` to the upper triangle (diagonal included) of the row-major `[d, d]` `m`, `d =
/// x.len()`: a second-moment sum, completed by [`mirror_upper`] once every `x` is in.
pub fn add_outer_upper(m: &mut [f64], x: &[f64]) {
    let d = x.len();
    for i in 0..d {
        for j in i..d {
            m[i * d + j] += x[i] * x[j];
        }
    }
}

/// Copies the upper triangle of the row-major `[d, d]` `m` onto its lower one.
pub fn mirror_upper(m: &mut [f64], d: usize) {
    for i in 0..d {
        for j in 0..i {
            m[i * d + j] = m[j * d + i];
        }
    }
}

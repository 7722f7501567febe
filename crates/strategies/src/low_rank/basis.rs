//! The bases a low-rank cache projects onto: for each layer and KV head, the top `rank` right
//! singular vectors of that head's K (and V) projection — the eigenvectors of `Wₕᵀ·Wₕ` with the
//! largest eigenvalues. A head's keys are `x · Wₕ`; the best rank-`r` approximation of `Wₕ`
//! (Eckart–Young) is `Wₕ · Vᵣ · Vᵣᵀ`, so its keys are the keys projected on `Vᵣ`: the cache
//! holds `k · Vᵣ` (r numbers) and reads back `(k · Vᵣ) · Vᵣᵀ` (Palu's decomposition, per head:
//! its latent is `x · Wₕ · Vᵣ`). Training-free, from the weights alone.

use kvlab_model::KvProjection;

use super::moments::{LayerMoments, add_outer_upper, mirror_upper};

/// One layer's bases, row-major `[n_kv, head_dim, rank]`, and the projections' biases.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerBases {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// `[n_kv * head_dim]`: subtracted before projecting, added after reconstructing, so a
    /// bias (Qwen2) is kept exactly rather than cut with the rest.
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
}

/// Every layer's [`LayerBases`] for `rank` dimensions of `head_dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRankBases {
    pub layers: Vec<LayerBases>,
    pub n_kv: usize,
    pub head_dim: usize,
    pub rank: usize,
}

impl LowRankBases {
    /// Bases from each layer's projections. `rank` must be in `1..=head_dim` (checked by the
    /// spec), and keys must be the projection's output (not normed after it).
    pub fn from_projections(
        projections: &[KvProjection],
        n_kv: usize,
        head_dim: usize,
        rank: usize,
    ) -> Self {
        let layers = projections
            .iter()
            .map(|p| LayerBases {
                k: head_bases(&p.wk, p.hidden, n_kv, head_dim, rank),
                v: head_bases(&p.wv, p.hidden, n_kv, head_dim, rank),
                k_bias: p.k_bias.clone(),
                v_bias: p.v_bias.clone(),
            })
            .collect();
        Self { layers, n_kv, head_dim, rank }
    }

    /// Bases from calibration moments ([`super::calibrate::moments`]): each head's top-`rank`
    /// eigenvectors of `Σ k·kᵀ` (and of `Σ v·vᵀ`), biases from the projections.
    pub fn from_moments(
        moments: &[LayerMoments],
        projections: &[KvProjection],
        n_kv: usize,
        head_dim: usize,
        rank: usize,
    ) -> Self {
        let d = head_dim;
        let top = |m: &[f64]| -> Vec<f32> {
            (0..n_kv)
                .flat_map(|h| top_eigenvectors(m[h * d * d..(h + 1) * d * d].to_vec(), d, rank))
                .collect()
        };
        let layers = moments
            .iter()
            .zip(projections)
            .map(|(m, p)| LayerBases {
                k: top(&m.k),
                v: top(&m.v),
                k_bias: p.k_bias.clone(),
                v_bias: p.v_bias.clone(),
            })
            .collect();
        Self { layers, n_kv, head_dim, rank }
    }
}

/// `[d, rank]` row-major: the eigenvectors of the symmetric `m` (`[d, d]`) with the largest
/// eigenvalues, as columns.
fn top_eigenvectors(m: Vec<f64>, d: usize, rank: usize) -> Vec<f32> {
    let (values, vectors) = symmetric_eigen(m, d);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    (0..d)
        .flat_map(|i| order[..rank].iter().map(move |&c| (i, c)))
        .map(|(i, c)| vectors[i * d + c] as f32)
        .collect()
}

/// `[n_kv, head_dim, rank]`: each head's top-`rank` right singular vectors of its columns of
/// `w` (`[hidden, n_kv * head_dim]` row-major).
fn head_bases(w: &[f32], hidden: usize, n_kv: usize, d: usize, rank: usize) -> Vec<f32> {
    let cols = n_kv * d;
    let mut out = Vec::with_capacity(n_kv * d * rank);
    for h in 0..n_kv {
        // Gram matrix Wₕᵀ·Wₕ, [d, d], in f64.
        let mut gram = vec![0.0f64; d * d];
        let mut x = vec![0.0f64; d];
        for row in w.chunks_exact(cols).take(hidden) {
            for (xi, &wi) in x.iter_mut().zip(&row[h * d..(h + 1) * d]) {
                *xi = wi as f64;
            }
            add_outer_upper(&mut gram, &x);
        }
        mirror_upper(&mut gram, d);
        out.extend(top_eigenvectors(gram, d, rank));
    }
    out
}

/// Eigenvalues and eigenvectors (columns of the row-major `[n, n]` result) of a symmetric
/// matrix, by cyclic Jacobi rotations: each zeroes one off-diagonal pair, sweeps repeat until
/// the off-diagonal mass is rounding.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off <= 1e-26 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Pᵀ·A·P, V ← V·P, P the rotation in the (p, q) plane.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalizes_a_symmetric_matrix() {
        let n = 6;
        let a: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                ((i + 1) * (j + 1)) as f64 / 7.0
                    + if i == j { i as f64 } else { 0.0 }
                    + ((i + j) % 3) as f64
            })
            .collect();
        let (values, v) = symmetric_eigen(a.clone(), n);
        // A·v_c = λ_c·v_c for every column c, and V is orthonormal.
        for c in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|k| a[i * n + k] * v[k * n + c]).sum();
                assert!((av - values[c] * v[i * n + c]).abs() < 1e-10, "column {c}");
            }
            for c2 in 0..n {
                let dot: f64 = (0..n).map(|k| v[k * n + c] * v[k * n + c2]).sum();
                assert!((dot - f64::from(c == c2)).abs() < 1e-12);
            }
        }
    }
}

//! Non-uniform levels: the Lloyd–Max quantizer of the distribution a Hadamard-rotated head
//! vector's coordinates follow (TurboQuant, arXiv 2504.19874: after a random rotation each
//! coordinate of a vector is close to Gaussian, so one scalar codebook fitted to that
//! distribution serves every coordinate; it beats evenly spaced levels at the same bits).
//!
//! The fit is made once per width, from fixed samples of the standard normal (its quantiles
//! at `(i + ½) / n`, no randomness), by Lloyd's iteration: each boundary halfway between its two
//! levels, each level the mean of the samples between its boundaries, until no level moves.
//! A group is centred and scaled by its own mean and standard deviation before its values are
//! matched to the nearest level ([`super::formats::lloyd_max`]).

use std::sync::OnceLock;

/// Samples the levels are fitted on.
pub const FIT_SAMPLES: usize = 1 << 16;

/// Iterations after which a fit that still moves is stopped (it converges in far fewer).
const MAX_ITERATIONS: usize = 10_000;

/// The standard normal's quantiles at `(i + ½) / n`, `i = 0..n`: ascending.
pub fn gaussian_samples(n: usize) -> Vec<f64> {
    (0..n).map(|i| normal_quantile((i as f64 + 0.5) / n as f64)).collect()
}

/// Where the fit starts: `count` levels at the normal's quantiles scaled by √3 — the
/// high-resolution optimum (level density ∝ the density's cube root, Panter and Dite 1951),
/// close to the fixed point, so Lloyd's iteration ends there rather than stalling on the way
/// (on samples, a step too small to move any boundary past a sample changes nothing).
pub fn initial_levels(count: usize) -> Vec<f64> {
    (0..count).map(|j| 3f64.sqrt() * normal_quantile((j as f64 + 0.5) / count as f64)).collect()
}

/// Lloyd–Max levels (ascending) of `count` cells for `samples` (ascending): the levels that
/// minimise the mean squared distance of each sample to its nearest level, found by Lloyd's
/// iteration from [`initial_levels`].
pub fn lloyd_max(samples: &[f64], count: usize) -> Vec<f64> {
    let n = samples.len();
    // prefix[i]: sum of the first i samples, so a cell's mean is one subtraction.
    let prefix: Vec<f64> = std::iter::once(0.0)
        .chain(samples.iter().scan(0.0, |s, &x| {
            *s += x;
            Some(*s)
        }))
        .collect();
    let mean = |lo: usize, hi: usize| (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
    let mut levels = initial_levels(count);
    for _ in 0..MAX_ITERATIONS {
        // Cell j holds the samples between boundaries j - 1 and j (midpoints of the levels).
        let mut edges = vec![0];
        edges.extend(
            levels.windows(2).map(|w| samples.partition_point(|&x| x <= (w[0] + w[1]) / 2.0)),
        );
        edges.push(n);
        let next: Vec<f64> = edges
            .windows(2)
            .zip(&levels)
            .map(|(e, &old)| if e[1] > e[0] { mean(e[0], e[1]) } else { old })
            .collect();
        let moved = next.iter().zip(&levels).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        levels = next;
        if moved < 1e-12 {
            break;
        }
    }
    levels
}

/// The Lloyd–Max levels of the standard normal for `bits`-bit codes (`2^bits` levels), fitted
/// once per width from [`gaussian_samples`]. `bits` in 1..=8.
pub fn gaussian_levels(bits: u8) -> &'static [f32] {
    static FITS: [OnceLock<Vec<f32>>; 9] = [const { OnceLock::new() }; 9];
    FITS[bits as usize].get_or_init(|| {
        let levels = lloyd_max(&gaussian_samples(FIT_SAMPLES), 1 << bits);
        levels.into_iter().map(|l| l as f32).collect()
    })
}

/// The boundaries between consecutive levels (their midpoints): a value's code is how many
/// boundaries lie below it.
pub fn boundaries(levels: &[f32]) -> Vec<f32> {
    levels.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
}

/// The standard normal's inverse CDF, Acklam's rational approximation (relative error below
/// 1.2e-9 over (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] =
        [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    const LOW: f64 = 0.02425;
    let poly = |coef: &[f64], x: f64| coef.iter().fold(0.0, |acc, &c| acc * x + c);
    let tail = |p: f64| {
        let q = (-2.0 * p.ln()).sqrt();
        poly(&C, q) / (poly(&D, q) * q + 1.0)
    };
    if p < LOW {
        tail(p)
    } else if p > 1.0 - LOW {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        poly(&A, r) * q / (poly(&B, r) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_the_normal_cdf_inverse() {
        // Φ⁻¹ at a few points (from any table): 0.5 → 0, 0.975 → 1.959964, 0.8413447 → 1.
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-7);
        assert!((normal_quantile(0.841_344_746) - 1.0).abs() < 1e-7);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-7);
        assert!((normal_quantile(0.999) - 3.090_232_306).abs() < 1e-7);
    }
}

//! The `lloyd-max` codebook: its levels are the Lloyd–Max fit of its samples (checked against a
//! plain reference fit written here, and against Max's 1960 table for the normal), a store
//! decodes each value to its nearest level (a reference decoder written here), the levels are
//! counted in the store's bytes, and at 2 bits on Gaussian data it errs less than evenly spaced
//! levels.

use burn::prelude::*;
use kvlab_strategies::quant::codebook::{
    FIT_SAMPLES, gaussian_levels, gaussian_samples, initial_levels,
};
use kvlab_strategies::quant::{QuantConfig, QuantStore, Scheme};
use kvlab_strategies::store::SlotStore;

type B = burn_flex::Flex;

/// Lloyd's algorithm, written plainly: assign every sample to its nearest level by a scan,
/// move every level to its samples' mean, until no level moves.
fn reference_fit(samples: &[f64], count: usize) -> Vec<f64> {
    let mut levels = initial_levels(count);
    loop {
        let mut sum = vec![0.0; count];
        let mut hits = vec![0usize; count];
        for &x in samples {
            let mut best = 0;
            for j in 1..count {
                if (x - levels[j]).abs() < (x - levels[best]).abs() {
                    best = j;
                }
            }
            sum[best] += x;
            hits[best] += 1;
        }
        let next: Vec<f64> = (0..count)
            .map(|j| if hits[j] > 0 { sum[j] / hits[j] as f64 } else { levels[j] })
            .collect();
        let moved = next.iter().zip(&levels).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        levels = next;
        if moved < 1e-12 {
            return levels;
        }
    }
}

#[test]
fn codebook_levels_equal_a_reference_lloyd_max_fit() {
    let samples = gaussian_samples(FIT_SAMPLES);
    assert!(samples.windows(2).all(|w| w[0] < w[1]), "ascending quantiles");
    for bits in [2u8, 3, 4] {
        let want = reference_fit(&samples, 1 << bits);
        let got = gaussian_levels(bits);
        assert_eq!(got.len(), 1 << bits);
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{bits} bits: level {g} vs reference {w}");
        }
    }
}

#[test]
fn codebook_levels_match_max_1960_for_the_normal() {
    // J. Max, "Quantizing for minimum distortion" (1960), Table I: the positive output levels
    // of the MSE-optimal quantizer of N(0, 1) with 4, 8 and 16 levels.
    let table: [(u8, &[f32]); 3] = [
        (2, &[0.4528, 1.5104]),
        (3, &[0.2451, 0.7560, 1.3440, 2.1520]),
        (4, &[0.1284, 0.3881, 0.6568, 0.9424, 1.2562, 1.6181, 2.0690, 2.7326]),
    ];
    for (bits, positive) in table {
        let levels = gaussian_levels(bits);
        let upper = &levels[levels.len() / 2..];
        for (got, want) in upper.iter().zip(positive) {
            // The fit sees 65,536 quantiles, not the density, and stops where no boundary crosses a
            // sample: within 2e-3 of the density's optimum.
            assert!((got - want).abs() < 3e-3, "{bits} bits: {got} vs Max's {want}");
        }
        for (lo, hi) in levels.iter().zip(levels.iter().rev()) {
            assert!((lo + hi).abs() < 1e-4, "{bits} bits: symmetric levels {lo}, {hi}");
        }
    }
}

/// Deterministic, roughly Gaussian rows (a sum of 12 uniforms, minus 6), one channel offset.
fn gaussian_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut uniform = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n * d)
        .map(|i| (0..12).map(|_| uniform()).sum::<f32>() - 6.0 + if i % d == 5 { 3.0 } else { 0.0 })
        .collect()
}

#[test]
fn codebook_store_decodes_each_value_to_its_nearest_level() {
    let (n, d, g) = (24, 64, 32);
    let device = Default::default();
    let data = gaussian_rows(n, d, 3);
    let x = Tensor::<B, 3>::from_data(TensorData::new(data.clone(), [n, 1, d]), &device);
    let slots: Vec<usize> = (0..n).collect();
    for bits in [2u8, 3, 4] {
        let config = QuantConfig::per_token(bits, g).with_scheme(Scheme::LloydMax);
        let mut store = QuantStore::<B>::new(config, 1, n, 1, d, &device).unwrap();
        store.write(0, &slots, x.clone(), x.clone());
        let (k, _) = store.read(0, &slots);
        let got: Vec<f32> = k.into_data().to_vec().unwrap();
        let levels = gaussian_levels(bits);
        for (group, decoded) in data.chunks(g).zip(got.chunks(g)) {
            let mean = group.iter().sum::<f32>() / g as f32;
            let std = (group.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / g as f32).sqrt();
            for (x, y) in group.iter().zip(decoded) {
                let t = (x - mean) / std;
                let nearest = levels
                    .iter()
                    .copied()
                    .min_by(|a, b| (t - a).abs().total_cmp(&(t - b).abs()))
                    .unwrap();
                let want = nearest * std + mean;
                assert!(
                    (y - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{bits} bits: {y} vs {want}"
                );
            }
        }
    }
}

#[test]
fn codebook_levels_are_counted_and_beat_even_levels_at_two_bits() {
    let (n, d, g) = (256, 64, 32);
    let device = Default::default();
    let data = gaussian_rows(n, d, 11);
    let x = Tensor::<B, 3>::from_data(TensorData::new(data, [n, 1, d]), &device);
    let slots: Vec<usize> = (0..n).collect();
    let run = |scheme: Scheme, bits: u8| {
        let config = QuantConfig::per_token(bits, g).with_scheme(scheme);
        let mut store = QuantStore::<B>::new(config, 1, n, 1, d, &device).unwrap();
        store.write(0, &slots, x.clone(), x.clone());
        let (k, _) = store.read(0, &slots);
        let mse: f32 = (k - x.clone()).powi_scalar(2).mean().into_scalar();
        (mse, store.memory(0).metadata_bytes)
    };
    for bits in [2u8, 3, 4] {
        let (_, even_meta) = run(Scheme::Asymmetric, bits);
        let (_, codebook_meta) = run(Scheme::LloydMax, bits);
        // Mean and deviation per group, as asymmetric's zero and scale; plus 2^bits f32 levels
        // for keys and for values.
        assert_eq!(codebook_meta, even_meta + 2 * (1 << bits) * 4, "{bits} bits");
    }
    let (even, _) = run(Scheme::Asymmetric, 2);
    let (codebook, _) = run(Scheme::LloydMax, 2);
    assert!(codebook < even, "2 bits: Lloyd–Max MSE {codebook} vs evenly spaced {even}");
}

//! `query_bits = 8`: queries rounded as llama.cpp's CPU attention over quantized keys rounds
//! them. The rounding equals a scalar port of ggml's `quantize_row_q8_0_ref` (written here from
//! the C); a cache rounds in its keys' basis (llama.cpp's channel order, then its Hadamard
//! rotation), checked against that basis change computed here by hand; the key is refused
//! where it cannot apply; with random weights the logits move, and only by the rounding.

use burn::prelude::*;
use burn::tensor::f16;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{Model, ModelConfig};
use kvlab_strategies::key_order::{KeyOrder, interleaved_from_half_split};
use kvlab_strategies::quant::Scheme;
use kvlab_strategies::query_rounding::round_to_q8_0;
use kvlab_strategies::rotation::{Rotation, hadamard};
use kvlab_strategies::{StrategyKind, StrategySpec};

type B = burn_flex::Flex;

const QK: usize = 32;

/// Values with a few large channels and mixed signs.
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503);
            let base = (h % 2000) as f32 / 400.0 - 2.5;
            if i % 64 == 7 { base * 9.0 } else { base }
        })
        .collect()
}

/// ggml `quantize_row_q8_0_ref` then `dequantize_row_q8_0`, one block (ties do not occur in
/// these values; ggml's CPU kernel rounds them to even, its reference away from zero).
fn q8_0_block(x: &[f32]) -> Vec<f32> {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let d16 = f16::from_f32(d).to_f32();
    x.iter().map(|&v| (v * id).round() * d16).collect()
}

fn tensor(x: Vec<f32>, shape: [usize; 3]) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(x, shape), &Default::default())
}

fn host<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "[{i}] {g} vs {w}");
    }
}

#[test]
fn queries_round_to_ggml_q8_0_blocks() {
    let (n, heads, d) = (3, 2, 64);
    let x = values(n * heads * d, 3);
    let got = host(round_to_q8_0(tensor(x.clone(), [n, heads, d])));
    let want: Vec<f32> = x.chunks(QK).flat_map(q8_0_block).collect();
    close(&got, &want, 1e-6);
    assert_ne!(got, x, "rounding changes the queries");
}

fn spec(query_bits: Option<u8>) -> StrategySpec {
    StrategySpec {
        bits: Some(4),
        group_size: Some(QK),
        scheme: Some(Scheme::Q4_1),
        rotation: Some(Rotation::Hadamard),
        key_order: Some(KeyOrder::Interleaved),
        query_bits,
        ..StrategySpec::new(StrategyKind::STATIC)
    }
}

#[test]
fn a_cache_rounds_queries_in_its_keys_channel_order_and_rotation() {
    let config = ModelConfig::seed_toy();
    let (h, t, d) = (config.n_heads, 3, config.head_dim);
    let dev = Default::default();
    let cache = spec(Some(8)).build::<B>(&config, 1, 16, &dev).unwrap();
    let q = values(h * t * d, 11);
    let got = host(cache.round_query(0, tensor(q.clone(), [h, t, d]).unsqueeze_dim::<4>(0)));

    // By hand: each query vector in llama.cpp's order (channel perm[p] at p), times the
    // orthonormal Hadamard matrix, rounded by blocks, rotated back, and put back in order.
    let perm = interleaved_from_half_split(d);
    let hm = hadamard(d).unwrap();
    let rotate = |x: &[f32]| -> Vec<f32> {
        (0..d).map(|j| (0..d).map(|i| x[i] * hm[i * d + j]).sum()).collect()
    };
    let want: Vec<f32> = q
        .chunks(d)
        .flat_map(|row| {
            let ordered: Vec<f32> = perm.iter().map(|&c| row[c]).collect();
            let rounded: Vec<f32> = rotate(&ordered).chunks(QK).flat_map(q8_0_block).collect();
            let back = rotate(&rounded);
            let mut out = vec![0.0; d];
            for (p, &c) in perm.iter().enumerate() {
                out[c] = back[p];
            }
            out
        })
        .collect();
    close(&got, &want, 1e-4);

    // Without query_bits the queries pass untouched.
    let plain = spec(None).build::<B>(&config, 1, 16, &dev).unwrap();
    let same = host(plain.round_query(0, tensor(q.clone(), [h, t, d]).unsqueeze_dim::<4>(0)));
    assert_eq!(same, q);
}

#[test]
fn query_bits_are_refused_where_they_cannot_apply() {
    let message = |s: StrategySpec| s.validate().unwrap_err().to_string();
    let f32_keys = StrategySpec { key_bits: Some(32), value_bits: Some(4), ..spec(Some(8)) };
    assert!(message(f32_keys).contains("query_bits"));
    assert!(message(spec(Some(4))).contains("expected 32 or 8"));
    let low_rank = StrategySpec { rank: Some(32), ..spec(Some(8)) };
    assert!(message(low_rank).contains("full rank"));
    assert!(spec(Some(32)).validate().is_ok());
}

#[test]
fn rounded_queries_move_the_logits_by_the_rounding_only() {
    let config = ModelConfig::seed_toy();
    let dev = Default::default();
    let model = Model::<B>::from_weights(&random_weights(&config, 5), &dev).unwrap();
    let prompts: Vec<Vec<u32>> = vec![(0..12u32).map(|i| (i * 13 + 3) % 100).collect()];
    let logits = |s: StrategySpec| -> Vec<f32> {
        let mut cache = s.build::<B>(&config, 1, 20, &dev).unwrap();
        let mut out = Vec::new();
        generate(&model, cache.as_mut(), &prompts, 4, &Sampling::Greedy, |step| {
            out.extend(host(step.logits.clone()));
        })
        .unwrap();
        out
    };
    let (exact, rounded) = (logits(spec(Some(32))), logits(spec(Some(8))));
    assert_eq!(exact, logits(spec(None)), "query_bits = 32 is the default");
    assert_ne!(exact, rounded, "8-bit queries change the scores");
    let largest = exact.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let moved = exact.iter().zip(&rounded).fold(0.0f32, |a, (e, r)| a.max((e - r).abs()));
    // 8-bit blocks move each query channel by at most half a step (amax / 254).
    assert!(moved < 0.05 * largest, "moved {moved} of {largest}");
}

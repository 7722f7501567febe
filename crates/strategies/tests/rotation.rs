//! Hadamard rotation of a store's head vectors: lossless with f32 storage (the logits of the
//! unrotated cache, MHA/GQA/MQA, every strategy that has a slot store), and with int4 codes it
//! spreads outlier channels over the head, so per-token groups reconstruct far better.

use burn::prelude::*;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{KvCache, Model, ModelConfig};
use kvlab_strategies::quant::{QuantConfig, QuantStore, Scheme};
use kvlab_strategies::rotation::{RotatedStore, Rotation};
use kvlab_strategies::store::SlotStore;
use kvlab_strategies::{StrategyKind, StrategySpec};

type B = burn_flex::Flex;

const PROMPT: usize = 10;
const STEPS: usize = 12;

/// Every step's `[batch, vocab]` logits, flattened, and the greedy tokens.
fn decode(model: &Model<B>, cache: &mut dyn KvCache<B>) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let prompts: Vec<Vec<u32>> =
        (0..2).map(|r| (0..PROMPT as u32).map(|i| (i * 11 + r * 17 + 5) % 100).collect()).collect();
    let mut logits = Vec::new();
    let tokens = generate(model, cache, &prompts, STEPS, &Sampling::Greedy, |step| {
        logits.push(step.logits.clone().into_data().convert::<f32>().to_vec::<f32>().unwrap());
    })
    .unwrap();
    (tokens, logits)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn rotation_with_f32_storage_gives_the_unrotated_logits() {
    let device = Default::default();
    for kv_heads in [4, 2, 1] {
        let config = ModelConfig::seed_toy().with_kv_heads(kv_heads).unwrap();
        let model = Model::<B>::from_weights(&random_weights(&config, 11), &device).unwrap();
        for kind in
            [StrategyKind::Static, StrategyKind::Window, StrategyKind::Sink, StrategyKind::Paged]
        {
            let plain = StrategySpec {
                cache_tokens: Some(16),
                sink_tokens: Some(2),
                block_size: Some(4),
                ..StrategySpec::new(kind)
            };
            let rotated = StrategySpec { rotation: Some(Rotation::Hadamard), ..plain.clone() };
            let build =
                |s: &StrategySpec| s.build::<B>(&config, 2, PROMPT + STEPS, &device).unwrap();
            let (want_tokens, want) = decode(&model, build(&plain).as_mut());
            let (tokens, got) = decode(&model, build(&rotated).as_mut());
            assert_eq!(tokens, want_tokens, "{kind}, kv_heads {kv_heads}");
            let diff = max_abs_diff(&got, &want);
            assert!(diff <= 1e-4, "{kind}, kv_heads {kv_heads}: max |Δlogit| {diff}");
        }
    }
}

#[test]
fn rotation_adds_one_matrix_of_metadata_and_no_byte_per_token() {
    let device = Default::default();
    let config = ModelConfig::seed_toy();
    for bits in [32, 8, 4] {
        let plain = StrategySpec { bits: Some(bits), ..StrategySpec::new(StrategyKind::Static) };
        let rotated = StrategySpec { rotation: Some(Rotation::Hadamard), ..plain.clone() };
        let memory = |s: &StrategySpec| s.build::<B>(&config, 2, 32, &device).unwrap().memory();
        let (a, b) = (memory(&plain), memory(&rotated));
        assert_eq!(a.allocated_bytes, b.allocated_bytes, "bits {bits}");
        assert_eq!(a.live_bytes, b.live_bytes, "bits {bits}");
        assert_eq!(b.metadata_bytes - a.metadata_bytes, 64 * 64 * 4, "bits {bits}");
    }
}

/// Head vectors `[n, 1, 64]` as keys look: a bulk in ±1 and two outlier channels, 12 and -10.
fn outlier_rows(n: usize) -> Tensor<B, 3> {
    let data: Vec<f32> = (0..n * 64)
        .map(|e| {
            let (row, ch) = (e / 64, e % 64);
            let bulk = (((row * 131 + ch * 71) % 97) as f32 / 97.0 - 0.5) * 2.0;
            match ch {
                5 => 12.0 + row as f32 * 0.1,
                40 => -10.0 + row as f32 * 0.1,
                _ => bulk,
            }
        })
        .collect();
    Tensor::<B, 1>::from_floats(data.as_slice(), &Default::default()).reshape([n, 1, 64])
}

#[test]
fn rotation_spreads_outlier_channels_and_cuts_int4_error() {
    let device = Default::default();
    let n = 16;
    let x = outlier_rows(n);
    let slots: Vec<usize> = (0..n).collect();
    // Mean squared reconstruction error of int4 per-token groups of 32, with and without
    // rotation. Reference: the same rows, groups and rounding in plain Python (Sylvester matrix,
    // `round(x / scale)` clamped to ±7, or min-max over 15 levels): symmetric 0.24214 plain,
    // 0.01789 rotated; asymmetric 0.04975 and 0.01480.
    let mse = |scheme: Scheme, rotation: Rotation| -> f32 {
        let mut config = QuantConfig::per_token(4, 32);
        config.scheme = scheme;
        let inner: Box<dyn SlotStore<B>> =
            Box::new(QuantStore::<B>::new(config, 1, n, 1, 64, &device).unwrap());
        let mut store: Box<dyn SlotStore<B>> = match rotation {
            Rotation::None => inner,
            Rotation::Hadamard => Box::new(RotatedStore::new(inner, 64, &device).unwrap()),
        };
        store.write(0, &slots, x.clone(), x.clone());
        let (k, v) = store.read(0, &slots);
        let err = |y: Tensor<B, 3>| (y - x.clone()).powi_scalar(2).mean().into_scalar();
        let (ek, ev) = (err(k), err(v));
        assert_eq!(ek, ev, "keys and values share the encoding");
        ek
    };
    let reference = [(Scheme::Symmetric, 0.24214, 0.01789), (Scheme::Asymmetric, 0.04975, 0.01480)];
    for (scheme, want_plain, want_rotated) in reference {
        let (plain, rotated) = (mse(scheme, Rotation::None), mse(scheme, Rotation::Hadamard));
        let close = |got: f32, want: f32| (got - want).abs() <= 1e-5 + 1e-4 * want;
        assert!(close(plain, want_plain), "{scheme:?}: plain MSE {plain}, reference {want_plain}");
        assert!(close(rotated, want_rotated), "{scheme:?}: rotated {rotated}, ref {want_rotated}");
        assert!(rotated * 3.0 < plain, "{scheme:?}: int4 MSE {plain} plain, {rotated} rotated");
    }
}

//! wgpu really runs (e.g. on Mesa's lavapipe, Vulkan on the CPU): the device opens, its
//! allocator is read, and cached decode equals recompute within 1e-4 as on the CPU backends
//! (crates/strategies/tests/equivalence.rs). Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

use burn::backend::Wgpu;
use burn::prelude::*;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{KvCache, Model, ModelConfig, NoCache};
use kvlab_strategies::{StrategyKind, StrategySpec};
use runner::backend::{BackendName, device_memory, open_device};

const PROMPT: usize = 10;
const STEPS: usize = 16;
const TOL: f32 = 1e-4;

/// One test at a time on the device: two test threads decoding on the same wgpu device at once
/// gave wrong logits (greedy tokens differing from recompute) on lavapipe, each test passing
/// alone — a concurrency problem below kvlab (one runner process uses one thread per device).
static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn device() -> <Wgpu as burn::tensor::backend::BackendTypes>::Device {
    open_device::<Wgpu>(BackendName::Wgpu).unwrap_or_else(|e| panic!("{e}"))
}

/// Holds the device for one test (a failed test's poison is not this test's failure).
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn decode<B: Backend>(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    prompts: &[Vec<u32>],
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>) {
    let mut logits = Vec::new();
    let tokens = generate(model, cache, prompts, STEPS, &Sampling::Greedy, |step| {
        logits.push(step.logits.clone().into_data().convert::<f32>().to_vec::<f32>().unwrap());
    })
    .unwrap();
    (tokens, logits)
}

#[test]
fn cached_decode_equals_recompute_on_wgpu() {
    let _device_held = exclusive();
    let device = device();
    for kv_heads in [4, 2, 1] {
        let config = ModelConfig::seed_toy().with_kv_heads(kv_heads).unwrap();
        let model = Model::<Wgpu>::from_weights(&random_weights(&config, 7), &device).unwrap();
        let prompts: Vec<Vec<u32>> = (0..2)
            .map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect())
            .collect();
        let (want_tokens, want_logits) = decode(&model, &mut NoCache::new(2), &prompts);
        for kind in [StrategyKind::CONCAT, StrategyKind::STATIC, StrategyKind::PAGED] {
            let name = kind.name();
            let spec = StrategySpec { block_size: Some(4), ..StrategySpec::new(kind) };
            let mut cache = spec.build::<Wgpu>(&config, 2, PROMPT + STEPS, &device).unwrap();
            let (tokens, logits) = decode(&model, cache.as_mut(), &prompts);
            assert_eq!(tokens, want_tokens, "{name}, kv_heads {kv_heads}: greedy tokens differ");
            assert_eq!(logits.len(), STEPS);
            for (step, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
                let diff = got.iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(
                    diff <= TOL,
                    "{name}, kv_heads {kv_heads}, step {step}: max |Δlogit| {diff}"
                );
            }
        }
    }
}

#[test]
fn wgpu_allocator_sees_a_held_tensor() {
    let _device_held = exclusive();
    let device = device();
    <Wgpu as Backend>::sync(&device).unwrap();
    let before = device_memory::<Wgpu>(&device).expect("wgpu has a device allocator");
    let t = Tensor::<Wgpu, 2>::ones([256, 1024], &device);
    <Wgpu as Backend>::sync(&device).unwrap();
    let held = device_memory::<Wgpu>(&device).unwrap();
    assert!(
        held.in_use >= before.in_use + 256 * 1024 * 4,
        "in use before {before:?}, with a 1 MiB tensor {held:?}"
    );
    assert!(held.reserved >= held.in_use);
    drop(t);
}

/// Keys padded to a bucket give the unpadded logits on wgpu too (the bucket exists for
/// backends like this one, which compile kernels per shape variant).
#[test]
fn bucketed_keys_give_unbucketed_logits_on_wgpu() {
    let _device_held = exclusive();
    let device = device();
    let config = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    let mut model = Model::<Wgpu>::from_weights(&random_weights(&config, 7), &device).unwrap();
    let prompts: Vec<Vec<u32>> =
        (0..2).map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect()).collect();
    for kind in [StrategyKind::STATIC, StrategyKind::PAGED] {
        let spec = StrategySpec { block_size: Some(4), ..StrategySpec::new(kind) };
        let mut run = |bucket| {
            model.set_key_bucket(bucket);
            let mut cache = spec.build::<Wgpu>(&config, 2, PROMPT + STEPS, &device).unwrap();
            decode(&model, cache.as_mut(), &prompts)
        };
        let (want_tokens, want_logits) = run(0);
        for bucket in [8, 64] {
            let (tokens, logits) = run(bucket);
            assert_eq!(tokens, want_tokens, "{kind}, bucket {bucket}: greedy tokens differ");
            for (step, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
                let diff = got.iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(diff <= TOL, "{kind}, bucket {bucket}, step {step}: max |Δlogit| {diff}");
            }
        }
    }
}

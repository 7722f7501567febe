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
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

const PROMPT: usize = 10;
const STEPS: usize = 16;
const TOL: f32 = 1e-4;
/// Threads decoding at once in the shared-device test.
const THREADS: usize = 4;

/// The allocator's figures are the device's, not one test's: the test that reads them holds
/// this for writing, so no other test allocates meanwhile; the decoding tests hold it for
/// reading and run together on the device, as a library user's threads may.
static ALLOCATOR: RwLock<()> = RwLock::new(());

fn device() -> <Wgpu as burn::tensor::backend::BackendTypes>::Device {
    open_device::<Wgpu>(BackendName::Wgpu).unwrap_or_else(|e| panic!("{e}"))
}

/// Shares the device with the other decoding tests (a failed test's poison is not this
/// test's failure).
fn decoding() -> RwLockReadGuard<'static, ()> {
    ALLOCATOR.read().unwrap_or_else(PoisonError::into_inner)
}

/// Holds the device alone, for reading its allocator.
fn alone() -> RwLockWriteGuard<'static, ()> {
    ALLOCATOR.write().unwrap_or_else(PoisonError::into_inner)
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
    let _device_shared = decoding();
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
    let _device_held = alone();
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
    let _device_shared = decoding();
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

/// Threads decoding with one model on one device get the logits one thread alone gets: cubecl
/// gave each thread a stream of its own and, on lavapipe, four threads' greedy tokens differed
/// from one thread's in every try; `open_device` now sets one stream per device
/// (runner::backend).
#[test]
fn threads_sharing_a_device_get_single_threaded_logits() {
    let _device_shared = decoding();
    let device = device();
    let config = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    let model = Model::<Wgpu>::from_weights(&random_weights(&config, 7), &device).unwrap();
    let prompts: Vec<Vec<u32>> =
        (0..2).map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect()).collect();
    let run = || {
        let spec = StrategySpec { block_size: Some(4), ..StrategySpec::new(StrategyKind::PAGED) };
        let mut cache = spec.build::<Wgpu>(&config, 2, PROMPT + STEPS, &device).unwrap();
        decode(&model, cache.as_mut(), &prompts)
    };
    let (want_tokens, want_logits) = run();
    let results: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS).map(|_| s.spawn(run)).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (thread, (tokens, logits)) in results.iter().enumerate() {
        assert_eq!(tokens, &want_tokens, "thread {thread}: greedy tokens differ");
        for (step, (got, want)) in logits.iter().zip(&want_logits).enumerate() {
            let diff = got.iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(diff <= TOL, "thread {thread}, step {step}: max |Δlogit| {diff}");
        }
    }
}

/// A quantized cache is refused on wgpu before anything runs: WGSL has no 8-bit integers, so
/// its `u8` codes panicked in cubecl's worker thread, and the run went on with wrong
/// perplexities (NaN at int4 KIVI) and exited 0.
#[test]
fn quantized_caches_are_refused_on_wgpu() {
    let dir = std::env::temp_dir().join(format!("kvlab-wgpu-bits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("bits.toml");
    std::fs::write(
        &toml,
        "[experiment]\nname = \"bits\"\nquestion = \"q\"\nmodel = \"seed-toy\"\n\
         [sweep]\nstrategy = [\"static\"]\nbits = [32, 4]\ncontext = [16]\n\
         [workload.memory]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["validate", "--backend", "wgpu"])
        .arg(&toml)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("bits = 4: backend wgpu cannot hold a quantized cache"), "{text}");
    assert!(!text.contains("bits = 32"), "f32 runs are fine on wgpu: {text}");
    std::fs::remove_dir_all(&dir).ok();
}

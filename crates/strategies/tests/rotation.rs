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
        for kind in [
            StrategyKind::STATIC,
            StrategyKind::named("window"),
            StrategyKind::named("sink"),
            StrategyKind::PAGED,
        ] {
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
        let plain = StrategySpec { bits: Some(bits), ..StrategySpec::new(StrategyKind::STATIC) };
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
        let config = QuantConfig::per_token(4, 32).with_scheme(scheme);
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

/// Each write's keys and values, flattened.
type Writes = std::rc::Rc<std::cell::RefCell<Vec<(Vec<f32>, Vec<f32>)>>>;

/// A store that keeps what it was asked to write, so a test can look at the encoded side.
struct Recording {
    written: Writes,
}

impl SlotStore<B> for Recording {
    fn write(&mut self, _layer: usize, _slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let flat = |t: Tensor<B, 3>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        self.written.borrow_mut().push((flat(k), flat(v)));
    }
    fn read(&self, _layer: usize, _slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        unreachable!("the test only writes")
    }
    fn move_slots(&mut self, _layer: usize, _from: usize, _to: usize, _n: usize) {}
    fn memory(&self, _live_slots: usize) -> kvlab_strategies::store::StoreMemory {
        kvlab_strategies::store::StoreMemory::default()
    }
}

/// `x` (rows of `d`) times the block-diagonal Sylvester–Hadamard matrix of order `b`, entry by
/// entry: `(x·H)[j] = Σ_i x[i]·(-1)^popcount(i & j)/√b` within each block.
fn reference_rotation(x: &[f32], d: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0.0f64; x.len()];
    for (row, chunk) in x.chunks(d).enumerate() {
        for (blk, block) in chunk.chunks(b).enumerate() {
            for j in 0..b {
                let sum: f64 = (0..b)
                    .map(|i| {
                        let sign = if (i & j).count_ones() % 2 == 0 { 1.0 } else { -1.0 };
                        block[i] as f64 * sign
                    })
                    .sum();
                out[row * d + blk * b + j] = sum / (b as f64).sqrt();
            }
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

#[test]
fn a_256_dim_head_rotates_keys_whole_and_values_in_64_blocks_as_llama_cpp() {
    let device = Default::default();
    let (n, heads, d) = (3, 1, 256);
    let values = |seed: usize| -> Vec<f32> {
        (0..n * heads * d).map(|e| ((e * 37 + seed * 101) % 53) as f32 / 53.0 - 0.5).collect()
    };
    let (k, v) = (values(1), values(2));
    let tensor = |x: &[f32]| Tensor::<B, 1>::from_floats(x, &device).reshape([n, heads, d]);
    let written = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let inner = Box::new(Recording { written: written.clone() });
    let mut store = RotatedStore::new(inner, d, &device).unwrap();
    store.write(0, &[0, 1, 2], tensor(&k), tensor(&v));
    let (got_k, got_v) = written.borrow()[0].clone();
    let close = |got: &[f32], want: &[f32], what: &str| {
        let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-5, "{what}: max |Δ| {diff}");
    };
    close(&got_k, &reference_rotation(&k, d, 256), "keys by H256");
    close(&got_v, &reference_rotation(&v, d, 64), "values by four H64 blocks");
    // The two matrices are the store's metadata.
    let extra = store.memory(0).metadata_bytes;
    assert_eq!(extra, (256 * 256 + 64 * 64) * 4);
}

//! Group 5: int8 / int4 K/V quantization (`kvlab_strategies::quant`), seed-toy shapes
//! (`[tokens, 4 kv heads, 64]`), asymmetric per-token groups of 32 channels:
//!
//! - `quantize/<int8|int4>/<tokens>`: min/max, round, clamp and pack of `tokens` tokens (one
//!   token is a decode step's write; 1,024 a prefill chunk).
//! - `dequantize/<int8|int4>/<tokens>`: unpack and decode them back to f32.
//! - `quant_store_write/<int8|int4>/<slots>`: `QuantStore::write` of one slot (K and V, one
//!   layer) into a store of `slots` slots: compare with `store_write/f32` in `cache_ops`.
//! - `quant_store_read/<int8|int4>/<slots>`: `QuantStore::read` of all `slots` slots (decoded
//!   to f32, what attention gets).

use std::time::Duration;

use benches::{B, CONTEXTS, device, random, time_steps, timed};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvlab_model::ModelConfig;
use kvlab_strategies::SlotStore;
use kvlab_strategies::quant::{Codec, QuantConfig, QuantStore, Scheme};

const GROUP: usize = 32;
const BITS: [(u8, &str); 2] = [(8, "int8"), (4, "int4")];

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args()
}

/// Quantizes `[n, h, d]` per token in groups of `GROUP` channels and packs the codes, the way
/// `Plane::write_tokens` does. Returns packed codes, scales and zero points.
fn quantize(codec: Codec, x: Tensor<B, 3>) -> (Tensor<B, 3, Int>, Tensor<B, 4>, Tensor<B, 4>) {
    let [n, h, d] = x.dims();
    let q = codec.quantize(x.reshape([n, h, d / GROUP, GROUP]), 3);
    let zero = q.zero.expect("asymmetric");
    (codec.pack(q.codes.reshape([n, h, d])), q.scale, zero)
}

fn dequantize(
    codec: Codec,
    packed: Tensor<B, 3, Int>,
    scale: Tensor<B, 4>,
    zero: Tensor<B, 4>,
) -> Tensor<B, 3> {
    let codes = codec.unpack(packed);
    let [n, h, d] = codes.dims();
    codec.dequantize(codes.reshape([n, h, d / GROUP, GROUP]), scale, Some(zero)).reshape([n, h, d])
}

fn codec(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let device = device();
    let (h, d) = (config.n_kv_heads, config.head_dim);
    for (bits, name) in BITS {
        let codec = Codec { bits, scheme: Scheme::Asymmetric };
        for tokens in [1, 1_024] {
            let x = random([tokens, h, d], &device);
            let elements = Throughput::Elements((tokens * h * d) as u64);
            let mut group = c.benchmark_group("quantize");
            group.throughput(elements.clone());
            group.bench_function(BenchmarkId::new(name, tokens), |b| {
                b.iter_custom(|iters| {
                    time_steps(iters, || {
                        let x = x.clone();
                        timed(&device, || quantize(codec, x))
                    })
                })
            });
            group.finish();

            let (packed, scale, zero) = quantize(codec, x.clone());
            let mut group = c.benchmark_group("dequantize");
            group.throughput(elements);
            group.bench_function(BenchmarkId::new(name, tokens), |b| {
                b.iter_custom(|iters| {
                    time_steps(iters, || {
                        let (p, s, z) = (packed.clone(), scale.clone(), zero.clone());
                        timed(&device, || dequantize(codec, p, s, z))
                    })
                })
            });
            group.finish();
        }
    }
}

fn store(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let device = device();
    let (h, d) = (config.n_kv_heads, config.head_dim);
    for (bits, name) in BITS {
        for slots in CONTEXTS {
            let quant = QuantConfig::per_token(bits, GROUP);
            let mut store = QuantStore::<B>::new(quant, 1, slots, h, d, &device).expect("store");
            let all: Vec<usize> = (0..slots).collect();
            store.write(0, &all, random([slots, h, d], &device), random([slots, h, d], &device));

            let mut group = c.benchmark_group("quant_store_read");
            group.throughput(Throughput::Elements((2 * slots * h * d) as u64));
            group.bench_function(BenchmarkId::new(name, slots), |b| {
                b.iter_custom(|iters| time_steps(iters, || timed(&device, || store.read(0, &all))))
            });
            group.finish();

            let mut group = c.benchmark_group("quant_store_write");
            group.throughput(Throughput::Elements((2 * h * d) as u64));
            let mut next = 0usize;
            group.bench_function(BenchmarkId::new(name, slots), |b| {
                b.iter_custom(|iters| {
                    time_steps(iters, || {
                        let (k, v) = (random([1, h, d], &device), random([1, h, d], &device));
                        let slot = next % slots;
                        next += 1;
                        timed(&device, || store.write(0, &[slot], k, v))
                    })
                })
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = quant;
    config = config();
    targets = codec, store
}
criterion_main!(quant);

//! Cache operations at 256 / 1,024 / 4,096 / 16,384 tokens of context (seed-toy, batch 1):
//!
//! - `write/<strategy>/<context>`: one new token stored, `KvCache::write` of both layers +
//!   `commit`: the per-token write cost, without building attention's view.
//! - `update/<strategy>/<context>`: one new token, `KvCache::update` (write + view) of both
//!   layers + `commit`.
//! - `store_write/f32/<slots>`: `F32Store::write` of one slot (K and V, one layer) into a store
//!   of `slots` slots: the write alone, without the read `update` also returns.
//! - `read/<strategy>/<context>`: what attention gets back for one layer, built the way the
//!   strategy builds it (slot list, store read, reshape to `[b, n_kv, s, d]`, sink's re-rotation).
//! - `paged_gather/<how>/<slots>`: reading `slots` slots of a store through a shuffled block
//!   table (a gather) vs a contiguous range (a zero-copy slice) vs a gather with in-order indices.

use std::time::Duration;

use benches::{
    B, BLOCK_SIZE, CONTEXTS, CacheAtContext, MARGIN, SINK_TOKENS, bytes_per_token, device,
    permutation, random, strategies, time_steps, timed,
};
use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvlab_model::{ModelConfig, RotaryEncoding};
use kvlab_strategies::slot_runs::runs;
use kvlab_strategies::store::from_slots;
use kvlab_strategies::{F32Store, SlotStore, StrategyKind};

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .configure_from_args()
}

/// Group 1: one token written by each strategy, setup (fill, new K/V) outside the clock.
fn update(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let mut group = c.benchmark_group("update");
    group.throughput(Throughput::Bytes(bytes_per_token(&config)));
    for kind in strategies() {
        for context in CONTEXTS {
            let mut cache = CacheAtContext::new(kind, context, &config);
            group.bench_function(BenchmarkId::new(kind.name(), context), |b| {
                b.iter_custom(|iters| time_steps(iters, || cache.timed_step()))
            });
        }
    }
    group.finish();
}

/// Group 0: one token stored by each strategy, nothing read back (setup outside the clock).
fn write(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Bytes(bytes_per_token(&config)));
    for kind in strategies() {
        for context in CONTEXTS {
            let mut cache = CacheAtContext::new(kind, context, &config);
            group.bench_function(BenchmarkId::new(kind.name(), context), |b| {
                b.iter_custom(|iters| time_steps(iters, || cache.timed_write()))
            });
        }
    }
    group.finish();
}

/// Group 1b: the store-level write alone: one slot of K and V into one layer of an
/// `F32Store` of `slots` slots (the slot cycles through the store).
fn store_write(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let device = device();
    let (h, d) = (config.n_kv_heads, config.head_dim);
    let mut group = c.benchmark_group("store_write");
    group.throughput(Throughput::Bytes((2 * h * d * 4) as u64));
    for slots in CONTEXTS {
        let mut store = F32Store::<B>::new(1, slots, h, d, &device);
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new("f32", slots), |b| {
            b.iter_custom(|iters| {
                time_steps(iters, || {
                    let (k, v) = (random([1, h, d], &device), random([1, h, d], &device));
                    let slot = next % slots;
                    next += 1;
                    timed(&device, || store.write(0, &[slot], k, v))
                })
            })
        });
    }
    group.finish();
}

/// The slots `kind`'s `update` reads for attention at `context` tokens, in the order it reads
/// them (see the strategy files), with the newest token `newest` already written.
fn read_slots(kind: StrategyKind, context: usize, newest: usize) -> Vec<usize> {
    match kind.name() {
        // Static and paged (a fresh pool hands out blocks 0, 1, 2, ... in order): 0..=newest.
        "static" | "paged" | "concat" => (0..=newest).collect(),
        // The whole ring in slot order.
        "window" | "shift-window" => (0..context).collect(),
        // Sinks, then the recent ring oldest first (as the `sink` policy reads them).
        "sink" => {
            let recent = context - SINK_TOKENS;
            let slot_of = |p: usize| SINK_TOKENS + (p - SINK_TOKENS) % recent;
            (0..SINK_TOKENS).chain((newest + 1 - recent..=newest).map(slot_of)).collect()
        }
        // Not in the write/read tables: what they read depends on attention (the eviction
        // bench times them through the model).
        _ => Vec::new(),
    }
}

/// Group 2: the read half of `update`: building the view of one layer at each context.
/// Concat's view is the concatenated tensor itself (its cost is in `update`); here it is the
/// clone of the stored tensors, for completeness.
fn read(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let device = device();
    let (h, d) = (config.n_kv_heads, config.head_dim);
    let rope = RotaryEncoding::<B>::new(d, config.rope_theta, config.max_positions, &device);
    let mut group = c.benchmark_group("read");
    for kind in strategies() {
        for context in CONTEXTS {
            group.throughput(Throughput::Bytes((2 * context * h * d * 4) as u64));
            let id = BenchmarkId::new(kind.name(), context);
            if kind == StrategyKind::CONCAT {
                let (k, v) =
                    (random([1, h, context, d], &device), random([1, h, context, d], &device));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        time_steps(iters, || timed(&device, || (k.clone(), v.clone())))
                    })
                });
                continue;
            }
            let capacity = if benches::is_rolling(kind) { context } else { context + MARGIN };
            let mut store = F32Store::<B>::new(1, capacity, h, d, &device);
            let all: Vec<usize> = (0..capacity).collect();
            store.write(
                0,
                &all,
                random([capacity, h, d], &device),
                random([capacity, h, d], &device),
            );
            // A rolling cache's write cursor mid-ring; the others' newest token at `context`.
            let newest = if benches::is_rolling(kind) { 3 * context / 2 } else { context };
            let sink = kind == StrategyKind::named("sink");
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    time_steps(iters, || {
                        timed(&device, || {
                            let slots = read_slots(kind, context, newest);
                            let (k, v) = store.read(0, &slots);
                            let (k, v) = (from_slots(k, 1), from_slots(v, 1));
                            if sink { (rope.apply(k, &[0]), v) } else { (k, v) }
                        })
                    })
                })
            });
        }
    }
    group.finish();
}

/// A read of K and V slots.
type ReadFn<'a> = dyn Fn() -> (Tensor<B, 3>, Tensor<B, 3>) + 'a;

/// Group 4: reading `slots` slots through a block table vs a contiguous range.
fn paged_gather(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let device = device();
    let (h, d) = (config.n_kv_heads, config.head_dim);
    let mut group = c.benchmark_group("paged_gather");
    for slots in CONTEXTS {
        group.throughput(Throughput::Bytes((2 * slots * h * d * 4) as u64));
        let mut store = F32Store::<B>::new(1, slots, h, d, &device);
        let all: Vec<usize> = (0..slots).collect();
        store.write(0, &all, random([slots, h, d], &device), random([slots, h, d], &device));
        // A block table of shuffled physical blocks (what a long-running pool hands out).
        let table = permutation(slots / BLOCK_SIZE, 42);
        let shuffled: Vec<usize> =
            table.iter().flat_map(|&blk| blk * BLOCK_SIZE..(blk + 1) * BLOCK_SIZE).collect();
        assert!(runs(&shuffled).len() > 1, "a shuffled table is not one run");
        let cases: [(&str, Box<ReadFn>); 3] = [
            ("contiguous_slice", Box::new(|| store.read(0, &all))),
            ("block_table_gather", Box::new(|| store.read(0, &shuffled))),
            ("in_order_gather", {
                let idx = Tensor::<B, 1, Int>::from_data(
                    TensorData::new((0..slots as i64).collect::<Vec<_>>(), [slots]),
                    &device,
                );
                let (kb, vb) = store.read(0, &all);
                Box::new(move || {
                    (kb.clone().select(0, idx.clone()), vb.clone().select(0, idx.clone()))
                })
            }),
        ];
        for (name, read) in &cases {
            group.bench_function(BenchmarkId::new(*name, slots), |b| {
                b.iter_custom(|iters| time_steps(iters, || timed(&device, read)))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = cache_ops;
    config = config();
    targets = write, update, store_write, read, paged_gather
}
criterion_main!(cache_ops);

//! Group 6: grouped-query attention of one new token (8 query heads, 2 KV heads, head_dim 64,
//! batch 1) over 256 / 1,024 / 4,096 / 16,384 keys, two ways:
//!
//! - `gqa/folded/<keys>`: what `crates/model/src/attention.rs` does: the 4 query heads sharing
//!   a KV head are folded into the query axis, `[b, n_kv, n_rep * t, d]`, one matmul per KV head.
//! - `gqa/repeated/<keys>`: HF's `repeat_kv`: K and V materialized to 8 heads, then standard
//!   multi-head attention.
//!
//! Both compute the same output; the repeat is inside the timed region (it is part of the
//! per-step cost).

use std::time::Duration;

use benches::{B, CONTEXTS, device, random, time_steps, timed};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const N_HEADS: usize = 8;
const N_KV: usize = 2;
const HEAD_DIM: usize = 64;
const T: usize = 1;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args()
}

/// q: `[1, h, t, d]`, k/v: `[1, kv, s, d]` -> `[1, h, t, d]`, folding query heads per KV head.
fn folded(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, t, d] = q.dims();
    let kv = k.dims()[1];
    let q = q.reshape([b, kv, (h / kv) * t, d]);
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f64).sqrt());
    softmax(scores, 3).matmul(v).reshape([b, h, t, d])
}

/// `[1, kv, s, d]` -> `[1, kv * n_rep, s, d]`, each KV head repeated for its query heads.
fn repeat_kv(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    let [b, kv, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2).repeat_dim(2, n_rep).reshape([b, kv * n_rep, s, d])
}

fn repeated(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, h, _, d] = q.dims();
    let n_rep = h / k.dims()[1];
    let (k, v) = (repeat_kv(k, n_rep), repeat_kv(v, n_rep));
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f64).sqrt());
    softmax(scores, 3).matmul(v)
}

fn gqa(c: &mut Criterion) {
    let device = device();
    let mut group = c.benchmark_group("gqa");
    for keys in CONTEXTS {
        let q = random([1, N_HEADS, T, HEAD_DIM], &device);
        let k = random([1, N_KV, keys, HEAD_DIM], &device);
        let v = random([1, N_KV, keys, HEAD_DIM], &device);
        let a = folded(q.clone(), k.clone(), v.clone()).into_data();
        let r = repeated(q.clone(), k.clone(), v.clone()).into_data();
        a.assert_approx_eq::<f32>(&r, burn::tensor::Tolerance::default());
        // The K/V bytes one step reads.
        group.throughput(Throughput::Bytes((2 * N_KV * keys * HEAD_DIM * 4) as u64));
        let ways: [(&str, fn(_, _, _) -> _); 2] = [("folded", folded), ("repeated", repeated)];
        for (name, attend) in ways {
            group.bench_function(BenchmarkId::new(name, keys), |b| {
                b.iter_custom(|iters| {
                    time_steps(iters, || {
                        let (q, k, v) = (q.clone(), k.clone(), v.clone());
                        timed(&device, || attend(q, k, v))
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = gqa
}
criterion_main!(benches);

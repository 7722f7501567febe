//! Group 3: one full decode step, `Model::forward_last` with one token, over a `static` cache
//! already holding the context (filled with random K/V outside the clock):
//!
//! - `decode_step/seed-toy/<context>` at 256 / 1,024 / 4,096 / 16,384 (random weights).
//! - `decode_step/smollm2-135m/<context>` at 256 and 1,024 (the pinned GGUF; skipped with a
//!   message when it is not in the cache and cannot be fetched).

use std::time::Duration;

use benches::{B, CONTEXTS, CacheAtContext, device, time_steps};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvlab_model::{Model, ModelConfig, assets, init, loader};
use kvlab_strategies::StrategyKind;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

fn bench_model(c: &mut Criterion, name: &str, model: &Model<B>, contexts: &[usize]) {
    let mut group = c.benchmark_group("decode_step");
    // One token per step.
    group.throughput(Throughput::Elements(1));
    for &context in contexts {
        let mut cache = CacheAtContext::new(StrategyKind::STATIC, context, &model.config);
        group.bench_function(BenchmarkId::new(name, context), |b| {
            b.iter_custom(|iters| time_steps(iters, || cache.timed_decode(model, 1)))
        });
    }
    group.finish();
}

fn seed_toy(c: &mut Criterion) {
    let config = ModelConfig::seed_toy();
    let weights = init::random_weights(&config, 0);
    let model = Model::<B>::from_weights(&weights, &device()).expect("seed-toy model");
    bench_model(c, "seed-toy", &model, &CONTEXTS);
}

fn smollm2(c: &mut Criterion) {
    let weights = match assets::smollm2_gguf(None)
        .map_err(|e| e.to_string())
        .and_then(|path| loader::load_gguf(&path).map_err(|e| e.to_string()))
    {
        Ok(w) => w,
        Err(e) => {
            eprintln!("decode_step/smollm2-135m skipped: the model is not available ({e})");
            return;
        }
    };
    let model = Model::<B>::from_weights(&weights, &device()).expect("SmolLM2 model");
    bench_model(c, "smollm2-135m", &model, &[256, 1_024]);
}

criterion_group! {
    name = decode;
    config = config();
    targets = seed_toy, smollm2
}
criterion_main!(decode);

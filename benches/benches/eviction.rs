//! Group 6: what a keep-policy costs per decoded token. One `Model::forward_last` step of
//! SmolLM2-135M (the pinned GGUF; random weights of its shape when it cannot be fetched) through
//! a cache already full at 256 / 1,024 / 4,096 slots (random K/V, filled outside the clock), so
//! every measured token evicts one:
//!
//! - `evict_step/<kind>/<slots>` for static (the full cache holding as many tokens, which evicts
//!   nothing), window, h2o, tova and key-norm: criterion's estimates.
//! - `evict_ratio`: H2O's observe path against the static f32 step at 1,024 slots, side by
//!   side: `ROUNDS` alternating rounds of `STEPS` steps each, the median per-step time of each
//!   and their ratio printed (the target: ≤ 1.3x). Alternating is what makes a ratio
//!   on a shared machine mean something: both see the same drift.

use std::time::Duration;

use benches::{B, CacheAtContext, device, time_steps};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvlab_model::{Model, ModelConfig, assets, init, loader};
use kvlab_strategies::StrategyKind;

const SLOTS: [usize; 3] = [256, 1_024, 4_096];
const KINDS: [&str; 5] = ["static", "window", "h2o", "tova", "key-norm"];
const ROUNDS: usize = 7;
const STEPS: usize = 16;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// SmolLM2-135M: its weights when the GGUF is at hand, else random weights of its shape.
fn smollm2() -> (Model<B>, &'static str) {
    let loaded = assets::smollm2_gguf(None)
        .map_err(|e| e.to_string())
        .and_then(|path| loader::load_gguf(&path).map_err(|e| e.to_string()));
    let (weights, name) = match loaded {
        Ok(w) => (w, "smollm2-135m"),
        Err(e) => {
            eprintln!("evict_step: the GGUF is not available ({e}); random SmolLM2-shaped weights");
            let config = ModelConfig::preset("smollm2-135m").expect("preset");
            (init::random_weights(&config, 0), "smollm2-135m-random")
        }
    };
    (Model::<B>::from_weights(&weights, &device()).expect("SmolLM2 model"), name)
}

fn evict_step(c: &mut Criterion) {
    let (model, name) = smollm2();
    let mut group = c.benchmark_group(format!("evict_step/{name}"));
    group.throughput(Throughput::Elements(1));
    for &slots in &SLOTS {
        for kind in KINDS.map(StrategyKind::named) {
            let mut cache = CacheAtContext::new(kind, slots, &model.config);
            group.bench_function(BenchmarkId::new(kind.name(), slots), |b| {
                b.iter_custom(|iters| time_steps(iters, || cache.timed_decode(&model, 1)))
            });
        }
    }
    group.finish();
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn evict_ratio(_c: &mut Criterion) {
    let (model, name) = smollm2();
    let slots = 1_024;
    let mut static_cache = CacheAtContext::new(StrategyKind::STATIC, slots, &model.config);
    let mut h2o = CacheAtContext::new(StrategyKind::named("h2o"), slots, &model.config);
    // One untimed step each: first-touch allocations out of the way.
    static_cache.timed_decode(&model, 1);
    h2o.timed_decode(&model, 1);
    let (mut base, mut observed) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.push(time_steps(STEPS as u64, || static_cache.timed_decode(&model, 1)) / STEPS as u32);
        observed.push(time_steps(STEPS as u64, || h2o.timed_decode(&model, 1)) / STEPS as u32);
    }
    let ratios: Vec<f64> =
        base.iter().zip(&observed).map(|(b, o)| o.as_secs_f64() / b.as_secs_f64()).collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "evict_ratio/{name}/{slots}: static {:.2} ms, h2o {:.2} ms per step (medians of {ROUNDS} \
         alternating rounds of {STEPS}); h2o/static median {:.3} (rounds {:.3}..{:.3})",
        median(base).as_secs_f64() * 1e3,
        median(observed).as_secs_f64() * 1e3,
        sorted[ROUNDS / 2],
        sorted[0],
        sorted[ROUNDS - 1],
    );
}

criterion_group! {
    name = eviction;
    config = config();
    targets = evict_ratio, evict_step
}
criterion_main!(eviction);

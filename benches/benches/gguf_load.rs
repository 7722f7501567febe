//! GGUF load + dequantize of SmolLM2-135M-Instruct (98 MB of Q4_1/Q8_0 → 135M f32 weights), and
//! the upload of those host weights to the flex device. Skipped with a message when the model is
//! not in the cache and cannot be fetched.

use std::time::Duration;

use benches::{B, device};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvlab_model::{Model, assets, loader};

fn load(c: &mut Criterion) {
    let path = match assets::smollm2_gguf(None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gguf/load_and_dequantize skipped: the model is not available ({e})");
            return;
        }
    };
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut group = c.benchmark_group("gguf");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("load_and_dequantize", |b| {
        b.iter(|| loader::load_gguf(&path).expect("the pinned GGUF loads"))
    });
    let weights = loader::load_gguf(&path).expect("the pinned GGUF loads");
    group.bench_function("upload_to_flex", |b| {
        b.iter(|| Model::<B>::from_weights(&weights, &device()).expect("uploads"))
    });
    group.finish();
}

criterion_group! {
    name = gguf;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    targets = load
}
criterion_main!(gguf);

//! End to end: the seed-toy model decoding through a `static` cache over a `QuantStore` stays
//! close to the same cache over f32 slots. Teacher-forced (both caches see the f32 run's
//! tokens), so every step's logits are comparable. Prints the max |Δlogit| per config.

use burn::prelude::*;
use kvlab_model::generate::{Sampling, argmax, generate};
use kvlab_model::init::random_weights;
use kvlab_model::{KvCache, Model, ModelConfig};
use kvlab_strategies::quant::{QuantConfig, QuantStore};
use kvlab_strategies::store::{F32Store, SlotStore};
use kvlab_strategies::{KvLayout, StaticCache};

type B = burn_flex::Flex;

const BATCH: usize = 2;
const PROMPT: usize = 10;
const STEPS: usize = 22;
const MAX_SEQ: usize = PROMPT + STEPS;

fn host(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Prefills `seqs[..PROMPT]`, then feeds one token per step; every step's `[batch, vocab]`
/// logits (the last prefill position's first).
fn teacher_forced(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    seqs: &[Vec<u32>],
) -> Vec<Vec<f32>> {
    let device = Default::default();
    let mut out = Vec::new();
    let mut start = 0;
    for end in std::iter::once(PROMPT).chain(PROMPT + 1..MAX_SEQ) {
        let rows: Vec<&[u32]> = seqs.iter().map(|s| &s[start..end]).collect();
        let tokens = kvlab_model::model::tokens_tensor(&rows, &device);
        out.push(host(model.forward_last(tokens, cache).unwrap()));
        start = end;
    }
    out
}

fn static_cache(layout: KvLayout, store: Box<dyn SlotStore<B>>) -> StaticCache<B> {
    StaticCache::new(layout, MAX_SEQ, store).unwrap()
}

#[test]
fn quant_static_cache_decode_stays_close_to_f32() {
    let device = Default::default();
    let config = ModelConfig::seed_toy();
    let model = Model::<B>::from_weights(&random_weights(&config, 0), &device).unwrap();
    let layout = KvLayout::new(&config, BATCH);
    let (l, h, d, slots) = (config.n_layers, config.n_kv_heads, config.head_dim, BATCH * MAX_SEQ);
    let prompts: Vec<Vec<u32>> = (0..BATCH)
        .map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r as u32 * 13 + 3) % 100).collect())
        .collect();

    let f32_store = || Box::new(F32Store::<B>::new(l, slots, h, d, &device));
    let mut reference = static_cache(layout, f32_store());
    let new = generate(&model, &mut reference, &prompts, STEPS, &Sampling::Greedy, |_| {}).unwrap();
    let seqs: Vec<Vec<u32>> =
        prompts.iter().zip(&new).map(|(p, n)| [p.clone(), n.clone()].concat()).collect();
    let want = teacher_forced(&model, &mut static_cache(layout, f32_store()), &seqs);

    for (name, q) in [
        ("int8 per-token g32", QuantConfig::per_token(8, 32)),
        ("int4 per-token g32", QuantConfig::per_token(4, 32)),
        ("int8 kivi g16 r0", QuantConfig::kivi(8, 16, 0)),
        ("int4 kivi g16 r0", QuantConfig::kivi(4, 16, 0)),
        ("int4 kivi g16 r8/row", QuantConfig::kivi(4, 16, 8 * BATCH)),
    ] {
        let store = QuantStore::<B>::new(q, l, slots, h, d, &device).unwrap();
        let got = teacher_forced(&model, &mut static_cache(layout, Box::new(store)), &seqs);
        let (mut max, mut agree, mut total) = (0.0f32, 0, 0);
        for (g, w) in got.iter().zip(&want) {
            assert!(g.iter().all(|x| x.is_finite()), "{name}: non-finite logits");
            max = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(max, f32::max);
            for (gr, wr) in g.chunks(config.vocab_size).zip(w.chunks(config.vocab_size)) {
                agree += usize::from(argmax(gr) == argmax(wr));
                total += 1;
            }
        }
        println!("{name}: max |Δlogit| = {max:.5}, greedy agreement {agree}/{total}");
        if q.keys.bits == 8 {
            assert!(max < 0.05, "{name}: max |Δlogit| {max}");
        }
        assert!(agree * 10 >= total * 7, "{name}: greedy tokens agree on {agree}/{total} only");
    }
}

/// Ring and shift windows over KIVI int4 (per-channel keys re-staged on every wrap or shift):
/// decoding past the window runs and stays finite.
#[test]
fn quant_wraps_any_window_strategy() {
    use kvlab_strategies::EvictingCache;
    use kvlab_strategies::evict::{ShiftWindow, Window};
    let device = Default::default();
    let config = ModelConfig::seed_toy();
    let model = Model::<B>::from_weights(&random_weights(&config, 0), &device).unwrap();
    let layout = KvLayout::new(&config, BATCH);
    let window = 16;
    let q = QuantConfig::kivi(4, 8, 4 * BATCH);
    q.check_alignment(window).unwrap();
    let store = || {
        let s = QuantStore::<B>::new(
            q,
            config.n_layers,
            BATCH * window,
            config.n_kv_heads,
            config.head_dim,
            &device,
        );
        Box::new(s.unwrap()) as Box<dyn SlotStore<B>>
    };
    let prompts: Vec<Vec<u32>> =
        (0..BATCH).map(|r| (0..6u32).map(|i| i * 5 + r as u32).collect()).collect();
    let caches: Vec<(&str, Box<dyn KvCache<B>>)> = vec![
        (
            "window",
            Box::new(EvictingCache::new(layout, window, Box::new(Window), store()).unwrap()),
        ),
        (
            "shift-window",
            Box::new(EvictingCache::new(layout, window, Box::new(ShiftWindow), store()).unwrap()),
        ),
    ];
    for (name, mut cache) in caches {
        let mut finite = true;
        generate(&model, cache.as_mut(), &prompts, 30, &Sampling::Greedy, |step| {
            finite &= host(step.logits.clone()).iter().all(|x| x.is_finite());
        })
        .unwrap();
        assert!(finite, "{name}");
        assert!(cache.memory().allocated_bytes > 0);
    }
}

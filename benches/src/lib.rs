//! Shared setup for kvlab's criterion benches (`benches/benches/*.rs`): the backend, the
//! contexts, building and filling caches outside the timed region, and the timed-step helpers.
//!
//! Every timed region ends with [`sync`], and everything a step returns is dropped inside it,
//! so no handle onto a cache buffer outlives the step (burn's tensors are copy-on-write: a write
//! into a buffer that still has a second handle copies the whole buffer).

use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::Distribution;
use kvlab_model::model::tokens_tensor;
use kvlab_model::{KvCache, Model, ModelConfig, RotaryEncoding};
use kvlab_strategies::layout::KvLayout;
use kvlab_strategies::{ConcatCache, StrategyKind, StrategySpec};

/// The CPU backend the benches run on.
pub type B = burn_flex::Flex;

/// Its device.
pub type Device = burn_flex::FlexDevice;

pub fn device() -> Device {
    burn_flex::FlexDevice
}

/// Tokens already in the cache when the measured token is written.
pub const CONTEXTS: [usize; 4] = [256, 1_024, 4_096, 16_384];

/// Spare slots past the context for strategies that grow (static, paged, concat): the cache is
/// brought back to `context` tokens every `MARGIN` timed steps, so a measured step always
/// sees between `context` and `context + MARGIN` tokens.
pub const MARGIN: usize = 32;

/// Window and shift-window rotate keys at their position in the text, which grows without
/// bound as they roll: they are rebuilt every `ROLL_PERIOD` steps so positions stay inside the
/// rotary table (sized `context + ROLL_PERIOD + MARGIN`).
pub const ROLL_PERIOD: usize = 16_384;

/// Sink tokens of the `sink` strategy in the benches.
pub const SINK_TOKENS: usize = 4;

/// Block size of the `paged` strategy in the benches.
pub const BLOCK_SIZE: usize = 16;

/// Waits for the device (a no-op on flex, kept so the benches stay honest on other backends).
pub fn sync(device: &Device) {
    B::sync(device).expect("device sync");
}

/// A tensor of uniform random values in [-1, 1).
pub fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
}

/// The strategies of the write/read benches, in table order.
pub fn strategies() -> [StrategyKind; 6] {
    ["concat", "static", "window", "shift-window", "sink", "paged"].map(StrategyKind::named)
}

/// The keep-policies that evict one token per step once full, in table order.
pub const EVICTING: [&str; 3] = ["h2o", "tova", "key-norm"];

/// Whether `kind` keeps a fixed budget of `cache_tokens` that rolls once full.
pub fn is_rolling(kind: StrategyKind) -> bool {
    matches!(kind.name(), "window" | "shift-window" | "sink") || EVICTING.contains(&kind.name())
}

/// Whether `kind` rotates keys at their position in the text, which grows as it rolls.
fn positions_grow(kind: StrategyKind) -> bool {
    is_rolling(kind) && kind.name() != "sink"
}

/// The spec of `kind` at `context`: rolling strategies get `cache_tokens = context`, so a cache
/// filled with `context` tokens is full and every measured token rolls it.
pub fn spec(kind: StrategyKind, context: usize) -> StrategySpec {
    let mut spec = StrategySpec::new(kind);
    match kind.name() {
        "window" | "shift-window" => spec.cache_tokens = Some(context),
        k if EVICTING.contains(&k) => spec.cache_tokens = Some(context),
        "sink" => {
            spec.cache_tokens = Some(context);
            spec.sink_tokens = Some(SINK_TOKENS);
        }
        "paged" => spec.block_size = Some(BLOCK_SIZE),
        _ => {}
    }
    spec
}

/// Per-token K/V bytes written into a cache (all layers, K and V, f32).
pub fn bytes_per_token(config: &ModelConfig) -> u64 {
    config.kv_bytes_per_token(4) as u64
}

/// Fills `cache` with `tokens` random tokens in one forward (one `update` per layer with
/// `t = tokens`, then `commit`): O(tokens), whatever the strategy.
pub fn fill(
    cache: &mut dyn KvCache<B>,
    config: &ModelConfig,
    tokens: usize,
    rope: &RotaryEncoding<B>,
    device: &Device,
) {
    let shape = [1, config.n_kv_heads, tokens, config.head_dim];
    for layer in 0..config.n_layers {
        let view = cache
            .update(layer, random(shape, device), random(shape, device), rope)
            .expect("fill the cache");
        drop(view);
    }
    cache.commit(tokens);
    sync(device);
}

/// How a [`CacheAtContext`] goes back to `context` tokens after `MARGIN` measured steps.
enum Refill {
    /// A rolling cache stays full: nothing to do (sink keeps positions inside the cache).
    Never,
    /// `static`: `reset` keeps the slots (and what they hold), `commit(context)` makes the first
    /// `context` of them live again: exactly the state after the first fill, since later steps
    /// only wrote slots `context..`.
    ResetCommit,
    /// `concat`: a clone of the filled cache (concat never writes in place, so sharing the
    /// template's buffers costs no copy).
    Template(ConcatCache<B>),
    /// `paged` (every `MARGIN` steps: a fresh pool hands out blocks in the same order), window,
    /// shift-window and the evicting policies (every `ROLL_PERIOD` steps, to bound rotary
    /// positions): build and fill a fresh cache.
    Rebuild,
}

/// One strategy's cache held at `context` tokens, stepping one token at a time.
pub struct CacheAtContext {
    pub kind: StrategyKind,
    pub context: usize,
    pub config: ModelConfig,
    pub rope: RotaryEncoding<B>,
    device: Device,
    cache: Box<dyn KvCache<B>>,
    refill: Refill,
    steps: usize,
}

impl CacheAtContext {
    /// Builds `kind` for seed-toy (batch 1) and fills it to `context` (untimed).
    pub fn new(kind: StrategyKind, context: usize, config: &ModelConfig) -> Self {
        let device = device();
        let rope = RotaryEncoding::new(
            config.head_dim,
            config.rope_theta,
            config.max_positions.max(context + ROLL_PERIOD + MARGIN + 1),
            &device,
        );
        let (cache, refill) = match kind {
            StrategyKind::CONCAT => {
                let mut template = ConcatCache::<B>::new(KvLayout::new(config, 1));
                fill(&mut template, config, context, &rope, &device);
                (Box::new(template.clone()) as Box<dyn KvCache<B>>, Refill::Template(template))
            }
            _ => {
                let refill = match kind {
                    StrategyKind::STATIC => Refill::ResetCommit,
                    StrategyKind::PAGED => Refill::Rebuild,
                    k if positions_grow(k) => Refill::Rebuild,
                    _ => Refill::Never,
                };
                (Self::build(kind, context, config, &rope, &device), refill)
            }
        };
        Self { kind, context, config: config.clone(), rope, device, cache, refill, steps: 0 }
    }

    fn build(
        kind: StrategyKind,
        context: usize,
        config: &ModelConfig,
        rope: &RotaryEncoding<B>,
        device: &Device,
    ) -> Box<dyn KvCache<B>> {
        let max_seq = if is_rolling(kind) { context } else { context + MARGIN };
        let mut cache = spec(kind, context).build::<B>(config, 1, max_seq, device).expect("build");
        fill(cache.as_mut(), config, context, rope, device);
        cache
    }

    /// Brings the cache back to `context` tokens when it has grown by `MARGIN` (untimed).
    fn refill_if_needed(&mut self) {
        let period = if positions_grow(self.kind) { ROLL_PERIOD } else { MARGIN };
        if self.steps < period {
            return;
        }
        self.steps = 0;
        match &self.refill {
            Refill::Never => {}
            Refill::ResetCommit => {
                self.cache.reset();
                self.cache.commit(self.context);
            }
            Refill::Template(t) => self.cache = Box::new(t.clone()),
            Refill::Rebuild => {
                // Free the old pool before allocating the new one.
                self.cache = Box::new(kvlab_strategies::NoCache::new(1));
                self.cache =
                    Self::build(self.kind, self.context, &self.config, &self.rope, &self.device);
            }
        }
    }

    /// One timed decode step: `Model::forward_last` with one token (logits dropped inside the
    /// timed region). `model` must have the config this cache was built for.
    pub fn timed_decode(&mut self, model: &Model<B>, token: u32) -> Duration {
        self.refill_if_needed();
        let tokens = tokens_tensor::<B>(&[&[token]], &self.device);
        sync(&self.device);
        let start = Instant::now();
        let logits = model.forward_last(tokens, self.cache.as_mut()).expect("decode step");
        std::hint::black_box(&logits);
        drop(logits);
        sync(&self.device);
        let elapsed = start.elapsed();
        self.steps += 1;
        elapsed
    }

    /// One timed token: `update` of every layer (its view dropped inside the timed region)
    /// and `commit(1)`. The new K/V are made before the clock starts.
    pub fn timed_step(&mut self) -> Duration {
        self.time_token(|cache, layer, k, v, rope| {
            let view = cache.update(layer, k, v, rope).expect("update");
            std::hint::black_box(&view);
        })
    }

    /// One timed token written and nothing read back: `write` of every layer and
    /// `commit(1)`, the storing half of `update`.
    pub fn timed_write(&mut self) -> Duration {
        self.time_token(|cache, layer, k, v, rope| cache.write(layer, k, v, rope).expect("write"))
    }

    /// Times `per_layer` over every layer for one new token, then `commit(1)`.
    fn time_token(
        &mut self,
        mut per_layer: impl FnMut(
            &mut dyn KvCache<B>,
            usize,
            Tensor<B, 4>,
            Tensor<B, 4>,
            &RotaryEncoding<B>,
        ),
    ) -> Duration {
        self.refill_if_needed();
        let shape = [1, self.config.n_kv_heads, 1, self.config.head_dim];
        let kv: Vec<_> = (0..self.config.n_layers)
            .map(|_| (random(shape, &self.device), random(shape, &self.device)))
            .collect();
        sync(&self.device);
        let start = Instant::now();
        for (layer, (k, v)) in kv.into_iter().enumerate() {
            per_layer(self.cache.as_mut(), layer, k, v, &self.rope);
        }
        self.cache.commit(1);
        sync(&self.device);
        let elapsed = start.elapsed();
        self.steps += 1;
        elapsed
    }
}

/// Sums `iters` timed steps: the body of criterion's `iter_custom`.
pub fn time_steps(iters: u64, mut step: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| step()).sum()
}

/// Times `f` alone, with the device synced before and after.
pub fn timed<T>(device: &Device, f: impl FnOnce() -> T) -> Duration {
    sync(device);
    let start = Instant::now();
    let out = f();
    sync(device);
    drop(out);
    start.elapsed()
}

/// A deterministic permutation of `0..n` (xorshift Fisher-Yates), for block tables whose
/// blocks are not in order.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed.max(1);
    let mut out: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(100, 7);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn steps_keep_the_context() {
        let config = ModelConfig::seed_toy();
        for kind in strategies() {
            let mut c = CacheAtContext::new(kind, 64, &config);
            for _ in 0..MARGIN + 3 {
                c.timed_step();
            }
            let tokens = c.cache.memory().tokens;
            assert!((64..64 + MARGIN).contains(&tokens), "{kind}: {tokens} tokens");
        }
    }
}

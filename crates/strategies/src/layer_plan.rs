//! The model's own cache plan: on a model with sliding-window layers (Gemma 3: 15 of 18), a
//! local layer never attends past its window, so it needs only a rolling window of `W` slots —
//! as llama.cpp sizes its SWA cache. The strategy under study acts on the global layers.
//!
//! What each lever means on a local layer, in this plan:
//! - every strategy (static, concat, paged, the evicting policies, sink): the local layers hold
//!   a rolling window of `min(W, max_seq)` tokens (Mistral's ring: `window` keeps the newest), so
//!   a lossless strategy stays lossless (the model never reads further back on those layers),
//!   and a budget (`cache_tokens`) is spent on the global layers only;
//! - bits: the local window uses the strategy's store (its bits, scheme, axes, rotation), so
//!   "int4" means int4 on every layer;
//! - `none` (recomputation) keeps no cache on any layer.
//!
//! Bytes are the sum over layers: `W` slots on a local layer, the strategy's on a global one
//! ([`kvlab_model::ModelConfig::kv_bytes_planned`] is the formula for full caches).
//!
//! The ring takes one token per step once full (each query then sees exactly the last `W`),
//! so a prompt longer than `W` is fed one token at a time after its first `W`; llama.cpp holds
//! `W` plus a batch instead. Not yet configurable: applying the strategy to the local layers
//! too (a researcher may want both).

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{
    CacheError, KeyPositions, KvCache, KvMemory, KvView, ModelConfig, RotaryEncoding,
};

/// Which of the two caches serves a layer, and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local(usize),
    Global(usize),
}

/// A rolling window on the local layers beside the strategy's cache on the global ones.
pub(crate) struct PlannedCache<B: Backend> {
    local: Box<dyn KvCache<B>>,
    global: Box<dyn KvCache<B>>,
    /// Per model layer.
    sides: Vec<Side>,
    /// The local window's slots.
    window: usize,
}

impl<B: Backend> std::fmt::Debug for PlannedCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedCache")
            .field("sides", &self.sides)
            .field("window", &self.window)
            .finish()
    }
}

/// The layers of `config` split into local and global: per layer its side; `None` when the
/// model has no local layer (nothing to plan).
pub(crate) fn split_layers(config: &ModelConfig) -> Option<(Vec<bool>, usize)> {
    let local: Vec<bool> =
        (0..config.n_layers).map(|l| config.layer_attention(l).window.is_some()).collect();
    let window = (0..config.n_layers).filter_map(|l| config.layer_attention(l).window).max()?;
    Some((local, window))
}

impl<B: Backend> PlannedCache<B> {
    /// `local` serves the layers flagged in `is_local` (in order), `global` the others;
    /// `window` is the local cache's slots.
    pub fn new(
        is_local: &[bool],
        window: usize,
        local: Box<dyn KvCache<B>>,
        global: Box<dyn KvCache<B>>,
    ) -> Self {
        let (mut n_local, mut n_global) = (0, 0);
        let sides = is_local
            .iter()
            .map(|&is_local| {
                let side = if is_local { Side::Local(n_local) } else { Side::Global(n_global) };
                *(if is_local { &mut n_local } else { &mut n_global }) += 1;
                side
            })
            .collect();
        Self { local, global, sides, window }
    }

    /// The cache serving model layer `layer`, and the layer's index there.
    fn route(&self, layer: usize) -> (&dyn KvCache<B>, usize) {
        match self.sides[layer] {
            Side::Local(l) => (self.local.as_ref(), l),
            Side::Global(g) => (self.global.as_ref(), g),
        }
    }

    fn route_mut(&mut self, layer: usize) -> (&mut dyn KvCache<B>, usize) {
        match self.sides[layer] {
            Side::Local(l) => (self.local.as_mut(), l),
            Side::Global(g) => (self.global.as_mut(), g),
        }
    }
}

impl<B: Backend> KvCache<B> for PlannedCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.global.next_input(total)
    }

    fn max_step_tokens(&self) -> usize {
        self.local.max_step_tokens().min(self.global.max_step_tokens())
    }

    fn query_start(&self) -> Vec<usize> {
        self.global.query_start()
    }

    fn layer_query_start(&self, layer: usize) -> Vec<usize> {
        let (cache, at) = self.route(layer);
        cache.layer_query_start(at)
    }

    fn round_query(&self, layer: usize, q: Tensor<B, 4>) -> Tensor<B, 4> {
        let (cache, at) = self.route(layer);
        cache.round_query(at, q)
    }

    fn key_positions(&self, layer: usize) -> KeyPositions {
        match self.sides[layer] {
            Side::Local(_) => KeyPositions::Recent(self.window),
            Side::Global(g) => self.global.key_positions(g),
        }
    }

    /// The global cache first: it is the one a budget can refuse (a full block pool), and a
    /// refused step must leave both as they were.
    fn reserve(&mut self, new_tokens: usize) -> Result<(), CacheError> {
        self.global.reserve(new_tokens)?;
        self.local.reserve(new_tokens)
    }

    fn observes_attention(&self, layer: usize) -> bool {
        let (cache, at) = self.route(layer);
        cache.observes_attention(at)
    }

    fn observe_attention(&mut self, layer: usize, probs: Tensor<B, 4>) {
        let (cache, at) = self.route_mut(layer);
        cache.observe_attention(at, probs)
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let (cache, at) = self.route_mut(layer);
        cache.write(at, k, v, rope)
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (cache, at) = self.route(layer);
        cache.view(at, new_tokens, rope)
    }

    fn commit(&mut self, new_tokens: usize) {
        self.global.commit(new_tokens);
        self.local.commit(new_tokens);
    }

    fn reset(&mut self) {
        self.global.reset();
        self.local.reset();
    }

    fn memory(&self) -> KvMemory {
        let (l, g) = (self.local.memory(), self.global.memory());
        KvMemory {
            allocated_bytes: l.allocated_bytes + g.allocated_bytes,
            live_bytes: l.live_bytes + g.live_bytes,
            metadata_bytes: l.metadata_bytes + g.metadata_bytes,
            tokens: l.tokens.max(g.tokens),
        }
    }

    /// What the studied strategy keeps: the global layers' share (a local layer's window drops
    /// old tokens by the model's own design, not the strategy's choice).
    fn held_share(&self, positions: Range<usize>) -> Option<f64> {
        self.global.held_share(positions)
    }

    fn stored_shape(&self, layer: usize) -> Option<[usize; 4]> {
        let (cache, at) = self.route(layer);
        cache.stored_shape(at)
    }
}

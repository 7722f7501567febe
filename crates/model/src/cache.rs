//! The KV-cache seam: what the model asks of any cache strategy, and nothing more.
//!
//! The model computes q, k, v for the new tokens of a layer and hands k (not yet rotated) and v
//! to the cache. The cache decides where they live, at which positions keys are rotated (a
//! StreamingLLM cache rotates a key by its slot, not its place in the text), and returns the
//! dense keys and values attention must read, with a mask. The model never learns which
//! strategy is behind the trait.

use std::ops::Range;

use burn::prelude::*;
use thiserror::Error;

use crate::kv_runs::KvRuns;
use crate::rope::RotaryEncoding;

/// What attention reads back for one layer.
#[derive(Debug, Clone)]
pub struct KvView<B: Backend> {
    pub kv: KvData<B>,
    pub mask: AttentionMask<B>,
}

/// Keys (already rotated at the positions the cache assigns) and values.
#[derive(Debug, Clone)]
pub enum KvData<B: Backend> {
    /// `[batch, n_kv, keys, head_dim]` each.
    Dense { k: Tensor<B, 4>, v: Tensor<B, 4> },
    /// Where the cache keeps them, uncopied ([`KvRuns`]).
    Runs(KvRuns<B>),
}

impl<B: Backend> KvView<B> {
    /// A view of dense keys and values, `[batch, n_kv, keys, head_dim]` each.
    pub fn dense(k: Tensor<B, 4>, v: Tensor<B, 4>, mask: AttentionMask<B>) -> Self {
        Self { kv: KvData::Dense { k, v }, mask }
    }

    /// Keys attention reads (the longest row's, for a ragged batch).
    pub fn keys(&self) -> usize {
        match &self.kv {
            KvData::Dense { k, .. } => k.dims()[2],
            KvData::Runs(runs) => runs.keys(),
        }
    }

    pub fn device(&self) -> B::Device {
        match &self.kv {
            KvData::Dense { k, .. } => k.device(),
            KvData::Runs(runs) => runs.device(),
        }
    }

    /// Keys and values as dense tensors, `[batch, n_kv, keys, head_dim]` each (built from the
    /// runs where the cache handed runs).
    pub fn to_dense(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        match &self.kv {
            KvData::Dense { k, v } => (k.clone(), v.clone()),
            KvData::Runs(runs) => runs.to_dense(),
        }
    }
}

/// Which keys each new query may attend to.
#[derive(Debug, Clone)]
pub enum AttentionMask<B: Backend> {
    /// The `t` new tokens are the last `t` of the `s` keys: query `i` sees keys `0..=s-t+i`.
    /// With one new token this masks nothing.
    CausalEnd,
    /// `[batch, t, s]`, true where a key is hidden (padding of shorter rows, custom windows).
    Hidden(Tensor<B, 3, Bool>),
}

/// Where a layer's view keys lie in the text, as far as a sliding-window layer must know
/// ([`crate::sliding_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPositions {
    /// Key `j` of a row is the row's token `j`: every token since the first, in order (no
    /// cache, concat, static, paged).
    Ordered,
    /// Only tokens of the last `n` positions, `n` no more than the layer's window, in any order
    /// (a rolling window on a local layer): nothing the window would hide.
    Recent(usize),
    /// Anything else (an evicting policy's choice): a local layer cannot be applied to it.
    Unknown,
}

/// Bytes a cache holds, so the runner can set them beside the analytic formula.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvMemory {
    /// Bytes of K/V storage allocated (capacity, whether filled or not).
    pub allocated_bytes: usize,
    /// Bytes of that storage holding live tokens.
    pub live_bytes: usize,
    /// Bytes of bookkeeping: quantization scales and zero points, block tables.
    pub metadata_bytes: usize,
    /// Tokens held per sequence (the longest row).
    pub tokens: usize,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CacheError {
    #[error("KV block pool exhausted: {needed} blocks needed, {free} free")]
    OutOfBlocks { needed: usize, free: usize },
    #[error("cache capacity exceeded: {0}")]
    Capacity(String),
    #[error("invalid cache input: {0}")]
    Invalid(String),
}

/// The seam every strategy implements.
///
/// A forward pass calls [`KvCache::query_start`] once, [`KvCache::reserve`] once, then
/// [`KvCache::update`] once per layer in order (and, for a cache that asks, shows it that layer's
/// attention through [`KvCache::observe_attention`]), then [`KvCache::commit`] once. `update`
/// is [`KvCache::write`] then [`KvCache::view`]:
/// storing a token and reading what attention needs are separate costs (vLLM's
/// `reshape_and_cache` and its attention kernel), and the benches time them apart.
pub trait KvCache<B: Backend> {
    /// Which tokens of a sequence that now has `total` tokens the next forward must be fed:
    /// `cached..total` for a cache, `0..total` for recomputation.
    fn next_input(&self, total: usize) -> Range<usize>;

    /// The most new tokens the next forward may carry (a full bounded window takes one at a
    /// time, so that every query sees exactly the tokens the strategy keeps).
    fn max_step_tokens(&self) -> usize {
        usize::MAX
    }

    /// Per row, the rotary position of the first new query of the next forward.
    fn query_start(&self) -> Vec<usize>;

    /// [`KvCache::query_start`] for layer `layer`'s queries (a cache whose layers place queries
    /// differently, such as a per-layer plan with a sink cache on some layers, overrides it).
    fn layer_query_start(&self, _layer: usize) -> Vec<usize> {
        self.query_start()
    }

    /// Where layer `layer`'s view keys lie (see [`KeyPositions`]); caches holding every token
    /// in order say [`KeyPositions::Ordered`].
    fn key_positions(&self, _layer: usize) -> KeyPositions {
        KeyPositions::Unknown
    }

    /// Makes room for `new_tokens` tokens per row before the forward runs: allocates blocks,
    /// picks the slots the new tokens go to (evicting, where the strategy evicts). Everything
    /// that can fail for lack of room fails here, before any layer has written, so a step that
    /// fails leaves the cache as it was (vLLM's scheduler allocates before the step for the same
    /// reason). A cache that needs no room does nothing.
    fn reserve(&mut self, _new_tokens: usize) -> Result<(), CacheError> {
        Ok(())
    }

    /// Layer `layer`'s rotated queries as this cache's attention arithmetic sees them: unchanged,
    /// unless the cache rounds queries to 8-bit blocks in its keys' basis, as llama.cpp's CPU
    /// attention over quantized keys does before its integer dot products (`query_bits = 8`).
    ///
    /// # Shapes
    /// - q, output: `[batch, n_heads, new_tokens, head_dim]`
    fn round_query(&self, _layer: usize, q: Tensor<B, 4>) -> Tensor<B, 4> {
        q
    }

    /// Whether attention should show this cache layer `layer`'s probabilities in this forward.
    /// Caches that do not ask cost attention nothing: no copy, no host transfer.
    fn observes_attention(&self, _layer: usize) -> bool {
        false
    }

    /// This forward's attention in layer `layer`, after softmax, over the keys [`KvCache::view`]
    /// returned, in the view's order (padding of bucketed or ragged keys is 0).
    ///
    /// # Shapes
    /// - probs: `[batch, n_heads, new_tokens, keys]`
    fn observe_attention(&mut self, _layer: usize, _probs: Tensor<B, 4>) {}

    /// Stores one layer's new keys (not yet rotated) and values.
    ///
    /// # Shapes
    /// - k, v: `[batch, n_kv, new_tokens, head_dim]`
    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError>;

    /// What attention reads for layer `layer` once this forward's `new_tokens` tokens per row
    /// are written (before `commit`).
    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError>;

    /// Stores one layer's new keys and values, and returns what attention reads.
    ///
    /// # Shapes
    /// - k, v: `[batch, n_kv, new_tokens, head_dim]`
    fn update(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let new_tokens = k.dims()[2];
        self.write(layer, k, v, rope)?;
        self.view(layer, new_tokens, rope)
    }

    /// Ends the forward pass that carried `new_tokens` tokens per row.
    fn commit(&mut self, new_tokens: usize);

    /// Forgets every token; keeps allocations where the strategy preallocates.
    fn reset(&mut self);

    fn memory(&self) -> KvMemory;

    /// For a cache whose kept tokens are not a function of positions alone (an evicting cache):
    /// the share, 0 to 1, of the tokens at `positions` it still holds, over every layer and KV
    /// head. `None` for the others, whose kept set follows from the strategy's parameters.
    fn held_share(&self, _positions: Range<usize>) -> Option<f64> {
        None
    }

    /// The shape of the keys layer `layer` holds, `[batch, n_kv, slots, head_dim]`, if any.
    fn stored_shape(&self, layer: usize) -> Option<[usize; 4]>;
}

//! `sink`: StreamingLLM's attention sinks. The first `sink_tokens` tokens stay forever; the
//! remaining `cache_tokens - sink_tokens` slots are a ring of the most recent tokens.
//!
//! Positions are assigned inside the cache, as the StreamingLLM paper does: keys are stored
//! *before* rotation and, at every step, the kept keys are rotated by their slot in the
//! age-ordered cache (sinks at 0.., then recent tokens oldest first); the query sits at the last
//! in-cache position. This re-rotation is O(cache) per step, as in the paper's implementation.
//!
//! Budget: the cache holds `cache_tokens` tokens *including* the new one, so every query attends
//! to at most `cache_tokens` keys. (StreamingLLM's evaluation script trims the past to the
//! budget and then appends the new token, attending to budget + 1 keys.)

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{AttentionMask, CacheError, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::layout::KvLayout;
use crate::rows::RowSlots;
use crate::store::SlotStore;

#[derive(Debug)]
pub struct SinkCache<B: Backend> {
    layout: KvLayout,
    slots: RowSlots<B>,
    sinks: usize,
    /// Tokens seen per sequence (not all kept).
    seen: usize,
}

impl<B: Backend> SinkCache<B> {
    /// `store` must hold `layout.batch * cache_tokens` slots.
    pub fn new(
        layout: KvLayout,
        cache_tokens: usize,
        sink_tokens: usize,
        store: Box<dyn SlotStore<B>>,
    ) -> Result<Self, CacheError> {
        if sink_tokens >= cache_tokens {
            return Err(CacheError::Invalid(format!(
                "sink: sink_tokens = {sink_tokens} must be < cache_tokens = {cache_tokens}"
            )));
        }
        Ok(Self {
            layout,
            slots: RowSlots { store, batch: layout.batch, capacity: cache_tokens },
            sinks: sink_tokens,
            seen: 0,
        })
    }

    fn capacity(&self) -> usize {
        self.slots.capacity
    }

    /// The slot of token `p`: sinks in place, later tokens in the ring after them.
    fn slot_of(&self, p: usize) -> usize {
        let (s, recent) = (self.sinks, self.capacity() - self.sinks);
        if p < s { p } else { s + (p - s) % recent }
    }

    /// Kept slots in age order once the cache is full and token `newest` has been written.
    fn age_ordered(&self, newest: usize) -> Vec<usize> {
        let recent = self.capacity() - self.sinks;
        let oldest_recent = newest + 1 - recent;
        (0..self.sinks).chain((oldest_recent..=newest).map(|q| self.slot_of(q))).collect()
    }
}

impl<B: Backend> KvCache<B> for SinkCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.seen..total
    }

    fn max_step_tokens(&self) -> usize {
        self.capacity().saturating_sub(self.seen).max(1)
    }

    /// The text position while everything fits; then the last in-cache slot.
    fn query_start(&self) -> Vec<usize> {
        let p = if self.seen < self.capacity() { self.seen } else { self.capacity() - 1 };
        vec![p; self.layout.batch]
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        _rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let (t, c, p) = (k.dims()[2], self.capacity(), self.seen);
        if p + t <= c {
            self.slots.write(layer, &(p..p + t).collect::<Vec<_>>(), k, v);
        } else if t == 1 {
            self.slots.write(layer, &[self.slot_of(p)], k, v);
        } else {
            return Err(CacheError::Invalid(format!(
                "sink: a full cache takes one token per step, got {t}"
            )));
        }
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (t, c, p) = (new_tokens, self.capacity(), self.seen);
        let (k, v) = if p + t <= c {
            self.slots.read_range(layer, 0..p + t)
        } else {
            self.slots.read(layer, &self.age_ordered(p))
        };
        // Keys rotated by their in-cache position: 0..kept, in age order.
        Ok(KvView { k: rope.apply(k, &[0]), v, mask: AttentionMask::CausalEnd })
    }

    fn commit(&mut self, new_tokens: usize) {
        self.seen += new_tokens;
    }

    fn reset(&mut self) {
        self.seen = 0;
    }

    fn memory(&self) -> KvMemory {
        let kept = self.seen.min(self.capacity());
        self.slots.kv_memory(kept)
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        let l = &self.layout;
        Some([l.batch, l.n_kv_heads, self.capacity(), l.head_dim])
    }
}

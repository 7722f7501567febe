//! `window`: a rolling buffer of `W` slots per sequence, token `p` written at slot `p mod W`
//! (Mistral's RotatingBufferCache). Nothing moves: a write costs O(1) whatever the context.
//! Keys are rotated at their original positions when written, so attention over the ring in
//! slot order sees exactly the last `W` tokens (the new one included) at their true positions.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{CacheError, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::layout::KvLayout;
use crate::rows::RowSlots;
use crate::store::SlotStore;

#[derive(Debug)]
pub struct WindowCache<B: Backend> {
    layout: KvLayout,
    slots: RowSlots<B>,
    /// Tokens seen per sequence (not all kept).
    seen: usize,
}

impl<B: Backend> WindowCache<B> {
    /// `store` must hold `layout.batch * window` slots.
    pub fn new(
        layout: KvLayout,
        window: usize,
        store: Box<dyn SlotStore<B>>,
    ) -> Result<Self, CacheError> {
        if window == 0 {
            return Err(CacheError::Invalid("window: cache_tokens must be > 0".into()));
        }
        Ok(Self {
            layout,
            slots: RowSlots { store, batch: layout.batch, capacity: window },
            seen: 0,
        })
    }

    fn window(&self) -> usize {
        self.slots.capacity
    }
}

impl<B: Backend> KvCache<B> for WindowCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.seen..total
    }

    /// Until the ring is full a step may fill it; after that one token at a time, so that
    /// every query sees exactly the last `W` tokens.
    fn max_step_tokens(&self) -> usize {
        self.window().saturating_sub(self.seen).max(1)
    }

    fn query_start(&self) -> Vec<usize> {
        vec![self.seen; self.layout.batch]
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let (t, w, p) = (k.dims()[2], self.window(), self.seen);
        let k = rope.apply(k, &[p]);
        if p + t <= w {
            // Filling: slots are positions.
            self.slots.write(layer, &(p..p + t).collect::<Vec<_>>(), k, v);
            return Ok(());
        }
        if t != 1 {
            return Err(CacheError::Invalid(format!(
                "window: a full window takes one token per step, got {t}"
            )));
        }
        self.slots.write(layer, &[p % w], k, v);
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        // Filling: keys in order with the new ones last. Full: the whole ring in slot order
        // (attention does not depend on key order).
        Ok(self.slots.view_first(layer, (self.seen + new_tokens).min(self.window())))
    }

    fn commit(&mut self, new_tokens: usize) {
        self.seen += new_tokens;
    }

    fn reset(&mut self) {
        self.seen = 0;
    }

    fn memory(&self) -> KvMemory {
        let kept = self.seen.min(self.window());
        self.slots.kv_memory(kept)
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        let l = &self.layout;
        Some([l.batch, l.n_kv_heads, self.window(), l.head_dim])
    }
}

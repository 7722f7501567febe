//! `shift-window`: the same last-`W`-tokens window as `window`, kept the way lit-llama does
//! (`torch.roll`): once full, every step moves the `W - 1` newest slots one place left and writes
//! the new token at the end. O(W) per token: kept as the slow variant, to measure what the
//! rolling buffer saves. Keys keep their original positions.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{CacheError, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::layout::KvLayout;
use crate::rows::RowSlots;
use crate::store::SlotStore;

#[derive(Debug)]
pub struct ShiftWindowCache<B: Backend> {
    layout: KvLayout,
    slots: RowSlots<B>,
    /// Tokens seen per sequence (not all kept).
    seen: usize,
}

impl<B: Backend> ShiftWindowCache<B> {
    /// `store` must hold `layout.batch * window` slots.
    pub fn new(
        layout: KvLayout,
        window: usize,
        store: Box<dyn SlotStore<B>>,
    ) -> Result<Self, CacheError> {
        if window == 0 {
            return Err(CacheError::Invalid("shift-window: cache_tokens must be > 0".into()));
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

impl<B: Backend> KvCache<B> for ShiftWindowCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.seen..total
    }

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
            self.slots.write(layer, &(p..p + t).collect::<Vec<_>>(), k, v);
            return Ok(());
        }
        if t != 1 {
            return Err(CacheError::Invalid(format!(
                "shift-window: a full window takes one token per step, got {t}"
            )));
        }
        // Drop the oldest token: slots 1..w move to 0..w-1, the new token goes last.
        self.slots.move_slots(layer, 1, 0, w - 1);
        self.slots.write(layer, &[w - 1], k, v);
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
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

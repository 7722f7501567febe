//! `static`: every sequence owns `max_seq` slots, preallocated, and token `p` is written in
//! place at slot `p` (LLaMA's reference code, lit-gpt's `input_pos`). A write costs O(new
//! tokens). With an int8/int4 store this is the quantized full cache.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{CacheError, KeyPositions, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::entry::{Entry, Holds, no_check};
use crate::layout::KvLayout;
use crate::rows::RowSlots;
use crate::store::{SlotStore, round_queries};

pub(crate) const ENTRY: Entry = Entry {
    name: "static",
    summary: "max_seq slots per sequence, preallocated, written in place at input_pos",
    parameters: &[],
    check: no_check,
    holds: Holds::Static,
};

#[derive(Debug)]
pub struct StaticCache<B: Backend> {
    layout: KvLayout,
    slots: RowSlots<B>,
    /// Tokens stored per sequence.
    len: usize,
    /// Keys are stored unrotated and rotated when read (a low-rank store, whose projection
    /// does not commute with RoPE); otherwise rotated once, when written.
    rope_on_read: bool,
}

impl<B: Backend> StaticCache<B> {
    /// `store` must hold `layout.batch * max_seq` slots.
    pub fn new(
        layout: KvLayout,
        max_seq: usize,
        store: Box<dyn SlotStore<B>>,
    ) -> Result<Self, CacheError> {
        if max_seq == 0 {
            return Err(CacheError::Invalid("static cache: max_seq must be > 0".into()));
        }
        Ok(Self {
            layout,
            slots: RowSlots {
                store,
                batch: layout.batch,
                capacity: max_seq,
                n_kv: layout.n_kv_heads,
                head_dim: layout.head_dim,
            },
            len: 0,
            rope_on_read: false,
        })
    }

    /// This cache with keys stored unrotated and rotated at their positions when read.
    pub fn with_rope_on_read(self) -> Self {
        Self { rope_on_read: true, ..self }
    }
}

impl<B: Backend> KvCache<B> for StaticCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.len..total
    }

    fn query_start(&self) -> Vec<usize> {
        vec![self.len; self.layout.batch]
    }

    fn key_positions(&self, _layer: usize) -> KeyPositions {
        KeyPositions::Ordered
    }

    fn round_query(&self, _layer: usize, q: Tensor<B, 4>) -> Tensor<B, 4> {
        round_queries(self.slots.store.as_ref(), q)
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let t = k.dims()[2];
        let end = self.len + t;
        if end > self.slots.capacity {
            return Err(CacheError::Capacity(format!(
                "static cache holds {} tokens per sequence, this step needs {end}",
                self.slots.capacity
            )));
        }
        let new: Vec<usize> = (self.len..end).collect();
        let k = if self.rope_on_read { k } else { rope.apply(k, &[self.len]) };
        self.slots.write(layer, &new, k, v);
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let view = self.slots.view_first(layer, self.len + new_tokens);
        if !self.rope_on_read {
            return Ok(view);
        }
        // Key j of every row is the row's token j.
        let (k, v) = view.to_dense();
        Ok(KvView::dense(rope.apply(k, &[0]), v, view.mask))
    }

    fn commit(&mut self, new_tokens: usize) {
        self.len += new_tokens;
    }

    fn reset(&mut self) {
        self.len = 0;
    }

    fn memory(&self) -> KvMemory {
        self.slots.kv_memory(self.len)
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        let l = &self.layout;
        Some([l.batch, l.n_kv_heads, self.slots.capacity, l.head_dim])
    }
}

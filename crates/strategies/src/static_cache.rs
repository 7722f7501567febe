//! `static`: every sequence owns `max_seq` slots, preallocated, and token `p` is written in
//! place at slot `p` (LLaMA's reference code, lit-gpt's `input_pos`). A write costs O(new
//! tokens). With an int8/int4 store this is the quantized full cache.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{CacheError, KeyPositions, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::entry::{Entry, Holds, no_check};
use crate::layout::KvLayout;
use crate::rows::RowSlots;
use crate::store::SlotStore;

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
        })
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
        self.slots.write(layer, &new, rope.apply(k, &[self.len]), v);
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        Ok(self.slots.view_first(layer, self.len + new_tokens))
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

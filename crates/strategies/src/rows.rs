//! Per-sequence slot regions over a [`SlotStore`]: row `r` of the batch owns slots
//! `r * capacity .. (r + 1) * capacity`, and every row of a uniform batch uses the same slot
//! pattern inside its region. Window, sink and the static cache are that pattern and nothing
//! else.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{AttentionMask, KvMemory, KvView};

use crate::store::{SlotStore, StoreMemory, read_rows, to_slots};

pub(crate) struct RowSlots<B: Backend> {
    pub store: Box<dyn SlotStore<B>>,
    pub batch: usize,
    /// Slots per row.
    pub capacity: usize,
    pub n_kv: usize,
    pub head_dim: usize,
}

impl<B: Backend> std::fmt::Debug for RowSlots<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowSlots")
            .field("batch", &self.batch)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<B: Backend> RowSlots<B> {
    /// Every row's copy of `row_slots`, row-major (the order `to_slots` flattens tokens in).
    fn all_rows(&self, row_slots: &[usize]) -> Vec<usize> {
        (0..self.batch).flat_map(|r| row_slots.iter().map(move |s| r * self.capacity + s)).collect()
    }

    /// Writes new token `i` of every row into that row's slot `row_slots[i]`.
    ///
    /// # Shapes
    /// - k, v: `[batch, n_kv, row_slots.len(), head_dim]`
    pub fn write(&mut self, layer: usize, row_slots: &[usize], k: Tensor<B, 4>, v: Tensor<B, 4>) {
        let slots = self.all_rows(row_slots);
        self.store.write(layer, &slots, to_slots(k), to_slots(v));
    }

    /// Attention's view when every row's first `kept` slots hold its kept tokens in an order
    /// attention accepts with no mask (static, and the window caches, whose new tokens are last
    /// or whose order does not matter once full).
    pub(crate) fn view_first(&self, layer: usize, kept: usize) -> KvView<B> {
        let row = |r: usize| r * self.capacity..r * self.capacity + kept;
        let rows: Vec<Vec<Range<usize>>> = (0..self.batch).map(|r| Vec::from([row(r)])).collect();
        let kv = read_rows(self.store.as_ref(), layer, &rows, self.n_kv, self.head_dim);
        KvView { kv, mask: AttentionMask::CausalEnd }
    }

    /// Memory with `live` slots of every row in use.
    pub fn memory(&self, live: usize) -> StoreMemory {
        self.store.memory(live * self.batch)
    }

    /// The cache's report when every row keeps `kept` tokens.
    pub(crate) fn kv_memory(&self, kept: usize) -> KvMemory {
        let m = self.memory(kept);
        KvMemory {
            allocated_bytes: m.allocated_bytes,
            live_bytes: m.live_bytes,
            metadata_bytes: m.metadata_bytes,
            tokens: kept,
        }
    }
}

//! A cache whose block tables are set from outside before each forward: serving's executor
//! runs the simulated allocator's tables (reserved extents or paged blocks, requests of
//! different lengths in one batch) through the model over one shared [`F32Store`]. Attention
//! reads the tables as the paged cache does ([`read_tables`]).

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{CacheError, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::paged::read_tables;
use crate::store::{F32Store, SlotStore, to_slots};

/// A cache whose rows, slots and new-token count are set from outside before each forward:
/// the serving executor's view of the shared store.
#[derive(Debug)]
pub struct TableCache<B: Backend> {
    store: F32Store<B>,
    n_slots: usize,
    /// Per batch row: slots of every token attention sees after this forward, new ones last.
    tables: Vec<Vec<usize>>,
    /// New tokens per row in this forward.
    t: usize,
    /// `[n_kv, head_dim]` of a slot.
    heads: [usize; 2],
}

impl<B: Backend> TableCache<B> {
    pub fn new(
        n_layers: usize,
        n_slots: usize,
        n_kv: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Self {
        let store = F32Store::new(n_layers, n_slots, n_kv, head_dim, device);
        Self { store, n_slots, tables: Vec::new(), t: 0, heads: [n_kv, head_dim] }
    }

    /// The next forward feeds `t` tokens to each row of `tables`; refused, changing nothing,
    /// when a row holds fewer than `t` slots or names a slot outside the store.
    pub fn set_rows(&mut self, tables: Vec<Vec<usize>>, t: usize) -> Result<(), CacheError> {
        for row in &tables {
            if row.len() < t || t == 0 {
                return Err(CacheError::Invalid(format!(
                    "a row of {} slots cannot take {t} new tokens",
                    row.len()
                )));
            }
            if let Some(s) = row.iter().find(|&&s| s >= self.n_slots) {
                return Err(CacheError::Invalid(format!(
                    "slot {s} is outside the store's {} slots",
                    self.n_slots
                )));
            }
        }
        self.tables = tables;
        self.t = t;
        Ok(())
    }

    /// The store, for the executor's copies and swaps between forwards.
    pub fn store_mut(&mut self) -> &mut F32Store<B> {
        &mut self.store
    }

    pub fn store(&self) -> &F32Store<B> {
        &self.store
    }
}

impl<B: Backend> KvCache<B> for TableCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        total - self.t..total
    }

    fn query_start(&self) -> Vec<usize> {
        self.tables.iter().map(|row| row.len() - self.t).collect()
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let [b, _, t, _] = k.dims();
        if b != self.tables.len() || t != self.t {
            return Err(CacheError::Invalid(format!(
                "forward of [{b}, {t}] new tokens, rows set for [{}, {}]",
                self.tables.len(),
                self.t
            )));
        }
        let k = rope.apply(k, &self.query_start());
        let written: Vec<usize> =
            self.tables.iter().flat_map(|row| row[row.len() - t..].iter().copied()).collect();
        self.store.write(layer, &written, to_slots(k), to_slots(v));
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        Ok(read_tables(&self.store, layer, &self.tables, new_tokens, self.heads))
    }

    fn commit(&mut self, _new_tokens: usize) {}

    fn reset(&mut self) {
        self.tables.clear();
    }

    fn memory(&self) -> KvMemory {
        let live: usize = self.tables.iter().map(Vec::len).sum();
        let m = self.store.memory(live);
        KvMemory {
            allocated_bytes: m.allocated_bytes,
            live_bytes: m.live_bytes,
            metadata_bytes: m.metadata_bytes,
            tokens: self.tables.iter().map(Vec::len).max().unwrap_or(0),
        }
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        None
    }
}

//! `key-norm` — keep the keys with the smallest L2 norm (Devoto et al., 2024, "A Simple and
//! Effective L2 Norm-Based Strategy for KV Cache Compression"; kvpress's `KnormPress`). Reads no
//! attention: low-norm keys draw high attention, so the norm alone predicts what attention would
//! say. The baseline every attention-scored policy must beat. Per KV head; once full, the
//! cached key with the largest norm leaves (the arriving token always enters).

use super::policy::{KeepPolicy, lowest};
use super::table::SlotTable;
use crate::entry::{CACHE_TOKENS, Entry, Holds, no_check};

pub(crate) const ENTRY: Entry = Entry {
    name: "key-norm",
    summary: "keep the keys of smallest L2 norm, no attention (Devoto et al., 2024)",
    parameters: &[CACHE_TOKENS],
    check: no_check,
    holds: Holds::Policy(|a| Box::new(KeyNorm::new(a.regions(), a.budget()))),
};

#[derive(Debug)]
pub struct KeyNorm {
    capacity: usize,
    /// `[regions * capacity]`: the L2 norm of the key in each slot.
    norms: Vec<f32>,
}

impl KeyNorm {
    pub fn new(regions: usize, capacity: usize) -> Self {
        Self { capacity, norms: vec![0.0; regions * capacity] }
    }
}

impl KeepPolicy for KeyNorm {
    fn reads_key_norms(&self) -> bool {
        true
    }

    fn key_norm(&mut self, region: usize, slot: usize, norm: f32) {
        self.norms[region * self.capacity + slot] = norm;
    }

    fn victim(&mut self, region: usize, table: &SlotTable, _p: usize) -> usize {
        let base = region * self.capacity;
        // The largest norm is the lowest negated norm (ties to the oldest).
        lowest(table, region, |s| -self.norms[base + s], |_| true)
            .unwrap_or_else(|| table.oldest(region))
    }

    /// One f32 norm per slot.
    fn metadata_bytes(&self, _table: &SlotTable) -> usize {
        self.norms.len() * 4
    }

    fn reset(&mut self) {
        self.norms.fill(0.0);
    }
}

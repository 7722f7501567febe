//! `tova` — Token Omission Via Attention (Oren et al., 2024, "Transformers are Multi-State
//! RNNs"). Once full, the token that the *current* query attends to least leaves, the attention
//! averaged over all heads: one decision per layer, shared by its KV heads.
//!
//! The decision is made when a step's attention is shown and applied when the next token
//! arrives, so the budget counts the new token as every bounded cache here does: a query reads
//! `cache_tokens` keys, itself included, and TOVA may drop the newest token itself.

use super::policy::{KeepPolicy, Shown};
use super::table::SlotTable;
use crate::entry::{CACHE_TOKENS, Entry, Holds, no_check};

pub(crate) const ENTRY: Entry = Entry {
    name: "tova",
    summary: "evict what the current query attends least, per layer (TOVA, 2024)",
    parameters: &[CACHE_TOKENS],
    check: no_check,
    holds: Holds::Policy(|a| Box::new(Tova::new(a.layers, a.batch))),
};

#[derive(Debug)]
pub struct Tova {
    batch: usize,
    /// `[layers * batch]`: the slot the last query of each (layer, row) attended to least.
    least: Vec<Option<usize>>,
}

impl Tova {
    pub fn new(layers: usize, batch: usize) -> Self {
        Self { batch, least: vec![None; layers * batch] }
    }
}

impl KeepPolicy for Tova {
    fn observes(&self, _seen: usize, _new_tokens: usize) -> bool {
        true
    }

    fn observed_queries(&self, new_tokens: usize) -> std::ops::Range<usize> {
        new_tokens.saturating_sub(1)..new_tokens
    }

    fn observe(&mut self, layer: usize, shown: &Shown, table: &SlotTable) {
        for row in 0..shown.batch {
            // Every KV head of a layer holds the same slots in the same order under TOVA.
            let region = table.region(layer, row, 0);
            let mean = shown.head_mean(row, shown.queries - 1);
            let live = table.live(region);
            let age = |j: usize| table.pos(region, live[j]);
            let least = (0..live.len())
                .min_by(|&a, &b| mean[a].total_cmp(&mean[b]).then(age(a).cmp(&age(b))));
            self.least[layer * self.batch + row] = least.map(|j| live[j]);
        }
    }

    fn victim(&mut self, region: usize, table: &SlotTable, _p: usize) -> usize {
        let (layer, row, _) = table.coords(region);
        self.least[layer * self.batch + row].unwrap_or_else(|| table.oldest(region))
    }

    /// One u32 slot index per (layer, row).
    fn metadata_bytes(&self, _table: &SlotTable) -> usize {
        self.least.len() * 4
    }

    fn reset(&mut self) {
        self.least.fill(None);
    }
}

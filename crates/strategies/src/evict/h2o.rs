//! `h2o` — Heavy-Hitter Oracle (Zhang et al., 2023, "H2O: Heavy-Hitter Oracle for Efficient
//! Generative Inference of Large Language Models"). A region keeps its `recent` newest tokens
//! and, in the rest of the budget, the *heavy hitters*: the tokens with the largest attention
//! accumulated over every query so far. Per KV head: the scores of a GQA group's query heads are
//! summed. Once full, one token leaves per step: the lightest outside the recent window.

use super::policy::{KeepPolicy, Shown, lowest};
use super::table::SlotTable;
use crate::entry::{CACHE_TOKENS, Entry, Holds, Param};
use crate::error::{SpecError, invalid};
use crate::spec::StrategySpec;

pub(crate) const ENTRY: Entry = Entry {
    name: "h2o",
    summary: "recent + heavy hitters by accumulated attention, per KV head (H2O, 2023)",
    parameters: &[
        CACHE_TOKENS,
        Param { key: "recent", get: |s| s.recent, default: Some("cache_tokens / 2"), min: 0 },
    ],
    check: room_for_heavy_hitters,
    holds: Holds::Policy(|a| Box::new(H2o::new(a.spec.h2o_recent(), a.regions(), a.budget()))),
};

fn room_for_heavy_hitters(spec: &StrategySpec) -> Result<(), SpecError> {
    match spec.cache_tokens {
        Some(c) if spec.h2o_recent() >= c => Err(invalid(
            "recent",
            spec.h2o_recent(),
            format!("must be < cache_tokens = {c} (room is needed for heavy hitters)"),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug)]
pub struct H2o {
    recent: usize,
    capacity: usize,
    /// `[regions * capacity]`: attention accumulated by the token in each slot.
    scores: Vec<f32>,
}

impl H2o {
    /// `recent` < `capacity` (the budget): at least one heavy-hitter slot.
    pub fn new(recent: usize, regions: usize, capacity: usize) -> Self {
        Self { recent, capacity, scores: vec![0.0; regions * capacity] }
    }

    /// The attention accumulated by the token in `slot` of `region`.
    pub fn score(&self, region: usize, slot: usize) -> f32 {
        self.scores[region * self.capacity + slot]
    }
}

impl KeepPolicy for H2o {
    fn observes(&self, _seen: usize, _new_tokens: usize) -> bool {
        true
    }

    fn observe(&mut self, layer: usize, shown: &Shown, table: &SlotTable) {
        for row in 0..shown.batch {
            for g in 0..shown.kv_heads {
                let region = table.region(layer, row, g);
                let sums = shown.group_sum(row, g, 0..shown.queries);
                for (&slot, add) in table.live(region).iter().zip(sums) {
                    self.scores[region * self.capacity + slot] += add;
                }
            }
        }
    }

    fn entered(&mut self, region: usize, slot: usize) {
        self.scores[region * self.capacity + slot] = 0.0;
    }

    /// The lightest token older than the `recent` newest (the arriving one counts among them).
    fn victim(&mut self, region: usize, table: &SlotTable, p: usize) -> usize {
        let recent_from = (p + 1).saturating_sub(self.recent);
        lowest(table, region, |s| self.score(region, s), |s| table.pos(region, s) < recent_from)
            .unwrap_or_else(|| table.oldest(region))
    }

    /// One f32 score per slot.
    fn metadata_bytes(&self, _table: &SlotTable) -> usize {
        self.scores.len() * 4
    }

    fn reset(&mut self) {
        self.scores.fill(0.0);
    }
}

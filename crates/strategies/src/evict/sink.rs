//! `sink` — StreamingLLM's attention sinks (Xiao et al., 2024): the first `sink_tokens` tokens
//! stay forever; once full, the oldest of the others leaves, so the rest is a ring of the most
//! recent tokens.
//!
//! Positions are assigned inside the cache, as the paper does: keys are stored unrotated and
//! rotated at every step by their rank in the age-ordered cache (sinks at 0.., then the recent
//! tokens oldest first), the query at the last in-cache position.
//!
//! Budget: the cache holds `cache_tokens` tokens *including* the new one, so every query attends
//! to at most `cache_tokens` keys. (StreamingLLM's evaluation script trims the past to the
//! budget and then appends the new token, attending to budget + 1 keys.)

use std::ops::Range;

use super::discipline::{Discipline, Rope};
use super::policy::KeepPolicy;
use super::table::SlotTable;
use crate::entry::{CACHE_TOKENS, Entry, Holds, Param};
use crate::error::{SpecError, invalid};
use crate::spec::StrategySpec;

pub(crate) const ENTRY: Entry = Entry {
    name: "sink",
    summary: "sink_tokens first + recent tokens, positions in-cache (StreamingLLM)",
    parameters: &[
        CACHE_TOKENS,
        Param { key: "sink_tokens", get: |s| s.sink_tokens, default: None, min: 0 },
    ],
    check: room_for_recent,
    holds: Holds::Policy(|a| Box::new(Sink::new(a.spec.sink_tokens.unwrap_or(0)))),
};

fn room_for_recent(spec: &StrategySpec) -> Result<(), SpecError> {
    match (spec.sink_tokens, spec.cache_tokens) {
        (Some(s), Some(w)) if s >= w => Err(invalid(
            "sink_tokens",
            s,
            format!("must be < cache_tokens = {w} (room is needed for recent tokens)"),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug)]
pub struct Sink {
    sinks: usize,
}

impl Sink {
    /// The cache must hold more than `sinks` tokens (room for recent ones).
    pub fn new(sinks: usize) -> Self {
        Self { sinks }
    }
}

impl KeepPolicy for Sink {
    fn discipline(&self) -> Discipline {
        Discipline { rope: Rope::InCache, ..Discipline::POSITIONAL }
    }

    /// The oldest token past the sinks.
    fn victim(&mut self, region: usize, table: &SlotTable, _p: usize) -> usize {
        let sinks = self.sinks;
        *table
            .live(region)
            .iter()
            .filter(|&&s| table.pos(region, s) >= sinks)
            .min_by_key(|&&s| table.pos(region, s))
            .expect("a full sink cache holds recent tokens")
    }

    /// The sinks, and the newest of the rest.
    fn kept(&self, seen: usize, budget: usize) -> Option<Vec<Range<usize>>> {
        let sinks = self.sinks.min(budget).min(seen);
        let recent_from = seen.saturating_sub(budget - sinks).max(sinks);
        Some(vec![0..sinks, recent_from..seen])
    }
}

//! `shift-window` — the same last-`cache_tokens` window as `window`, kept the way lit-llama does
//! (`torch.roll`): once full, every step moves the `W - 1` newest slots one place toward the front
//! and writes the new token last. O(W) per token: the slow variant, kept to measure what the
//! rolling buffer saves. Keys keep their text positions.

use std::ops::Range;

use super::discipline::{Discipline, Evict};
use super::policy::KeepPolicy;
use super::window::newest;
use crate::entry::{CACHE_TOKENS, Entry, Holds, no_check};

pub(crate) const ENTRY: Entry = Entry {
    name: "shift-window",
    summary: "window kept by shifting the buffer every step (lit-llama roll)",
    parameters: &[CACHE_TOKENS],
    check: no_check,
    holds: Holds::Policy(|_| Box::new(ShiftWindow)),
};

#[derive(Debug, Default)]
pub struct ShiftWindow;

impl KeepPolicy for ShiftWindow {
    fn discipline(&self) -> Discipline {
        Discipline { evict: Evict::Roll, ..Discipline::POSITIONAL }
    }

    fn kept(&self, seen: usize, budget: usize) -> Option<Vec<Range<usize>>> {
        Some(vec![newest(seen, budget)])
    }
}

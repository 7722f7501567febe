//! `window` — a rolling buffer of the last `cache_tokens` tokens (Mistral's RotatingBufferCache):
//! the oldest token leaves, the new one takes its slot, so token `p` lives at slot `p mod W` and a
//! write costs O(1) whatever the context. Keys keep their text positions; once full, attention
//! reads the ring in slot order (its result does not depend on key order).

use std::ops::Range;

use super::discipline::Discipline;
use super::policy::KeepPolicy;
use crate::entry::{CACHE_TOKENS, Entry, Holds, no_check};

pub(crate) const ENTRY: Entry = Entry {
    name: "window",
    summary: "rolling buffer of cache_tokens slots written modulo W (Mistral)",
    parameters: &[CACHE_TOKENS],
    check: no_check,
    holds: Holds::Policy(|_| Box::new(Window)),
};

#[derive(Debug, Default)]
pub struct Window;

impl KeepPolicy for Window {
    // The victim is the default: the oldest token.
    fn discipline(&self) -> Discipline {
        Discipline::POSITIONAL
    }

    fn kept(&self, seen: usize, budget: usize) -> Option<Vec<Range<usize>>> {
        Some(vec![newest(seen, budget)])
    }
}

/// The newest `budget` of `seen` positions.
pub fn newest(seen: usize, budget: usize) -> Range<usize> {
    seen.saturating_sub(budget)..seen
}

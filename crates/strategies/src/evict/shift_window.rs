//! `shift-window` — the same last-`cache_tokens` window as `window`, kept the way lit-llama does
//! (`torch.roll`): once full, every step moves the `W - 1` newest slots one place toward the front
//! and writes the new token last. O(W) per token: the slow variant, kept to measure what the
//! rolling buffer saves. Keys keep their text positions.

use super::discipline::{Discipline, Evict};
use super::policy::KeepPolicy;

#[derive(Debug, Default)]
pub struct ShiftWindow;

impl KeepPolicy for ShiftWindow {
    fn discipline(&self) -> Discipline {
        Discipline { evict: Evict::Roll, ..Discipline::POSITIONAL }
    }
}

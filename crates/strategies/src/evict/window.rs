//! `window` — a rolling buffer of the last `cache_tokens` tokens (Mistral's RotatingBufferCache):
//! the oldest token leaves, the new one takes its slot, so token `p` lives at slot `p mod W` and a
//! write costs O(1) whatever the context. Keys keep their text positions; once full, attention
//! reads the ring in slot order (its result does not depend on key order).

use super::discipline::Discipline;
use super::policy::KeepPolicy;

#[derive(Debug, Default)]
pub struct Window;

impl KeepPolicy for Window {
    // The victim is the default: the oldest token.
    fn discipline(&self) -> Discipline {
        Discipline::POSITIONAL
    }
}

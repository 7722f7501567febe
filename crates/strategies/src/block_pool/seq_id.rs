//! A sequence's handle in a block pool, on its own so the pool, its errors and its eviction
//! all reach down for it.

use serde::{Deserialize, Serialize};

/// A handle for one sequence in a [`BlockPool`]. Ids are never reused within one pool, so a
/// stale handle is reported as unknown rather than silently aliasing a newer sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeqId(pub(super) u64);

impl SeqId {
    /// The raw id, for logs and maps.
    pub fn get(self) -> u64 {
        self.0
    }
}

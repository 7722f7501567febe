//! The budget split of one iteration: the parts [`crate::metrics`] defines, as memory samples
//! them ([`crate::memory::KvMemory::sample`]) and the metrics average them. A file of its own
//! so that memory and metrics both use it without using each other.

use serde::Serialize;

/// The budget split at one iteration, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemorySample {
    pub token_state: u64,
    pub stranded: u64,
    pub shared: u64,
    pub reserved: u64,
    pub internal: u64,
    pub external: u64,
    pub free: u64,
}

impl MemorySample {
    /// The parts in a fixed order (the order of [`Summary`]'s percentages).
    pub fn parts(&self) -> [u64; 7] {
        [
            self.token_state,
            self.shared,
            self.reserved,
            self.internal,
            self.external,
            self.free,
            self.stranded,
        ]
    }

    /// The parts summed; equals the budget when the books balance.
    pub fn total(&self) -> u128 {
        self.parts().iter().map(|&b| u128::from(b)).sum()
    }
}

/// One iteration's memory: the budget split, and what sharing saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub parts: MemorySample,
    /// The most internal-fragmentation tokens any one request holds.
    pub max_internal_tokens: usize,
    /// Bytes the running requests hold, each physical block once.
    pub held_bytes: u64,
    /// Bytes they would hold without sharing: every request's table counted in full.
    pub unshared_bytes: u64,
    /// Bytes of the host swap pool in use.
    pub swapped_bytes: u64,
    /// Paged: live tokens of the running requests, blocks in use, and blocks a request holds
    /// alone with at least one evicted slot.
    pub live_tokens: usize,
    pub blocks_held: usize,
    pub stranded_blocks: usize,
}

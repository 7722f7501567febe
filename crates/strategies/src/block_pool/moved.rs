//! What compaction reports, and the block-table entry of a released block: shared by the pool
//! and its eviction.

/// A released block's table entry: the logical blocks after it keep their indices.
pub(crate) const HOLE: u32 = u32::MAX;

/// One token moved by compaction: logical index and physical slot, before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub from: usize,
    pub to: usize,
    pub from_slot: usize,
    pub to_slot: usize,
}

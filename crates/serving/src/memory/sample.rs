//! The budget split of one iteration ([`crate::metrics`] defines the parts).

use kvlab_strategies::block_pool::BlockPool;

use super::{Backing, Holding, KvMemory, Lease};
use crate::{ServingError, budget_split::Snapshot, trace::Request};

impl KvMemory {
    /// Splits the budget into the parts of [`crate::MemorySample`], given every running request
    /// and the head of the waiting queue, and counts what sharing saved.
    ///
    /// Under `paged`, a block several requests hold is `shared` (once), and is always full:
    /// a fork shares whole blocks plus a partly filled one that the new request copies before
    /// its first write, which admission does at once. A request's own blocks split into its
    /// live token states, its evicted slots (stranded), and the unwritten tail of its last
    /// block: the slots it will still fill (reserved) and those it never will (internal).
    pub(crate) fn sample(
        &self,
        running: impl IntoIterator<Item = Holding>,
        head: Option<&Request>,
    ) -> Result<Snapshot, ServingError> {
        let mut snap = Snapshot::default();
        let s = &mut snap.parts;
        for h in running {
            // Slots held, those in shared blocks, the unwritten tail of the last block, and
            // evicted slots in blocks held alone.
            let (held, shared, tail, stranded) = match (&self.backing, h.lease) {
                (Backing::Contiguous { .. }, Lease::Extent { bytes, .. }) => {
                    let held = usize::try_from(bytes / self.bytes_per_token).unwrap_or(usize::MAX);
                    (held, 0, held - h.context.min(held), 0)
                }
                (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => {
                    let bs = pool.block_size();
                    let table = pool.block_table(seq)?;
                    let kept = table.iter().filter(|&&b| !BlockPool::is_hole(b));
                    let held = kept.clone().count() * bs;
                    let shared = kept.filter(|&&b| pool.refcount(b) > 1).count() * bs;
                    let stranded = pool.stranded(seq)?;
                    snap.live_tokens += pool.live_len(seq)?;
                    snap.stranded_blocks += pool.stranded_blocks(seq)?;
                    (held, shared, table.len() * bs - pool.len(seq)?, stranded)
                }
                _ => return Err(ServingError::LeaseMismatch),
            };
            snap.unshared_bytes += self.bytes(held);
            let live =
                (held - shared).checked_sub(tail + stranded).ok_or(ServingError::Internal(
                    "a request's own blocks hold fewer slots than its tail and stranded slots",
                ))?;
            let future = h.total.saturating_sub(h.context).min(tail);
            let internal = tail - future;
            s.token_state += self.bytes(live);
            s.stranded += self.bytes(stranded);
            s.reserved += self.bytes(future);
            s.internal += self.bytes(internal);
            snap.max_internal_tokens = snap.max_internal_tokens.max(internal);
        }
        match &self.backing {
            Backing::Contiguous { alloc } => {
                let free = alloc.free_bytes();
                snap.held_bytes = alloc.used_bytes();
                let need = head.map(|r| self.extent_bytes(r));
                let fragmented = need.is_some_and(|n| n <= free && n > alloc.largest_hole());
                if fragmented {
                    s.external = free;
                } else {
                    s.free = free;
                }
            }
            Backing::Paged { pool, host } => {
                let block_bytes = self.bytes(pool.block_size());
                s.shared = pool.shared_blocks() as u64 * block_bytes;
                s.free = pool.free_blocks() as u64 * block_bytes;
                s.external = self.budget - pool.n_blocks() as u64 * block_bytes;
                snap.held_bytes = pool.used_blocks() as u64 * block_bytes;
                snap.blocks_held = pool.used_blocks();
                snap.swapped_bytes =
                    host.as_ref().map_or(0, |h| h.used_blocks() as u64) * block_bytes;
            }
        }
        Ok(snap)
    }
}

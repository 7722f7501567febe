//! The KV memory of the simulated server: a real allocator over the byte budget, per policy.
//!
//! - `reserve-*`: a [`FirstFit`] allocator over `[0, budget_bytes)`; a request takes one extent
//!   of `reservation_tokens * bytes_per_token` bytes at admission and returns it on finish.
//! - `paged`: a [`BlockPool`] of `budget_bytes / (block_size * bytes_per_token)` blocks; a
//!   request takes blocks as its context grows and returns them on finish or preemption.
//!
//! How the free memory splits into free and external fragmentation is defined in
//! [`crate::metrics`]; [`KvMemory::sample`] implements it.

use kvlab_strategies::block_pool::{BlockPool, PoolError, SeqId};

use crate::{
    ServingError,
    allocator::{AllocError, FirstFit},
    metrics::MemorySample,
    policy::Policy,
    trace::Request,
};

/// What a running request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// A contiguous extent: start offset and length in bytes.
    Extent { offset: u64, bytes: u64 },
    /// A sequence in the block pool.
    Blocks(SeqId),
}

/// Whether a running request could take one more token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Growth {
    Grown,
    /// The pool is out of blocks: someone must be preempted first.
    NeedsMemory,
}

/// A running request, as the accounting sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holding {
    pub lease: Lease,
    /// Tokens whose KV is stored now: prompt + generated.
    pub context: usize,
    /// Tokens it will hold when it finishes: prompt + output.
    pub total: usize,
}

#[derive(Debug)]
enum Backing {
    Contiguous { alloc: FirstFit },
    Paged { pool: BlockPool },
}

/// The simulated KV memory.
#[derive(Debug)]
pub(crate) struct KvMemory {
    policy: Policy,
    budget: u64,
    bytes_per_token: u64,
    max_seq_len: usize,
    backing: Backing,
}

impl KvMemory {
    /// Memory for `policy` over `budget` bytes.
    ///
    /// Fails when the budget cannot serve any request at all: under one token, under one
    /// block (`paged`), or under one `max_seq_len` reservation (`reserve-max`, whose every
    /// request has that size). Budgets that fit some requests but not others are fine: the
    /// misfits are rejected one by one (see [`KvMemory::ever_fits`]).
    pub(crate) fn new(
        policy: Policy,
        budget: u64,
        bytes_per_token: u64,
        max_seq_len: usize,
    ) -> Result<Self, ServingError> {
        if bytes_per_token == 0 {
            return Err(ServingError::InvalidConfig("bytes_per_token must be at least 1"));
        }
        if max_seq_len == 0 {
            return Err(ServingError::InvalidConfig("max_seq_len must be at least 1"));
        }
        let too_small = |needed: u64, what| ServingError::BudgetTooSmall { budget, needed, what };
        let backing = match policy {
            Policy::Paged { block_size } => {
                let block_bytes = (block_size as u64)
                    .checked_mul(bytes_per_token)
                    .filter(|&b| b > 0)
                    .ok_or(ServingError::InvalidConfig("block_size must be at least 1"))?;
                let n_blocks = usize::try_from(budget / block_bytes).unwrap_or(usize::MAX);
                if n_blocks == 0 {
                    return Err(too_small(block_bytes, "one KV block"));
                }
                Backing::Paged { pool: BlockPool::new(n_blocks, block_size)? }
            }
            _ => {
                let smallest = match policy {
                    Policy::ReserveMax => (max_seq_len as u64).saturating_mul(bytes_per_token),
                    _ => bytes_per_token,
                };
                if budget < smallest {
                    return Err(too_small(smallest, "one request's reservation"));
                }
                Backing::Contiguous { alloc: FirstFit::new(budget) }
            }
        };
        Ok(Self { policy, budget, bytes_per_token, max_seq_len, backing })
    }

    fn bytes(&self, tokens: usize) -> u64 {
        (tokens as u64).saturating_mul(self.bytes_per_token)
    }

    /// Bytes a contiguous policy reserves for `req` (0 for paged).
    fn extent_bytes(&self, req: &Request) -> u64 {
        let tokens = self.policy.reservation_tokens(req.total_tokens(), self.max_seq_len);
        tokens.map_or(0, |t| self.bytes(t))
    }

    /// Whether `req` could be served with the memory otherwise empty. A request that fails
    /// this is rejected up front, so that the scheduler never waits for memory that cannot
    /// appear (the infinite-loop guard).
    pub(crate) fn ever_fits(&self, req: &Request) -> bool {
        match &self.backing {
            Backing::Contiguous { alloc } => self.extent_bytes(req) <= alloc.capacity(),
            Backing::Paged { pool } => pool.blocks_needed(0, req.total_tokens()) <= pool.n_blocks(),
        }
    }

    /// Admits `req` with `context` tokens of KV (prompt, plus any tokens generated before a
    /// preemption, plus the token prefill produces). `None` when it does not fit now.
    pub(crate) fn try_admit(
        &mut self,
        req: &Request,
        context: usize,
    ) -> Result<Option<Lease>, ServingError> {
        let bytes = self.extent_bytes(req);
        match &mut self.backing {
            Backing::Contiguous { alloc } => match alloc.allocate(bytes) {
                Ok(offset) => Ok(Some(Lease::Extent { offset, bytes })),
                Err(AllocError::NoFit { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Backing::Paged { pool } => {
                if pool.blocks_needed(0, context) > pool.free_blocks() {
                    return Ok(None);
                }
                let seq = pool.add_sequence();
                pool.append(seq, context)?;
                Ok(Some(Lease::Blocks(seq)))
            }
        }
    }

    /// Stores one more token for a running request.
    pub(crate) fn grow(&mut self, lease: Lease) -> Result<Growth, ServingError> {
        match (&mut self.backing, lease) {
            // The extent already covers every token the request will ever hold.
            (Backing::Contiguous { .. }, Lease::Extent { .. }) => Ok(Growth::Grown),
            (Backing::Paged { pool }, Lease::Blocks(seq)) => match pool.append(seq, 1) {
                Ok(()) => Ok(Growth::Grown),
                Err(PoolError::OutOfBlocks { .. }) => Ok(Growth::NeedsMemory),
                Err(e) => Err(e.into()),
            },
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// The token slots of the first `tokens` tokens a lease holds, in order: slot `i` is token
    /// `i`'s place in a store of `budget / bytes_per_token` slots (an extent's byte offset in
    /// tokens plus `i`; a sequence's block table expanded).
    pub(crate) fn slots(&self, lease: Lease, tokens: usize) -> Result<Vec<usize>, ServingError> {
        match (&self.backing, lease) {
            (Backing::Contiguous { .. }, Lease::Extent { offset, .. }) => {
                let base = usize::try_from(offset / self.bytes_per_token).unwrap_or(usize::MAX);
                Ok((base..base + tokens).collect())
            }
            (Backing::Paged { pool }, Lease::Blocks(seq)) => {
                let mut slots = pool.slots(seq)?;
                slots.truncate(tokens);
                Ok(slots)
            }
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Returns a request's memory.
    pub(crate) fn release(&mut self, lease: Lease) -> Result<(), ServingError> {
        match (&mut self.backing, lease) {
            (Backing::Contiguous { alloc }, Lease::Extent { offset, .. }) => {
                Ok(alloc.free(offset)?)
            }
            (Backing::Paged { pool }, Lease::Blocks(seq)) => Ok(pool.free_sequence(seq)?),
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Splits the budget into the five parts of [`MemorySample`], given every running request
    /// and the head of the waiting queue. Also returns the most internal-fragmentation tokens
    /// any one request holds.
    pub(crate) fn sample(
        &self,
        running: impl IntoIterator<Item = Holding>,
        head: Option<&Request>,
    ) -> Result<(MemorySample, usize), ServingError> {
        let mut s = MemorySample::default();
        let mut max_internal_tokens = 0;
        for h in running {
            let held_tokens = match (&self.backing, h.lease) {
                (Backing::Contiguous { .. }, Lease::Extent { bytes, .. }) => {
                    usize::try_from(bytes / self.bytes_per_token).unwrap_or(usize::MAX)
                }
                (Backing::Paged { pool }, Lease::Blocks(seq)) => pool.capacity(seq)?,
                _ => return Err(ServingError::LeaseMismatch),
            };
            let context = h.context.min(held_tokens);
            let future = (h.total.saturating_sub(context)).min(held_tokens - context);
            let internal = held_tokens - context - future;
            s.token_state += self.bytes(context);
            s.reserved += self.bytes(future);
            s.internal += self.bytes(internal);
            max_internal_tokens = max_internal_tokens.max(internal);
        }
        match &self.backing {
            Backing::Contiguous { alloc } => {
                let free = alloc.free_bytes();
                let need = head.map(|r| self.extent_bytes(r));
                let fragmented = need.is_some_and(|n| n <= free && n > alloc.largest_hole());
                if fragmented {
                    s.external = free;
                } else {
                    s.free = free;
                }
            }
            Backing::Paged { pool } => {
                let block_bytes = self.bytes(pool.block_size());
                s.free = pool.free_blocks() as u64 * block_bytes;
                s.external = self.budget - pool.n_blocks() as u64 * block_bytes;
            }
        }
        Ok((s, max_internal_tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(prompt: usize, output: usize) -> Request {
        Request { id: 0, arrival: 0, prompt_tokens: prompt, output_tokens: output }
    }

    #[test]
    fn budgets_too_small_for_any_request_are_errors() {
        let e = KvMemory::new(Policy::ReserveMax, 100, 1, 2048).unwrap_err();
        assert!(matches!(e, ServingError::BudgetTooSmall { needed: 2048, .. }), "{e}");
        assert!(KvMemory::new(Policy::Paged { block_size: 16 }, 15, 1, 64).is_err());
        assert!(KvMemory::new(Policy::ReserveExact, 3, 4, 64).is_err());
        assert!(KvMemory::new(Policy::ReserveExact, 64, 0, 64).is_err());
        assert!(KvMemory::new(Policy::Paged { block_size: 0 }, 64, 1, 64).is_err());
        assert!(KvMemory::new(Policy::ReserveExact, 64, 1, 0).is_err());
    }

    #[test]
    fn paged_splits_the_last_block() {
        // 10 blocks of 4 tokens, 2 bytes per token, plus 6 bytes that cannot form a block.
        let mut m = KvMemory::new(Policy::Paged { block_size: 4 }, 86, 2, 64).unwrap();
        let r = req(5, 2); // total 7 tokens: 2 blocks, 1 slot never used
        let lease = m.try_admit(&r, 6).unwrap().unwrap();
        let h = Holding { lease, context: 6, total: 7 };
        let (s, max_internal) = m.sample([h], None).unwrap();
        let want =
            MemorySample { token_state: 12, reserved: 2, internal: 2, external: 6, free: 64 };
        assert_eq!((s, max_internal), (want, 1));
        assert_eq!(s.total(), 86);
    }

    #[test]
    fn contiguous_external_only_when_compaction_would_help() {
        let mut m = KvMemory::new(Policy::ReserveExact, 40, 1, 64).unwrap();
        let leases: Vec<Lease> =
            (0..4).map(|_| m.try_admit(&req(9, 1), 10).unwrap().unwrap()).collect();
        m.release(leases[0]).unwrap();
        m.release(leases[2]).unwrap();
        let held = [leases[1], leases[3]].map(|lease| Holding { lease, context: 10, total: 10 });
        // 20 free in two holes of 10: a 15-token head is blocked by fragmentation only.
        let (s, _) = m.sample(held, Some(&req(10, 5))).unwrap();
        assert_eq!((s.external, s.free, s.token_state), (20, 0, 20));
        // A 25-token head would not fit even after compaction: capacity, not fragmentation.
        let (s, _) = m.sample(held, Some(&req(20, 5))).unwrap();
        assert_eq!((s.external, s.free), (0, 20));
        let (s, _) = m.sample(held, None).unwrap();
        assert_eq!((s.external, s.free), (0, 20));
    }

    #[test]
    fn reservations_split_into_state_reserved_internal() {
        let mut m = KvMemory::new(Policy::ReservePow2, 1000, 1, 512).unwrap();
        let r = req(60, 40); // total 100, reserves 128
        let lease = m.try_admit(&r, 61).unwrap().unwrap();
        assert_eq!(m.grow(lease).unwrap(), Growth::Grown);
        let (s, max_internal) =
            m.sample([Holding { lease, context: 62, total: 100 }], None).unwrap();
        assert_eq!((s.token_state, s.reserved, s.internal, s.free), (62, 38, 28, 872));
        assert_eq!(max_internal, 28);
        assert!(!m.ever_fits(&req(600, 500)));
        let mut paged = KvMemory::new(Policy::Paged { block_size: 4 }, 64, 1, 64).unwrap();
        let blocks = paged.try_admit(&r, 4).unwrap().unwrap();
        assert!(matches!(m.release(blocks), Err(ServingError::LeaseMismatch)));
        assert!(matches!(paged.grow(lease), Err(ServingError::LeaseMismatch)));
    }
}

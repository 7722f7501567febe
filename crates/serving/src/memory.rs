//! The KV memory of the simulated server: a real allocator over the byte budget, per policy.
//!
//! - `reserve-*`: a [`FirstFit`] allocator over `[0, budget_bytes)`; a request takes one extent
//!   of `reservation_tokens * bytes_per_token` bytes at admission and returns it on finish.
//! - `paged`: a [`BlockPool`] of `budget_bytes / (block_size * bytes_per_token)` blocks; a
//!   request takes blocks as its context grows and returns them on finish or preemption. A
//!   request may start by sharing a running request's prefix blocks ([`Donor`]; copy-on-write
//!   of a partly filled one), and a preempted request may be swapped out to a second pool of
//!   the same block size in host memory and back ([`KvMemory::swap_out`], [`KvMemory::swap_in`]).
//!
//! How the budget splits into its parts is defined in [`crate::metrics`];
//! [`KvMemory::sample`] implements it.

mod sample;

use kvlab_strategies::block_pool::{BlockCopy, BlockPool, Moved, PoolError, SeqId};

use crate::{
    ServingError,
    allocator::{AllocError, FirstFit},
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

/// A preempted request's KV in the host pool: its sequence there and the blocks it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swapped {
    pub seq: SeqId,
    pub blocks: usize,
}

/// Slots whose K/V must be copied before a write (a copy-on-write): `from[i]` → `to[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotCopy {
    pub from: Vec<usize>,
    pub to: Vec<usize>,
}

/// Whether a running request could take one more token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Growth {
    /// It did; a copy-on-write to carry out first if its last block was shared.
    Grown(Option<SlotCopy>),
    /// The pool is out of blocks: someone must be preempted first.
    NeedsMemory,
}

/// A running request whose first `tokens` tokens an admitted request shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Donor {
    pub lease: Lease,
    pub tokens: usize,
}

/// What admission gave a request.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    pub lease: Lease,
    /// Tokens whose KV it shares with its donor (not computed again).
    pub shared_tokens: usize,
    /// The copy-on-write of the donor's partly filled block, to carry out before prefill.
    pub copy: Option<SlotCopy>,
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
    Paged { pool: BlockPool, host: Option<BlockPool> },
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
    /// Memory for `policy` over `budget` bytes, with `swap_bytes` of host memory for swapped
    /// out blocks (`paged` only; 0: no swap space).
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
        swap_bytes: u64,
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
                let blocks =
                    |bytes: u64| usize::try_from(bytes / block_bytes).unwrap_or(usize::MAX);
                if blocks(budget) == 0 {
                    return Err(too_small(block_bytes, "one KV block"));
                }
                let host = match blocks(swap_bytes) {
                    0 => None,
                    n => Some(BlockPool::new(n, block_size)?),
                };
                Backing::Paged { pool: BlockPool::new(blocks(budget), block_size)?, host }
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

    /// Tokens of one block (`paged`; 0 for the contiguous policies).
    pub(crate) fn block_tokens(&self) -> usize {
        self.policy.block_size().unwrap_or(0)
    }

    /// Bytes of one block (`paged`; 0 for the contiguous policies).
    pub(crate) fn block_bytes(&self) -> u64 {
        self.bytes(self.policy.block_size().unwrap_or(0))
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
            Backing::Paged { pool, .. } => {
                pool.blocks_needed(0, req.total_tokens()) <= pool.n_blocks()
            }
        }
    }

    /// Admits `req` with `context` token slots (prompt, plus any tokens generated before a
    /// preemption, plus the slot of the token prefill produces). With a `donor` (paged only),
    /// its first `donor.tokens` tokens are shared rather than stored again. `None` when it does
    /// not fit now.
    pub(crate) fn try_admit(
        &mut self,
        req: &Request,
        context: usize,
        donor: Option<Donor>,
    ) -> Result<Option<Admission>, ServingError> {
        let bytes = self.extent_bytes(req);
        match &mut self.backing {
            Backing::Contiguous { alloc } => match alloc.allocate(bytes) {
                Ok(offset) => Ok(Some(Admission {
                    lease: Lease::Extent { offset, bytes },
                    shared_tokens: 0,
                    copy: None,
                })),
                Err(AllocError::NoFit { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
            Backing::Paged { pool, .. } => {
                let (donor_seq, shared) = match donor {
                    Some(Donor { lease: Lease::Blocks(seq), tokens }) if tokens < context => {
                        (Some(seq), tokens)
                    }
                    Some(_) => return Err(ServingError::LeaseMismatch),
                    None => (None, 0),
                };
                let bs = pool.block_size();
                let cow = usize::from(!shared.is_multiple_of(bs));
                if pool.blocks_needed(shared, context - shared) + cow > pool.free_blocks() {
                    return Ok(None);
                }
                let seq = match donor_seq {
                    Some(d) => pool.fork(d, shared)?,
                    None => pool.add_sequence(),
                };
                let copy = pool.append(seq, context - shared)?.map(|c| slot_copy(c, bs));
                Ok(Some(Admission { lease: Lease::Blocks(seq), shared_tokens: shared, copy }))
            }
        }
    }

    /// Stores one more token for a running request.
    pub(crate) fn grow(&mut self, lease: Lease) -> Result<Growth, ServingError> {
        match (&mut self.backing, lease) {
            // The extent already covers every token the request will ever hold.
            (Backing::Contiguous { .. }, Lease::Extent { .. }) => Ok(Growth::Grown(None)),
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => match pool.append(seq, 1) {
                Ok(copy) => Ok(Growth::Grown(copy.map(|c| slot_copy(c, pool.block_size())))),
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
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => {
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
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => Ok(pool.free_sequence(seq)?),
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Moves a running request's blocks to the host pool and frees them here (a shared block
    /// stays for its other holders). `None`, changing nothing, when there is no swap space
    /// or not enough of it.
    pub(crate) fn swap_out(&mut self, lease: Lease) -> Result<Option<Swapped>, ServingError> {
        let (Backing::Paged { pool, host: Some(host) }, Lease::Blocks(seq)) =
            (&mut self.backing, lease)
        else {
            return Ok(None);
        };
        let tokens = pool.len(seq)?;
        let blocks = host.blocks_needed(0, tokens);
        if blocks > host.free_blocks() {
            return Ok(None);
        }
        let on_host = host.add_sequence();
        host.append(on_host, tokens)?;
        pool.free_sequence(seq)?;
        Ok(Some(Swapped { seq: on_host, blocks }))
    }

    /// Brings a swapped-out request back with `context` slots (its tokens, plus the slot of
    /// the token it produces now), into fresh blocks; `None`, changing nothing, when they do
    /// not fit now.
    pub(crate) fn swap_in(
        &mut self,
        swapped: Swapped,
        context: usize,
    ) -> Result<Option<Lease>, ServingError> {
        let Backing::Paged { pool, host: Some(host) } = &mut self.backing else {
            return Err(ServingError::LeaseMismatch);
        };
        if pool.blocks_needed(0, context) > pool.free_blocks() {
            return Ok(None);
        }
        host.free_sequence(swapped.seq)?;
        let seq = pool.add_sequence();
        pool.append(seq, context)?;
        Ok(Some(Lease::Blocks(seq)))
    }

    /// Checks the pools' books (see `BlockPool::check`).
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        match &self.backing {
            Backing::Contiguous { .. } => Ok(()),
            Backing::Paged { pool, host } => {
                pool.check()?;
                host.as_ref().map_or(Ok(()), BlockPool::check)
            }
        }
    }

    /// Evicts logical slot `index` of a paged request; whether a block was released.
    pub(crate) fn evict(&mut self, lease: Lease, index: usize) -> Result<bool, ServingError> {
        match (&mut self.backing, lease) {
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => Ok(pool.evict(seq, index)?),
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Compacts a paged request (see `BlockPool::compact`): the tokens moved, in order.
    pub(crate) fn compact(&mut self, lease: Lease) -> Result<Vec<Moved>, ServingError> {
        match (&mut self.backing, lease) {
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => Ok(pool.compact(seq)?),
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Logical indices of a paged request's live tokens (for tests that evict at random).
    #[cfg(test)]
    pub(crate) fn live_indices(&self, lease: Lease) -> Result<Vec<usize>, ServingError> {
        match (&self.backing, lease) {
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => Ok(pool.live_indices(seq)?),
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Evicted slots a paged request holds (in blocks it holds alone).
    pub(crate) fn stranded(&self, lease: Lease) -> Result<usize, ServingError> {
        match (&self.backing, lease) {
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => Ok(pool.stranded(seq)?),
            _ => Err(ServingError::LeaseMismatch),
        }
    }

    /// Slots a paged request has used (its next token's logical index) and how many of them
    /// are live.
    pub(crate) fn used_and_live(&self, lease: Lease) -> Result<(usize, usize), ServingError> {
        match (&self.backing, lease) {
            (Backing::Paged { pool, .. }, Lease::Blocks(seq)) => {
                Ok((pool.len(seq)?, pool.live_len(seq)?))
            }
            _ => Err(ServingError::LeaseMismatch),
        }
    }
}

/// A block copy as the store's slots: the first `tokens` slots of each block.
fn slot_copy(c: BlockCopy, block_size: usize) -> SlotCopy {
    let slots = |b: u32| (0..c.tokens).map(move |o| b as usize * block_size + o);
    SlotCopy { from: slots(c.from).collect(), to: slots(c.to).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySample;

    fn req(prompt: usize, output: usize) -> Request {
        Request::new(0, 0, prompt, output)
    }

    fn admit(m: &mut KvMemory, r: &Request, context: usize) -> Lease {
        m.try_admit(r, context, None).unwrap().unwrap().lease
    }

    #[test]
    fn budgets_too_small_for_any_request_are_errors() {
        let e = KvMemory::new(Policy::ReserveMax, 100, 1, 2048, 0).unwrap_err();
        assert!(matches!(e, ServingError::BudgetTooSmall { needed: 2048, .. }), "{e}");
        assert!(KvMemory::new(Policy::Paged { block_size: 16 }, 15, 1, 64, 0).is_err());
        assert!(KvMemory::new(Policy::ReserveExact, 3, 4, 64, 0).is_err());
        assert!(KvMemory::new(Policy::ReserveExact, 64, 0, 64, 0).is_err());
        assert!(KvMemory::new(Policy::Paged { block_size: 0 }, 64, 1, 64, 0).is_err());
        assert!(KvMemory::new(Policy::ReserveExact, 64, 1, 0, 0).is_err());
    }

    #[test]
    fn paged_splits_the_last_block() {
        // 10 blocks of 4 tokens, 2 bytes per token, plus 6 bytes that cannot form a block.
        let mut m = KvMemory::new(Policy::Paged { block_size: 4 }, 86, 2, 64, 0).unwrap();
        let r = req(5, 2); // total 7 tokens: 2 blocks, 1 slot never used
        let lease = admit(&mut m, &r, 6);
        let h = Holding { lease, context: 6, total: 7 };
        let snap = m.sample([h], None).unwrap();
        let want = MemorySample {
            token_state: 12,
            reserved: 2,
            internal: 2,
            external: 6,
            free: 64,
            ..MemorySample::default()
        };
        assert_eq!((snap.parts, snap.max_internal_tokens), (want, 1));
        assert_eq!(snap.parts.total(), 86);
        assert_eq!((snap.held_bytes, snap.unshared_bytes), (16, 16));
    }

    #[test]
    fn contiguous_external_only_when_compaction_would_help() {
        let mut m = KvMemory::new(Policy::ReserveExact, 40, 1, 64, 0).unwrap();
        let leases: Vec<Lease> = (0..4).map(|_| admit(&mut m, &req(9, 1), 10)).collect();
        m.release(leases[0]).unwrap();
        m.release(leases[2]).unwrap();
        let held = [leases[1], leases[3]].map(|lease| Holding { lease, context: 10, total: 10 });
        // 20 free in two holes of 10: a 15-token head is blocked by fragmentation only.
        let s = m.sample(held, Some(&req(10, 5))).unwrap().parts;
        assert_eq!((s.external, s.free, s.token_state), (20, 0, 20));
        // A 25-token head would not fit even after compaction: capacity, not fragmentation.
        let s = m.sample(held, Some(&req(20, 5))).unwrap().parts;
        assert_eq!((s.external, s.free), (0, 20));
        let s = m.sample(held, None).unwrap().parts;
        assert_eq!((s.external, s.free), (0, 20));
    }

    #[test]
    fn reservations_split_into_state_reserved_internal() {
        let mut m = KvMemory::new(Policy::ReservePow2, 1000, 1, 512, 0).unwrap();
        let r = req(60, 40); // total 100, reserves 128
        let lease = admit(&mut m, &r, 61);
        assert_eq!(m.grow(lease).unwrap(), Growth::Grown(None));
        let snap = m.sample([Holding { lease, context: 62, total: 100 }], None).unwrap();
        let s = snap.parts;
        assert_eq!((s.token_state, s.reserved, s.internal, s.free), (62, 38, 28, 872));
        assert_eq!(snap.max_internal_tokens, 28);
        assert!(!m.ever_fits(&req(600, 500)));
        let mut paged = KvMemory::new(Policy::Paged { block_size: 4 }, 64, 1, 64, 0).unwrap();
        let blocks = admit(&mut paged, &r, 4);
        assert!(matches!(m.release(blocks), Err(ServingError::LeaseMismatch)));
        assert!(matches!(paged.grow(lease), Err(ServingError::LeaseMismatch)));
    }

    /// A request that shares a donor's 6-token prefix (block size 4) holds the donor's full
    /// block, copies the half-filled one, and the books count the shared block once.
    #[test]
    fn a_shared_prefix_is_held_once_and_its_partial_block_copied() {
        let mut m = KvMemory::new(Policy::Paged { block_size: 4 }, 64, 1, 64, 0).unwrap();
        let (a, b) = (req(6, 4), req(6, 4));
        let la = admit(&mut m, &a, 7); // blocks 0, 1
        let donor = Donor { lease: la, tokens: 6 };
        let adm = m.try_admit(&b, 7, Some(donor)).unwrap().unwrap();
        assert_eq!(adm.shared_tokens, 6);
        assert_eq!(adm.copy, Some(SlotCopy { from: vec![4, 5], to: vec![8, 9] }));
        assert_eq!(m.slots(adm.lease, 7).unwrap(), [0, 1, 2, 3, 8, 9, 10]);
        let held = [la, adm.lease].map(|lease| Holding { lease, context: 7, total: 10 });
        let snap = m.sample(held, None).unwrap();
        // Block 0 shared (4 tokens once), each request's own block: 3 states + 1 reserved;
        // then each needs 3 more tokens beyond its block: reserved is capped by what it holds.
        let s = snap.parts;
        assert_eq!((s.shared, s.token_state, s.reserved, s.internal), (4, 6, 2, 0));
        assert_eq!((s.free, s.total()), (52, 64));
        assert_eq!((snap.held_bytes, snap.unshared_bytes), (12, 16));
        m.check().unwrap();
        m.release(la).unwrap();
        let s = m.sample([Holding { lease: adm.lease, context: 7, total: 10 }], None).unwrap();
        assert_eq!((s.parts.shared, s.parts.token_state), (0, 7), "sole holder again");
        m.check().unwrap();
    }

    #[test]
    fn swap_moves_blocks_to_the_host_and_back() {
        let mut m = KvMemory::new(Policy::Paged { block_size: 4 }, 32, 1, 64, 8).unwrap();
        let lease = admit(&mut m, &req(5, 3), 6); // 2 blocks
        let out = m.swap_out(lease).unwrap().unwrap();
        assert_eq!(out.blocks, 2);
        let snap = m.sample([], None).unwrap();
        assert_eq!((snap.parts.free, snap.swapped_bytes), (32, 8));
        // The host pool holds 2 blocks: a second request of 2 blocks does not fit there.
        let other = admit(&mut m, &req(5, 3), 6);
        assert_eq!(m.swap_out(other).unwrap(), None, "no host room: nothing moves");
        assert_eq!(m.slots(other, 6).unwrap().len(), 6);
        // Coming back takes fresh blocks for its 6 tokens and the one it produces now.
        let back = m.swap_in(out, 7).unwrap().unwrap();
        assert_eq!(m.slots(back, 7).unwrap().len(), 7);
        assert_eq!(m.sample([], None).unwrap().swapped_bytes, 0);
        m.check().unwrap();
        let mut no_host = KvMemory::new(Policy::Paged { block_size: 4 }, 32, 1, 64, 3).unwrap();
        let l = admit(&mut no_host, &req(2, 1), 3);
        assert_eq!(no_host.swap_out(l).unwrap(), None, "3 bytes of host memory hold no block");
    }
}

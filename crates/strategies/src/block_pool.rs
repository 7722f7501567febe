//! vLLM-style block bookkeeping: a fixed pool of equal-sized KV blocks handed out on demand.
//!
//! PagedAttention's point is that a sequence's KV need not be contiguous. Memory is cut into
//! `n_blocks` blocks of `block_size` token slots; each sequence owns a *block table* (logical
//! block `i` → physical block id) and takes a new block only when its last one is full. So a
//! sequence wastes at most `block_size - 1` slots (the tail of its last block), nothing is
//! reserved for tokens that may never come, and any free block serves any sequence (no
//! external fragmentation).
//!
//! This type is pure bookkeeping: it never touches tensors. The paged KV strategy keeps K/V in
//! a pool tensor of `n_blocks * block_size` slots and uses [`BlockPool::slots`] as its gather
//! index; the serving simulation uses it as its paged allocator.
//!
//! Freed blocks go on a LIFO stack, so the block freed last is the next one handed out (hot in
//! cache, and it makes reuse easy to observe in tests).
//!
//! Blocks can be *shared* (vLLM's copy-on-write): [`BlockPool::fork`] starts a sequence whose
//! first blocks are another's (a common system prompt, the n samples of one prompt); each
//! block counts the tables that hold it and returns to the free list when the last one lets
//! go. A sequence that appends into a shared, partly filled last block first gets a private
//! copy of it ([`BlockCopy`]: the caller copies those slots' K/V); full shared blocks are
//! never written again, so they are never copied.
//!
//! A sequence may also lose tokens ([`BlockPool::evict`], for a cache that keeps only some):
//! a block all of whose slots are evicted is released at once, and one that still holds a
//! live token keeps its evicted slots *stranded* — held, but holding nothing — until
//! [`BlockPool::compact`] moves the last block's survivors into them.

mod error;
mod evict;
mod moved;
mod seq_id;

use std::collections::{BTreeMap, BTreeSet};

pub use error::PoolError;
use moved::HOLE;
pub use moved::Moved;
pub use seq_id::SeqId;
use serde::{Deserialize, Serialize};

/// A copy-on-write a caller must carry out before writing: the first `tokens` slots of block
/// `from` (shared with other sequences) go to the same offsets of block `to` (now this
/// sequence's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCopy {
    pub from: u32,
    pub to: u32,
    pub tokens: usize,
}

/// One sequence's share of the pool.
#[derive(Debug, Clone, Default)]
struct Sequence {
    /// Physical block ids in logical order; [`HOLE`] where a wholly evicted block was
    /// released (never the last entry).
    blocks: Vec<u32>,
    /// Slots used (live or evicted); always `<= blocks.len() * block_size` and `>
    /// (blocks.len() - 1) * block_size` when non-empty.
    len: usize,
    /// Evicted slots (logical indices below `len`), in held blocks and in holes.
    dead: BTreeSet<usize>,
}

/// A fixed pool of `n_blocks` blocks of `block_size` token slots, shared by many sequences.
///
/// Physical slot `block * block_size + offset` is where token `offset` of a block lives; a
/// pool tensor of `n_blocks * block_size` slots is indexed by exactly these numbers.
#[derive(Debug, Clone)]
pub struct BlockPool {
    n_blocks: usize,
    block_size: usize,
    /// LIFO stack of free block ids: `pop` takes the most recently freed block.
    free: Vec<u32>,
    /// Per block: how many sequences' tables hold it (0 exactly when it is on `free`).
    refs: Vec<u32>,
    /// Live sequences, ordered by id so iteration (and so any derived output) is deterministic.
    seqs: BTreeMap<SeqId, Sequence>,
    next_id: u64,
}

impl BlockPool {
    /// A pool of `n_blocks` blocks of `block_size` token slots each, all free.
    ///
    /// Fails on zero blocks, zero block size, or a pool whose slot count overflows `usize` or
    /// whose block ids overflow `u32` (block tables store `u32` entries, as vLLM's do).
    pub fn new(n_blocks: usize, block_size: usize) -> Result<Self, PoolError> {
        if n_blocks == 0 {
            return Err(PoolError::NoBlocks);
        }
        if block_size == 0 {
            return Err(PoolError::ZeroBlockSize);
        }
        let ids_fit = u32::try_from(n_blocks - 1).is_ok();
        if !ids_fit || n_blocks.checked_mul(block_size).is_none() {
            return Err(PoolError::TooLarge { n_blocks, block_size });
        }
        // Reversed so that the first allocations take blocks 0, 1, 2, … (easier to read in logs).
        let free = (0..n_blocks).rev().filter_map(|b| u32::try_from(b).ok()).collect();
        Ok(Self {
            n_blocks,
            block_size,
            free,
            refs: vec![0; n_blocks],
            seqs: BTreeMap::new(),
            next_id: 0,
        })
    }

    /// Blocks in the pool.
    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Token slots in the pool: the length of the pool tensor.
    pub fn n_slots(&self) -> usize {
        self.n_blocks * self.block_size
    }

    /// Blocks not owned by any sequence.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks owned by some sequence (a shared block counts once).
    pub fn used_blocks(&self) -> usize {
        self.n_blocks - self.free.len()
    }

    /// Blocks held by more than one sequence.
    pub fn shared_blocks(&self) -> usize {
        self.refs.iter().filter(|&&r| r > 1).count()
    }

    /// How many sequences hold `block` (0 when it is free or out of range).
    pub fn refcount(&self, block: u32) -> u32 {
        self.refs.get(block as usize).copied().unwrap_or(0)
    }

    /// Live sequences.
    pub fn n_sequences(&self) -> usize {
        self.seqs.len()
    }

    /// Starts an empty sequence; it owns no block until its first [`BlockPool::append`].
    pub fn add_sequence(&mut self) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(id, Sequence::default());
        id
    }

    /// Blocks a sequence of `current_len` tokens must take to grow by `n_new` tokens.
    pub fn blocks_needed(&self, current_len: usize, n_new: usize) -> usize {
        let after = current_len.saturating_add(n_new).div_ceil(self.block_size);
        after - current_len.div_ceil(self.block_size)
    }

    /// Whether `seq` can grow by `n_new` tokens with the blocks free now.
    pub fn can_append(&self, seq: SeqId, n_new: usize) -> Result<bool, PoolError> {
        Ok(self.append_cost(seq, n_new)? <= self.free.len())
    }

    /// Free blocks `seq` takes to grow by `n_new` tokens: new blocks, plus one when its last
    /// block is shared and partly filled (the copy-on-write).
    pub(crate) fn append_cost(&self, seq: SeqId, n_new: usize) -> Result<usize, PoolError> {
        let s = self.get(seq)?;
        Ok(self.blocks_needed(s.len, n_new) + usize::from(n_new > 0 && self.cow_block(s).is_some()))
    }

    /// The shared, partly filled last block a write into `s` would have to copy first.
    fn cow_block(&self, s: &Sequence) -> Option<u32> {
        let last = *s.blocks.last()?;
        (!s.len.is_multiple_of(self.block_size) && self.refs[last as usize] > 1).then_some(last)
    }

    /// Grows `seq` by `n_new` tokens, taking blocks as needed; returns the copy-on-write the
    /// caller must carry out first when the sequence's last block was shared and partly filled.
    ///
    /// All or nothing: when the pool lacks blocks this returns [`PoolError::OutOfBlocks`] and
    /// neither the sequence nor the free list changes, so the caller may preempt and retry.
    pub fn append(&mut self, seq: SeqId, n_new: usize) -> Result<Option<BlockCopy>, PoolError> {
        let needed = self.append_cost(seq, n_new)?;
        if needed > self.free.len() {
            return Err(PoolError::OutOfBlocks { needed, free: self.free.len() });
        }
        let s = self.get(seq)?;
        let (len, cow) = (s.len, if n_new > 0 { self.cow_block(s) } else { None });
        let mut taken = self.free.split_off(self.free.len() - needed);
        // split_off keeps stack order; reverse so the top of the stack is taken first.
        taken.reverse();
        for &b in &taken {
            self.refs[b as usize] = 1;
        }
        let mut taken = taken.into_iter();
        let s = self.seqs.get_mut(&seq).ok_or(PoolError::UnknownSequence(seq))?;
        let copy = match cow {
            Some(from) => {
                let to = taken.next().ok_or(PoolError::OutOfBlocks { needed, free: 0 })?;
                *s.blocks.last_mut().ok_or(PoolError::UnknownSequence(seq))? = to;
                self.refs[from as usize] -= 1;
                Some(BlockCopy { from, to, tokens: len % self.block_size })
            }
            None => None,
        };
        s.blocks.extend(taken);
        s.len = len + n_new;
        Ok(copy)
    }

    /// Starts a sequence that shares `seq`'s first `tokens` tokens: its table holds the same
    /// physical blocks (each one's count goes up), and it takes no block until it appends. A
    /// partly filled last block is copied on the new sequence's first write ([`BlockCopy`]).
    pub fn fork(&mut self, seq: SeqId, tokens: usize) -> Result<SeqId, PoolError> {
        let s = self.get(seq)?;
        if tokens > s.len {
            return Err(PoolError::ForkTooLong { seq, tokens, len: s.len });
        }
        if s.dead.range(..tokens).next().is_some() {
            return Err(PoolError::ForkOfEvicted { seq, tokens });
        }
        let blocks = s.blocks[..tokens.div_ceil(self.block_size)].to_vec();
        for &b in &blocks {
            self.refs[b as usize] += 1;
        }
        let id = self.add_sequence();
        self.seqs.insert(id, Sequence { blocks, len: tokens, dead: BTreeSet::new() });
        Ok(id)
    }

    /// Ends `seq`: each of its blocks loses one holder and returns to the free list when it
    /// had no other.
    ///
    /// The blocks are pushed tail first, so the sequence's first block is on top of the stack
    /// and the next allocation takes the freed blocks back in their old logical order.
    pub fn free_sequence(&mut self, seq: SeqId) -> Result<(), PoolError> {
        let s = self.seqs.remove(&seq).ok_or(PoolError::UnknownSequence(seq))?;
        for b in s.blocks.into_iter().rev().filter(|&b| b != HOLE) {
            self.release(b);
        }
        Ok(())
    }

    /// One holder lets go of `block`; the last one returns it to the free list.
    fn release(&mut self, block: u32) {
        self.refs[block as usize] -= 1;
        if self.refs[block as usize] == 0 {
            self.free.push(block);
        }
    }

    /// Slots `seq` has used, evicted ones included (its next token's logical index).
    pub fn len(&self, seq: SeqId) -> Result<usize, PoolError> {
        Ok(self.get(seq)?.len)
    }

    /// Token slots `seq` holds: its held blocks (not released holes) times the block size.
    pub fn capacity(&self, seq: SeqId) -> Result<usize, PoolError> {
        let s = self.get(seq)?;
        Ok(s.blocks.iter().filter(|&&b| b != HOLE).count() * self.block_size)
    }

    /// `seq`'s block table: physical block id per logical block, in order
    /// ([`BlockPool::is_hole`] where a wholly evicted block was released).
    pub fn block_table(&self, seq: SeqId) -> Result<&[u32], PoolError> {
        Ok(&self.get(seq)?.blocks)
    }

    /// The physical slot of token `token_index` of `seq`: `block * block_size + offset`.
    pub fn slot(&self, seq: SeqId, token_index: usize) -> Result<usize, PoolError> {
        let s = self.get(seq)?;
        if token_index >= s.len {
            return Err(PoolError::TokenOutOfRange { seq, index: token_index, len: s.len });
        }
        if s.dead.contains(&token_index) {
            return Err(PoolError::Evicted { seq, index: token_index });
        }
        let block = s
            .blocks
            .get(token_index / self.block_size)
            .ok_or(PoolError::TokenOutOfRange { seq, index: token_index, len: s.len })?;
        Ok(*block as usize * self.block_size + token_index % self.block_size)
    }

    /// The physical slots of `seq`'s live tokens in logical order: the gather index that reads
    /// the sequence back out of the pool tensor.
    ///
    /// # Shapes
    /// `[len(seq) - evicted]`, each entry in `0..n_slots()`.
    pub fn slots(&self, seq: SeqId) -> Result<Vec<usize>, PoolError> {
        let s = self.get(seq)?;
        let bs = self.block_size;
        // A released block's slots are all evicted: the filter drops them before they are read.
        Ok((0..s.len)
            .filter(|k| !s.dead.contains(k))
            .map(|k| s.blocks[k / bs] as usize * bs + k % bs)
            .collect())
    }

    /// Bytes of block-table metadata: one `u32` (4 bytes) per block-table entry over all live
    /// sequences, i.e. `4 * used_blocks()`. This is what the paged cache pays on top of its K/V
    /// pool to know where each sequence lives (per layer it is shared, so count it once).
    pub(crate) fn table_bytes(&self) -> usize {
        self.seqs.values().map(|s| s.blocks.len()).sum::<usize>() * std::mem::size_of::<u32>()
    }

    /// Checks the pool's books: every block is free exactly when no table holds it, its count
    /// equals the tables that hold it, no block is free twice, and every table has exactly the
    /// blocks its length needs. For property tests; `Err` names the first broken rule.
    pub fn check(&self) -> Result<(), String> {
        let mut held = vec![0u32; self.n_blocks];
        for (id, s) in &self.seqs {
            if s.blocks.len() != s.len.div_ceil(self.block_size) {
                return Err(format!("{id:?}: {} blocks for {} tokens", s.blocks.len(), s.len));
            }
            self.check_evicted(*id, s)?;
            for &b in s.blocks.iter().filter(|&&b| b != HOLE) {
                held[b as usize] += 1;
            }
        }
        let mut free = vec![false; self.n_blocks];
        for &b in &self.free {
            if std::mem::replace(&mut free[b as usize], true) {
                return Err(format!("block {b} is on the free list twice"));
            }
        }
        for (b, (&h, &r)) in held.iter().zip(&self.refs).enumerate() {
            if h != r {
                return Err(format!("block {b}: count {r}, held by {h} tables"));
            }
            if (h == 0) != free[b] {
                return Err(format!("block {b}: held by {h} tables, free = {}", free[b]));
            }
        }
        Ok(())
    }

    fn get(&self, seq: SeqId) -> Result<&Sequence, PoolError> {
        self.seqs.get(&seq).ok_or(PoolError::UnknownSequence(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rejects_empty_pools() {
        assert_eq!(BlockPool::new(0, 16).unwrap_err(), PoolError::NoBlocks);
        assert_eq!(BlockPool::new(4, 0).unwrap_err(), PoolError::ZeroBlockSize);
        assert!(matches!(BlockPool::new(usize::MAX, 2), Err(PoolError::TooLarge { .. })));
    }

    #[test]
    fn allocates_on_demand_and_maps_slots() {
        let mut pool = BlockPool::new(4, 4).unwrap();
        let a = pool.add_sequence();
        assert_eq!(pool.block_table(a).unwrap(), &[] as &[u32]);
        pool.append(a, 3).unwrap();
        assert_eq!(pool.block_table(a).unwrap(), &[0]);
        pool.append(a, 2).unwrap(); // 5 tokens: a second block
        assert_eq!(pool.block_table(a).unwrap(), &[0, 1]);
        assert_eq!(pool.len(a).unwrap(), 5);
        assert_eq!(pool.capacity(a).unwrap(), 8);
        assert_eq!(pool.slot(a, 4).unwrap(), 4);
        assert_eq!(pool.slots(a).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(pool.used_blocks(), 2);
        assert_eq!(pool.free_blocks(), 2);
        assert_eq!(pool.table_bytes(), 8);
        assert_eq!(
            pool.slot(a, 5).unwrap_err(),
            PoolError::TokenOutOfRange { seq: a, index: 5, len: 5 }
        );
    }

    #[test]
    fn blocks_needed_counts_only_new_blocks() {
        let pool = BlockPool::new(1, 16).unwrap();
        assert_eq!(pool.blocks_needed(0, 0), 0);
        assert_eq!(pool.blocks_needed(0, 1), 1);
        assert_eq!(pool.blocks_needed(15, 1), 0);
        assert_eq!(pool.blocks_needed(16, 1), 1);
        assert_eq!(pool.blocks_needed(1, 48), 3);
    }

    #[test]
    fn failed_append_changes_nothing() {
        let mut pool = BlockPool::new(3, 2).unwrap();
        let a = pool.add_sequence();
        pool.append(a, 3).unwrap();
        let before = (pool.block_table(a).unwrap().to_vec(), pool.free_blocks());
        assert!(!pool.can_append(a, 4).unwrap());
        assert_eq!(pool.append(a, 4).unwrap_err(), PoolError::OutOfBlocks { needed: 2, free: 1 });
        assert_eq!((pool.block_table(a).unwrap().to_vec(), pool.free_blocks()), before);
        assert_eq!(pool.len(a).unwrap(), 3);
        assert!(pool.can_append(a, 3).unwrap());
    }

    #[test]
    fn freed_blocks_are_reused_first() {
        let mut pool = BlockPool::new(8, 2).unwrap();
        let a = pool.add_sequence();
        let b = pool.add_sequence();
        pool.append(a, 4).unwrap(); // blocks 0, 1
        pool.append(b, 2).unwrap(); // block 2
        pool.free_sequence(a).unwrap();
        let c = pool.add_sequence();
        pool.append(c, 4).unwrap();
        assert_eq!(pool.block_table(c).unwrap(), &[0, 1]);
    }

    #[test]
    fn forks_share_blocks_and_copy_the_partial_one_on_write() {
        let mut pool = BlockPool::new(8, 4).unwrap();
        let a = pool.add_sequence();
        pool.append(a, 6).unwrap(); // blocks 0 (full), 1 (2 of 4)
        let b = pool.fork(a, 6).unwrap();
        assert_eq!(pool.block_table(b).unwrap(), &[0, 1]);
        assert_eq!((pool.used_blocks(), pool.shared_blocks(), pool.refcount(1)), (2, 2, 2));
        assert_eq!(pool.append_cost(b, 1).unwrap(), 1, "the shared half block is copied");
        // b writes into block 1: it gets its own copy of the 2 tokens there first.
        let copy = pool.append(b, 1).unwrap();
        assert_eq!(copy, Some(BlockCopy { from: 1, to: 2, tokens: 2 }));
        assert_eq!(pool.block_table(b).unwrap(), &[0, 2]);
        assert_eq!((pool.refcount(0), pool.refcount(1), pool.refcount(2)), (2, 1, 1));
        // a owns block 1 alone again: no copy.
        assert_eq!(pool.append(a, 1).unwrap(), None);
        // A fork at a block boundary shares full blocks only: never copied.
        let c = pool.fork(a, 4).unwrap();
        assert_eq!(pool.append(c, 3).unwrap(), None);
        assert_eq!(pool.block_table(c).unwrap(), &[0, 3]);
        assert_eq!(pool.refcount(0), 3);
        pool.check().unwrap();
        // Freeing returns a block only when its last holder lets go.
        pool.free_sequence(a).unwrap();
        assert_eq!((pool.refcount(0), pool.refcount(1)), (2, 0));
        pool.free_sequence(b).unwrap();
        pool.free_sequence(c).unwrap();
        assert_eq!(pool.free_blocks(), 8);
        pool.check().unwrap();
        let d = pool_seq(&mut pool, 2);
        assert_eq!(
            pool.fork(d, 3).unwrap_err(),
            PoolError::ForkTooLong { seq: d, tokens: 3, len: 2 }
        );
    }

    #[test]
    fn a_copy_that_does_not_fit_changes_nothing() {
        let mut pool = BlockPool::new(2, 4).unwrap();
        let a = pool_seq(&mut pool, 6); // both blocks
        let b = pool.fork(a, 6).unwrap();
        assert_eq!(pool.append(b, 1).unwrap_err(), PoolError::OutOfBlocks { needed: 1, free: 0 });
        assert_eq!((pool.block_table(b).unwrap(), pool.len(b).unwrap()), (&[0u32, 1][..], 6));
        assert_eq!(pool.refcount(1), 2);
        pool.check().unwrap();
    }

    fn pool_seq(pool: &mut BlockPool, tokens: usize) -> SeqId {
        let s = pool.add_sequence();
        pool.append(s, tokens).unwrap();
        s
    }

    #[test]
    fn unknown_and_stale_handles_are_errors() {
        let mut pool = BlockPool::new(2, 2).unwrap();
        let a = pool.add_sequence();
        pool.free_sequence(a).unwrap();
        assert_eq!(pool.free_sequence(a).unwrap_err(), PoolError::UnknownSequence(a));
        assert_eq!(pool.append(a, 1).unwrap_err(), PoolError::UnknownSequence(a));
        assert!(pool.len(a).is_err() && pool.slots(a).is_err() && pool.block_table(a).is_err());
        let b = pool.add_sequence();
        assert_ne!(a, b, "ids are not reused");
    }

    /// Ownership and free-list consistency: every block is either free or owned, never both,
    /// never twice.
    fn check_ownership(pool: &BlockPool) {
        let mut owner = vec![0u8; pool.n_blocks()];
        for &b in &pool.free {
            owner[b as usize] += 1;
        }
        for s in pool.seqs.values() {
            for &b in &s.blocks {
                owner[b as usize] += 1;
            }
            // Internal waste is under one block, and no block is held without a token in it.
            assert!(s.blocks.len() * pool.block_size() - s.len < pool.block_size() || s.len == 0);
            assert_eq!(s.blocks.len(), s.len.div_ceil(pool.block_size()));
        }
        assert!(owner.iter().all(|&n| n == 1), "a block is owned twice or lost");
        assert_eq!(pool.free_blocks() + pool.used_blocks(), pool.n_blocks());
        assert_eq!(pool.table_bytes(), 4 * pool.used_blocks());
    }

    /// Random allocate/append/free traffic over many sequences, with a shadow of every
    /// physical slot written through `slot()` and read back through the block tables.
    fn run_property(seed: u64, n_blocks: usize, block_size: usize, steps: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pool = BlockPool::new(n_blocks, block_size).unwrap();
        let mut shadow: Vec<Option<(SeqId, usize)>> = vec![None; pool.n_slots()];
        let mut live: Vec<SeqId> = Vec::new();
        let mut ever_used = vec![false; n_blocks];
        let (mut reuses, mut out_of_blocks) = (0usize, 0usize);
        for _ in 0..steps {
            match rng.random_range(0..10) {
                0 | 1 if live.len() < 48 => live.push(pool.add_sequence()),
                2 if !live.is_empty() => {
                    let seq = live.swap_remove(rng.random_range(0..live.len()));
                    for slot in pool.slots(seq).unwrap() {
                        assert_eq!(shadow[slot].map(|(s, _)| s), Some(seq));
                        shadow[slot] = None;
                    }
                    pool.free_sequence(seq).unwrap();
                }
                _ if !live.is_empty() => {
                    let seq = live[rng.random_range(0..live.len())];
                    let n = rng.random_range(1..=3 * block_size);
                    let (old_len, old_blocks) =
                        (pool.len(seq).unwrap(), pool.block_table(seq).unwrap().len());
                    let free_before = pool.free_blocks();
                    match pool.append(seq, n) {
                        Ok(copy) => {
                            assert_eq!(copy, None, "nothing is shared here");
                            for &b in &pool.block_table(seq).unwrap()[old_blocks..] {
                                reuses += usize::from(ever_used[b as usize]);
                                ever_used[b as usize] = true;
                            }
                            for i in old_len..old_len + n {
                                let slot = pool.slot(seq, i).unwrap();
                                assert_eq!(shadow[slot], None, "slot {slot} written twice");
                                shadow[slot] = Some((seq, i));
                            }
                        }
                        Err(PoolError::OutOfBlocks { needed, free }) => {
                            out_of_blocks += 1;
                            assert!(needed > free && free == free_before);
                            assert_eq!(pool.len(seq).unwrap(), old_len);
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                _ => live.push(pool.add_sequence()),
            }
            check_ownership(&pool);
            pool.check().unwrap();
            for &seq in &live {
                for (i, slot) in pool.slots(seq).unwrap().into_iter().enumerate() {
                    assert_eq!(shadow[slot], Some((seq, i)));
                }
            }
        }
        assert!(reuses > 0, "freed blocks were never reused");
        assert!(out_of_blocks > 0, "the pool never filled: the test is too gentle");
    }

    #[test]
    fn property_random_traffic_keeps_every_token() {
        run_property(7, 96, 4, 100_000);
    }

    #[test]
    fn property_other_block_sizes() {
        run_property(11, 40, 1, 20_000);
        run_property(13, 24, 16, 20_000);
    }
}

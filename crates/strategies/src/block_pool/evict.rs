//! Evicting tokens from a paged sequence, and what that leaves behind.
//!
//! A cache that keeps only some tokens (a window, sinks, H2O, ...) on a block pool frees memory
//! only a whole block at a time: a block is released the moment every slot written in it is
//! evicted; until then its evicted slots are *stranded*, held but holding nothing. Compaction
//! moves the survivors of the sequence's last block into stranded slots of earlier blocks
//! until the last block is empty, and releases it: memory back, at the price of copying the
//! moved tokens' K/V (the caller does the copy, from each [`Moved`]'s slots).
//!
//! Slots are named by their logical index in the sequence (block `k / block_size`, offset
//! `k % block_size`), as in the rest of the pool; a move changes a token's logical index, so a
//! caller that tracks tokens (their age, their scores) follows the moves.

use super::error::PoolError;
use super::moved::{HOLE, Moved};
use super::seq_id::SeqId;
use super::{BlockPool, Sequence};

impl BlockPool {
    /// Whether a block-table entry is a released block.
    pub fn is_hole(block: u32) -> bool {
        block == HOLE
    }

    /// Evicts logical slot `index` of `seq`. Returns whether that released a block: every
    /// slot written in a full block evicted, or the last block emptied.
    ///
    /// Fails (changing nothing) on an unknown sequence, an index past its length, or a slot
    /// already evicted.
    pub fn evict(&mut self, seq: SeqId, index: usize) -> Result<bool, PoolError> {
        let bs = self.block_size;
        let s = self.seqs.get_mut(&seq).ok_or(PoolError::UnknownSequence(seq))?;
        if index >= s.len {
            return Err(PoolError::TokenOutOfRange { seq, index, len: s.len });
        }
        if s.blocks[index / bs] == HOLE || !s.dead.insert(index) {
            return Err(PoolError::Evicted { seq, index });
        }
        let b = index / bs;
        let written = (b * bs..((b + 1) * bs).min(s.len)).collect::<Vec<_>>();
        let last = b + 1 == s.blocks.len();
        // A partly written last block is kept for the tokens still to come.
        let full = written.len() == bs;
        if !written.iter().all(|k| s.dead.contains(k)) || !(full || last) {
            return Ok(false);
        }
        let block = std::mem::replace(&mut s.blocks[b], HOLE);
        self.release(block);
        self.trim(seq)?;
        Ok(true)
    }

    /// Drops trailing released blocks (and a last block all of whose written slots are
    /// evicted), so the table ends in a held block and `len` at its end.
    fn trim(&mut self, seq: SeqId) -> Result<(), PoolError> {
        let bs = self.block_size;
        loop {
            let s = self.seqs.get_mut(&seq).ok_or(PoolError::UnknownSequence(seq))?;
            let Some(&last) = s.blocks.last() else { break };
            let start = (s.blocks.len() - 1) * bs;
            let empty = (start..s.len).all(|k| s.dead.contains(&k));
            if last != HOLE && !empty {
                break;
            }
            s.blocks.pop();
            s.len = start;
            s.dead.retain(|&k| k < start);
            if last != HOLE {
                self.release(last);
            }
        }
        Ok(())
    }

    /// Logical indices of `seq`'s live tokens, in order.
    pub fn live_indices(&self, seq: SeqId) -> Result<Vec<usize>, PoolError> {
        let s = self.get(seq)?;
        Ok((0..s.len).filter(|k| !s.dead.contains(k)).collect())
    }

    /// Live tokens of `seq`.
    pub fn live_len(&self, seq: SeqId) -> Result<usize, PoolError> {
        let s = self.get(seq)?;
        Ok(s.len - s.dead.len())
    }

    /// Evicted slots of `seq` in blocks it holds alone: memory held for nothing. (A shared
    /// block's slots evicted here may be live for its other holders.)
    pub fn stranded(&self, seq: SeqId) -> Result<usize, PoolError> {
        let s = self.get(seq)?;
        Ok(s.dead.iter().filter(|&&k| self.alone(s.blocks[k / self.block_size])).count())
    }

    /// Blocks `seq` holds alone with at least one evicted slot.
    pub fn stranded_blocks(&self, seq: SeqId) -> Result<usize, PoolError> {
        let s = self.get(seq)?;
        let mut blocks: Vec<usize> = s.dead.iter().map(|&k| k / self.block_size).collect();
        blocks.dedup();
        Ok(blocks.into_iter().filter(|&b| self.alone(s.blocks[b])).count())
    }

    /// A held block with no other holder.
    fn alone(&self, block: u32) -> bool {
        block != HOLE && self.refs[block as usize] == 1
    }

    /// Moves the survivors of `seq`'s last block into stranded slots of its earlier blocks,
    /// lowest first, and releases the emptied block, for as long as the stranded slots can take
    /// a whole last block. Returns the moves (the caller copies each token's K/V from
    /// `from_slot` to `to_slot`, in order). A sequence that shares a block is left as it is:
    /// writing into a shared block would need a copy first.
    pub fn compact(&mut self, seq: SeqId) -> Result<Vec<Moved>, PoolError> {
        let bs = self.block_size;
        let mut moves = vec![];
        loop {
            let s = self.get(seq)?;
            if s.blocks.iter().any(|&b| b != HOLE && self.refs[b as usize] > 1) {
                break;
            }
            let Some(last_block) = s.blocks.len().checked_sub(1) else { break };
            let start = last_block * bs;
            let survivors: Vec<usize> = (start..s.len).filter(|k| !s.dead.contains(k)).collect();
            let room: Vec<usize> = s
                .dead
                .iter()
                .copied()
                .filter(|&k| k < start && s.blocks[k / bs] != HOLE)
                .take(survivors.len())
                .collect();
            if survivors.is_empty() || room.len() < survivors.len() {
                break;
            }
            let slot = |k: usize| s.blocks[k / bs] as usize * bs + k % bs;
            let batch: Vec<Moved> = survivors
                .iter()
                .zip(&room)
                .map(|(&from, &to)| Moved { from, to, from_slot: slot(from), to_slot: slot(to) })
                .collect();
            let s = self.seqs.get_mut(&seq).ok_or(PoolError::UnknownSequence(seq))?;
            for m in &batch {
                s.dead.remove(&m.to);
                s.dead.insert(m.from);
            }
            moves.extend(batch);
            self.trim(seq)?;
        }
        Ok(moves)
    }

    /// Eviction's invariants for one sequence (see [`BlockPool::check`]).
    pub(super) fn check_evicted(&self, id: SeqId, s: &Sequence) -> Result<(), String> {
        let bs = self.block_size;
        if s.blocks.last() == Some(&HOLE) {
            return Err(format!("{id:?}: the table ends in a released block"));
        }
        if s.dead.last().is_some_and(|&k| k >= s.len) {
            return Err(format!("{id:?}: an evicted slot past the length {}", s.len));
        }
        for (b, &block) in s.blocks.iter().enumerate() {
            let written = b * bs..((b + 1) * bs).min(s.len);
            let all_dead = written.clone().all(|k| s.dead.contains(&k));
            if block == HOLE && !all_dead {
                return Err(format!("{id:?}: released block {b} holds a live token"));
            }
            if block != HOLE && all_dead && written.len() == bs {
                return Err(format!("{id:?}: block {b} is wholly evicted but still held"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(pool: &mut BlockPool, tokens: usize) -> SeqId {
        let s = pool.add_sequence();
        pool.append(s, tokens).unwrap();
        s
    }

    #[test]
    fn a_block_is_released_when_its_last_token_goes_and_strands_until_then() {
        let mut pool = BlockPool::new(8, 4).unwrap();
        let a = seq(&mut pool, 10); // blocks 0, 1, 2 (2 of 4 written)
        assert!(!pool.evict(a, 1).unwrap());
        assert!(!pool.evict(a, 2).unwrap());
        assert_eq!((pool.stranded(a).unwrap(), pool.stranded_blocks(a).unwrap()), (2, 1));
        assert_eq!(pool.evict(a, 1).unwrap_err(), PoolError::Evicted { seq: a, index: 1 });
        assert!(!pool.evict(a, 0).unwrap());
        assert!(pool.evict(a, 3).unwrap(), "block 0 wholly evicted: released");
        assert_eq!(pool.block_table(a).unwrap()[0], HOLE);
        assert_eq!(
            (pool.free_blocks(), pool.stranded(a).unwrap(), pool.live_len(a).unwrap()),
            (6, 0, 6)
        );
        assert_eq!(pool.slots(a).unwrap(), [4, 5, 6, 7, 8, 9]);
        assert_eq!(pool.capacity(a).unwrap(), 8);
        assert_eq!(pool.slot(a, 2).unwrap_err(), PoolError::Evicted { seq: a, index: 2 });
        // The partly written last block stays while it has room for what comes next...
        pool.evict(a, 8).unwrap();
        assert!(pool.evict(a, 9).unwrap(), "...unless nothing in it lives: then it goes");
        assert_eq!((pool.len(a).unwrap(), pool.block_table(a).unwrap().len()), (8, 2));
        pool.append(a, 1).unwrap();
        assert_eq!(pool.len(a).unwrap(), 9);
        pool.check().unwrap();
        // Forking a prefix with evicted tokens would share tokens that are gone.
        assert_eq!(pool.fork(a, 6).unwrap_err(), PoolError::ForkOfEvicted { seq: a, tokens: 6 });
        pool.free_sequence(a).unwrap();
        assert_eq!(pool.free_blocks(), 8);
        pool.check().unwrap();
    }

    #[test]
    fn compaction_fills_stranded_slots_from_the_last_block_and_frees_it() {
        let mut pool = BlockPool::new(8, 4).unwrap();
        let a = seq(&mut pool, 11); // blocks 0, 1, 2 (3 of 4 written)
        for k in [1, 2, 5] {
            pool.evict(a, k).unwrap();
        }
        // 3 stranded slots, 3 survivors in the last block: they fit.
        let moves = pool.compact(a).unwrap();
        let pairs: Vec<(usize, usize)> = moves.iter().map(|m| (m.from, m.to)).collect();
        assert_eq!(pairs, [(8, 1), (9, 2), (10, 5)]);
        assert_eq!((moves[0].from_slot, moves[0].to_slot), (8, 1));
        assert_eq!(pool.block_table(a).unwrap(), &[0, 1]);
        assert_eq!(
            (pool.len(a).unwrap(), pool.live_len(a).unwrap(), pool.stranded(a).unwrap()),
            (8, 8, 0)
        );
        assert_eq!(pool.free_blocks(), 6);
        pool.check().unwrap();
        // Not enough room for the last block's survivors: nothing moves.
        let b = seq(&mut pool, 8);
        pool.evict(b, 0).unwrap();
        assert_eq!(pool.compact(b).unwrap(), []);
        assert_eq!(pool.stranded(b).unwrap(), 1);
        // A sequence sharing a block is not compacted.
        let c = pool.fork(b, 4).err();
        assert!(c.is_some(), "its first block lost a token: no fork");
        pool.check().unwrap();
    }
}

//! The block pool's error: a leaf, so the pool and its eviction reach down for it.

use thiserror::Error;

use super::seq_id::SeqId;

/// Why a pool operation failed. Every failing operation leaves the pool unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PoolError {
    #[error("a block pool needs at least one block")]
    NoBlocks,
    #[error("block size must be at least one token")]
    ZeroBlockSize,
    #[error("pool of {n_blocks} blocks x {block_size} slots is too large to index")]
    TooLarge { n_blocks: usize, block_size: usize },
    #[error("KV block pool exhausted: {needed} blocks needed, {free} free")]
    OutOfBlocks { needed: usize, free: usize },
    #[error("unknown sequence {0:?} (never added, or already freed)")]
    UnknownSequence(SeqId),
    #[error("token {index} is out of range for sequence {seq:?} of {len} tokens")]
    TokenOutOfRange { seq: SeqId, index: usize, len: usize },
    #[error("cannot fork {tokens} tokens of sequence {seq:?}, which holds {len}")]
    ForkTooLong { seq: SeqId, tokens: usize, len: usize },
    #[error("cannot fork {tokens} tokens of sequence {seq:?}: some of them were evicted")]
    ForkOfEvicted { seq: SeqId, tokens: usize },
    #[error("slot {index} of sequence {seq:?} was already evicted")]
    Evicted { seq: SeqId, index: usize },
}

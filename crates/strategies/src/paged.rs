//! `paged`: vLLM's PagedAttention memory management. One pool of `n_blocks × block_size` token
//! slots per layer is allocated up front (vLLM's CacheEngine); each sequence owns a block table,
//! gets blocks on demand as it grows, and returns them when it finishes. Attention reads K/V
//! through the block table (a gather), so a sequence's tokens need not be contiguous.
//!
//! Sequences in one batch may have different lengths (a serving batch): attention then reads
//! each row padded to the longest, with the padding hidden by the mask.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{
    AttentionMask, CacheError, KeyPositions, KvCache, KvMemory, KvView, RotaryEncoding,
};

use crate::block_pool::{BlockPool, PoolError, SeqId};
use crate::entry::{Entry, Holds, Param, no_check};
use crate::layout::KvLayout;
use crate::slot_runs::runs;
use crate::store::{SlotStore, read_rows, round_queries, to_slots};

pub(crate) const ENTRY: Entry = Entry {
    name: "paged",
    summary: "block pool + block tables, allocated on demand (vLLM)",
    parameters: &[Param { key: "block_size", get: |s| s.block_size, default: None, min: 1 }],
    check: no_check,
    holds: Holds::Paged,
};

pub struct PagedCache<B: Backend> {
    layout: KvLayout,
    pool: BlockPool,
    store: Box<dyn SlotStore<B>>,
    /// One sequence per batch row; `None` once freed.
    rows: Vec<Option<SeqId>>,
    /// Per row, the slots of this forward's new tokens (set by `reserve`, used by every layer).
    new_slots: Vec<Vec<usize>>,
    /// The new tokens per row `reserve` allocated for the forward under way.
    reserved: Option<usize>,
}

impl<B: Backend> std::fmt::Debug for PagedCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagedCache")
            .field("layout", &self.layout)
            .field("pool", &self.pool)
            .finish()
    }
}

fn pool_error(e: PoolError) -> CacheError {
    match e {
        PoolError::OutOfBlocks { needed, free } => CacheError::OutOfBlocks { needed, free },
        other => CacheError::Invalid(other.to_string()),
    }
}

impl<B: Backend> PagedCache<B> {
    /// `store` must hold `n_blocks * block_size` slots.
    pub fn new(
        layout: KvLayout,
        n_blocks: usize,
        block_size: usize,
        store: Box<dyn SlotStore<B>>,
    ) -> Result<Self, CacheError> {
        let mut pool = BlockPool::new(n_blocks, block_size).map_err(pool_error)?;
        let rows = (0..layout.batch).map(|_| Some(pool.add_sequence())).collect();
        Ok(Self {
            layout,
            pool,
            store,
            rows,
            new_slots: vec![Vec::new(); layout.batch],
            reserved: None,
        })
    }

    /// Blocks for `batch` sequences of up to `max_seq` tokens each.
    pub fn blocks_for(batch: usize, max_seq: usize, block_size: usize) -> usize {
        batch * max_seq.div_ceil(block_size)
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Tokens held by each row.
    pub fn row_lens(&self) -> Vec<usize> {
        self.rows.iter().map(|r| r.map_or(0, |s| self.pool.len(s).unwrap_or(0))).collect()
    }

    /// Finishes row `row`: its blocks go back to the pool; the row restarts empty.
    pub fn free_row(&mut self, row: usize) -> Result<(), CacheError> {
        if let Some(seq) = self.rows[row].take() {
            self.pool.free_sequence(seq).map_err(pool_error)?;
        }
        self.rows[row] = Some(self.pool.add_sequence());
        Ok(())
    }

    fn seq(&self, row: usize) -> SeqId {
        self.rows[row].expect("every row holds a sequence between calls")
    }

    /// Allocates blocks for `t` new tokens in every row (all or nothing) and records their slots.
    fn allocate(&mut self, t: usize) -> Result<(), CacheError> {
        let needed: usize = (0..self.layout.batch)
            .map(|r| self.pool.blocks_needed(self.pool.len(self.seq(r)).unwrap_or(0), t))
            .sum();
        if needed > self.pool.free_blocks() {
            return Err(CacheError::OutOfBlocks { needed, free: self.pool.free_blocks() });
        }
        for r in 0..self.layout.batch {
            let seq = self.seq(r);
            let start = self.pool.len(seq).map_err(pool_error)?;
            self.pool.append(seq, t).map_err(pool_error)?;
            self.new_slots[r] = (start..start + t)
                .map(|i| self.pool.slot(seq, i))
                .collect::<Result<_, _>>()
                .map_err(pool_error)?;
        }
        Ok(())
    }
}

impl<B: Backend> KvCache<B> for PagedCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.row_lens().into_iter().min().unwrap_or(0)..total
    }

    fn query_start(&self) -> Vec<usize> {
        self.row_lens()
    }

    fn key_positions(&self, _layer: usize) -> KeyPositions {
        KeyPositions::Ordered
    }

    fn round_query(&self, _layer: usize, q: Tensor<B, 4>) -> Tensor<B, 4> {
        round_queries(self.store.as_ref(), q)
    }

    fn reserve(&mut self, new_tokens: usize) -> Result<(), CacheError> {
        self.allocate(new_tokens)?;
        self.reserved = Some(new_tokens);
        Ok(())
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let t = k.dims()[2];
        // A caller driving `update` by hand, without the model's `reserve`, allocates here.
        if layer == 0 && self.reserved != Some(t) {
            self.allocate(t)?;
            self.reserved = Some(t);
        }
        let lens = self.row_lens(); // after this forward's tokens
        let starts: Vec<usize> = lens.iter().map(|l| l - t).collect();
        let k = rope.apply(k, &starts);
        let written: Vec<usize> = self.new_slots.iter().flatten().copied().collect();
        self.store.write(layer, &written, to_slots(k), to_slots(v));
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let tables: Vec<Vec<usize>> = (0..self.layout.batch)
            .map(|r| self.pool.slots(self.seq(r)))
            .collect::<Result<_, _>>()
            .map_err(pool_error)?;
        let heads = [self.layout.n_kv_heads, self.layout.head_dim];
        Ok(read_tables(self.store.as_ref(), layer, &tables, new_tokens, heads))
    }

    fn commit(&mut self, _new_tokens: usize) {
        self.reserved = None;
    }

    fn reset(&mut self) {
        self.reserved = None;
        for r in 0..self.layout.batch {
            self.free_row(r).expect("rows hold known sequences");
        }
    }

    fn memory(&self) -> KvMemory {
        let lens = self.row_lens();
        let live: usize = lens.iter().sum();
        let m = self.store.memory(live);
        KvMemory {
            allocated_bytes: m.allocated_bytes,
            live_bytes: m.live_bytes,
            metadata_bytes: m.metadata_bytes + self.pool.table_bytes(),
            tokens: lens.into_iter().max().unwrap_or(0),
        }
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        let l = &self.layout;
        Some([1, l.n_kv_heads, self.pool.n_slots(), l.head_dim])
    }
}

/// What attention reads for a batch whose rows hold their tokens at the slots `tables[r]`
/// (block tables expanded to slots): the pool's blocks in place (runs of consecutive slots), or
/// where the store cannot hand them, every row gathered through its table and padded to the
/// longest row; either way the keys past a shorter row's own are hidden. `t` new tokens at
/// the end of every row.
///
/// # Shapes
/// - k, v of the view: `[tables.len(), n_kv, longest, head_dim]`
/// - mask: none when every row has the same length, else `[tables.len(), t, longest]`
pub(crate) fn read_tables<B: Backend>(
    store: &dyn SlotStore<B>,
    layer: usize,
    tables: &[Vec<usize>],
    t: usize,
    [n_kv, head_dim]: [usize; 2],
) -> KvView<B> {
    let b = tables.len();
    let lens: Vec<usize> = tables.iter().map(Vec::len).collect();
    let longest = lens.iter().copied().max().unwrap_or(0);
    let rows: Vec<Vec<Range<usize>>> =
        tables.iter().map(|slots| runs(slots).iter().map(|r| r.slots()).collect()).collect();
    let kv = read_rows(store, layer, &rows, n_kv, head_dim);
    let view = KvView { kv, mask: AttentionMask::CausalEnd };
    let mask = if lens.iter().all(|&l| l == longest) {
        AttentionMask::CausalEnd
    } else {
        // Query i of row r (at index len_r - t + i) sees keys 0..=len_r - t + i.
        let hidden: Vec<bool> = lens
            .iter()
            .flat_map(|&len| (0..t).flat_map(move |i| (0..longest).map(move |j| j > len - t + i)))
            .collect();
        AttentionMask::Hidden(Tensor::from_data(
            TensorData::new(hidden, [b, t, longest]),
            &view.device(),
        ))
    };
    KvView { mask, ..view }
}

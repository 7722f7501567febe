//! K/V as a cache keeps them: per batch row, runs of consecutive slots of token-major buffers
//! (a slot store's chunks, a paged pool's blocks), handed to attention without being copied.
//!
//! Why: a cache whose tokens do not sit in one tensor (chunks of 128 slots, blocks anywhere in
//! a pool) otherwise builds a dense `[batch, n_kv, keys, head_dim]` copy for every layer of
//! every step: at 4,096 tokens of SmolLM2 that copy is 94 MB a decode step, a fifth of the
//! weights' bytes, and for paged caches it is the gather that made paging lose to reserved
//! memory. A fused attention kernel walks the runs in place; any other reader asks for
//! [`KvRuns::to_dense`], which builds exactly the tensor the cache used to.

use burn::prelude::*;

/// `len` consecutive slots `start..start + len` of one buffer.
#[derive(Debug, Clone)]
pub struct SlotRun<B: Backend> {
    /// `[slots, n_kv, head_dim]`: keys (rotated), the whole buffer the run lies in.
    pub k: Tensor<B, 3>,
    /// `[slots, n_kv, head_dim]`: values, the same slots.
    pub v: Tensor<B, 3>,
    pub start: usize,
    pub len: usize,
}

/// The keys and values attention reads for one layer, in place.
#[derive(Debug, Clone)]
pub struct KvRuns<B: Backend> {
    /// Per batch row, its keys in order: key `j` of the row is the `j`-th slot of the runs laid
    /// end to end. Rows may hold different numbers of keys (a ragged serving batch); the view's
    /// mask then hides every key past a row's own.
    pub rows: Vec<Vec<SlotRun<B>>>,
    pub n_kv: usize,
    pub head_dim: usize,
}

impl<B: Backend> KvRuns<B> {
    /// Keys of row `row`.
    pub(crate) fn row_len(&self, row: usize) -> usize {
        self.rows[row].iter().map(|r| r.len).sum()
    }

    /// The view's key count: the longest row.
    pub fn keys(&self) -> usize {
        (0..self.rows.len()).map(|r| self.row_len(r)).max().unwrap_or(0)
    }

    pub fn device(&self) -> B::Device {
        let any = self.rows.iter().flatten().next().expect("a view holds at least one key");
        any.k.device()
    }

    /// The dense keys and values, shorter rows padded with zeros (which the mask hides).
    ///
    /// # Shapes
    /// - output: `[batch, n_kv, keys, head_dim]` each
    pub fn to_dense(&self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        (self.stitch(|r| &r.k), self.stitch(|r| &r.v))
    }

    /// One side (keys or values), every row's runs sliced and concatenated: the very ops a
    /// cache read through its slot store before runs existed (one slice, no copy, for a single
    /// run).
    fn stitch(&self, side: impl Fn(&SlotRun<B>) -> &Tensor<B, 3>) -> Tensor<B, 4> {
        let (b, s, h, d) = (self.rows.len(), self.keys(), self.n_kv, self.head_dim);
        let mut parts: Vec<Tensor<B, 3>> = Vec::new();
        let device = self.device();
        for (r, runs) in self.rows.iter().enumerate() {
            for run in runs {
                parts.push(side(run).clone().slice([run.start..run.start + run.len, 0..h, 0..d]));
            }
            let short = s - self.row_len(r);
            if short > 0 {
                parts.push(Tensor::zeros([short, h, d], &device));
            }
        }
        // [b · s, h, d] -> [b, h, s, d]
        let flat = match parts.len() {
            1 => parts.into_iter().next().expect("one part"),
            _ => Tensor::cat(parts, 0),
        };
        flat.reshape([b, s, h, d]).swap_dims(1, 2)
    }
}

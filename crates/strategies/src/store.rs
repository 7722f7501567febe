//! Where strategies keep K/V: a pool of token slots per layer. Length and management strategies
//! (window, sink, paged, the static full cache) decide *which slot* holds which token; a store
//! decides *how* a slot's keys and values are encoded (f32 here, int8/int4 in `quant`). That split
//! is what lets bits wrap any storage.

use std::ops::Range;

use burn::prelude::*;

use kvlab_model::{KvData, KvRuns, SlotRun};

use crate::chunked::Chunked;

/// A slot store: per layer, `n_slots` slots of `[n_kv, head_dim]` keys and as many values.
pub trait SlotStore<B: Backend> {
    /// Writes token `i` of `k`/`v` into slot `slots[i]`.
    ///
    /// # Shapes
    /// - k, v: `[slots.len(), n_kv, head_dim]`
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>);

    /// Reads `slots` in order, decoded to f32: `[slots.len(), n_kv, head_dim]` each.
    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>);

    /// Reads the slot ranges in order, decoded to f32: `[total slots, n_kv, head_dim]` each.
    /// The same as `read` of every slot of every range; a store may do it without the slot
    /// list (whose length is the context).
    fn read_ranges(&self, layer: usize, ranges: &[Range<usize>]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let slots: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
        self.read(layer, &slots)
    }

    /// The slot ranges as runs of the store's own f32 buffers, uncopied, per range in order
    /// (a range may span buffers): what a fused attention kernel reads in place. `None` where
    /// slots are not kept as f32 (int codes are decoded by `read`).
    fn runs(&self, _layer: usize, _ranges: &[Range<usize>]) -> Option<Vec<Vec<SlotRun<B>>>> {
        None
    }

    /// Query head vectors as attention over this store's keys sees them: unchanged, unless the
    /// store rounds them in its keys' basis ([`crate::query_rounding`]). A store that changes
    /// the keys' basis (rotation, channel order) passes the queries through the same change.
    ///
    /// # Shapes
    /// - q, output: `[n, heads, head_dim]`
    fn round_query(&self, q: Tensor<B, 3>) -> Tensor<B, 3> {
        q
    }

    /// Whether [`SlotStore::round_query`] changes queries: when not, a store that changes basis
    /// passes them by untouched (a rotation there and back is not exact in f32).
    fn rounds_queries(&self) -> bool {
        false
    }

    /// Copies slots `from..from + n` onto `to..to + n` (overlap allowed): the shift window's roll.
    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize);

    /// Bytes allocated for all slots of all layers, and of that, for `live_slots` slots;
    /// plus metadata bytes (scales, zero points) for the whole store.
    fn memory(&self, live_slots: usize) -> StoreMemory;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreMemory {
    pub allocated_bytes: usize,
    pub live_bytes: usize,
    pub metadata_bytes: usize,
}

/// [`SlotStore::round_query`] of a layer's queries, `[batch, heads, t, head_dim]` in and out:
/// what a cache over `store` answers [`kvlab_model::KvCache::round_query`] with.
pub(crate) fn round_queries<B: Backend>(store: &dyn SlotStore<B>, q: Tensor<B, 4>) -> Tensor<B, 4> {
    if !store.rounds_queries() {
        return q;
    }
    let [b, h, t, d] = q.dims();
    store.round_query(q.reshape([b * h * t, 1, d])).reshape([b, h, t, d])
}

/// Full-precision slots: per layer, `n_slots` slots of `[n_kv, head_dim]` f32 keys and as
/// many values, allocated once, in [`Chunked`] buffers so a write costs O(written slots).
#[derive(Debug, Clone)]
pub struct F32Store<B: Backend> {
    /// Per layer: keys and values, `[n_slots, n_kv, head_dim]` each.
    layers: Vec<(Chunked<B>, Chunked<B>)>,
    n_slots: usize,
    n_kv: usize,
    head_dim: usize,
}

impl<B: Backend> F32Store<B> {
    pub fn new(
        n_layers: usize,
        n_slots: usize,
        n_kv: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Self {
        let make = || {
            Chunked::new(n_slots, [n_kv, head_dim], |rows| {
                Tensor::zeros([rows, n_kv, head_dim], device)
            })
        };
        let layers = (0..n_layers).map(|_| (make(), make())).collect();
        Self { layers, n_slots, n_kv, head_dim }
    }
}

impl<B: Backend> SlotStore<B> for F32Store<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let (bk, bv) = &mut self.layers[layer];
        bk.assign(slots, k);
        bv.assign(slots, v);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = &self.layers[layer];
        (k.gather(slots), v.gather(slots))
    }

    fn read_ranges(&self, layer: usize, ranges: &[Range<usize>]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = &self.layers[layer];
        (k.gather_ranges(ranges), v.gather_ranges(ranges))
    }

    fn runs(&self, layer: usize, ranges: &[Range<usize>]) -> Option<Vec<Vec<SlotRun<B>>>> {
        let (k, v) = &self.layers[layer];
        let runs = k.spans(ranges).into_iter().zip(v.spans(ranges)).map(|(ks, vs)| {
            ks.into_iter()
                .zip(vs)
                .map(|((k, start, len), (v, _, _))| SlotRun { k, v, start, len })
                .collect()
        });
        Some(runs.collect())
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        let (bk, bv) = &mut self.layers[layer];
        bk.copy_rows(from, to, n);
        bv.copy_rows(from, to, n);
    }

    fn memory(&self, live_slots: usize) -> StoreMemory {
        let per_slot = 2 * self.layers.len() * self.n_kv * self.head_dim * crate::layout::F32_BYTES;
        StoreMemory {
            allocated_bytes: per_slot * self.n_slots,
            live_bytes: per_slot * live_slots,
            metadata_bytes: 0,
        }
    }
}

/// What attention reads when batch row `r` holds its keys, in order, at the slot ranges
/// `rows[r]`: the store's buffers in place where it has runs to hand, else read (decoded) into
/// dense `[batch, n_kv, longest, head_dim]` tensors, a shorter row padded with copies of its
/// first slot (any readable slot would do: the mask of a ragged batch hides them).
pub(crate) fn read_rows<B: Backend>(
    store: &dyn SlotStore<B>,
    layer: usize,
    rows: &[Vec<Range<usize>>],
    n_kv: usize,
    head_dim: usize,
) -> KvData<B> {
    let flat: Vec<Range<usize>> = rows.iter().flatten().cloned().collect();
    if let Some(runs) = store.runs(layer, &flat) {
        let mut runs = runs.into_iter();
        let rows = rows.iter().map(|r| runs.by_ref().take(r.len()).flatten().collect()).collect();
        return KvData::Runs(KvRuns { rows, n_kv, head_dim });
    }
    let len = |r: &Vec<Range<usize>>| r.iter().map(|x| x.len()).sum::<usize>();
    let longest = rows.iter().map(len).max().unwrap_or(0);
    let mut padded = Vec::with_capacity(flat.len());
    for r in rows {
        padded.extend(r.iter().cloned());
        let first = r.first().map_or(0, |x| x.start);
        padded.extend(std::iter::repeat_n(first..first + 1, longest - len(r)));
    }
    let (k, v) = store.read_ranges(layer, &padded);
    KvData::Dense { k: from_slots(k, rows.len()), v: from_slots(v, rows.len()) }
}

/// `[b, n_kv, t, d]` (attention's layout) to token-major `[b * t, n_kv, d]` (a slot per token).
pub(crate) fn to_slots<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b * t, h, d])
}

/// Token-major `[b * s, n_kv, d]` back to attention's `[b, n_kv, s, d]`.
pub fn from_slots<B: Backend>(x: Tensor<B, 3>, batch: usize) -> Tensor<B, 4> {
    let [n, h, d] = x.dims();
    x.reshape([batch, n / batch, h, d]).swap_dims(1, 2)
}

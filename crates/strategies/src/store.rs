//! Where strategies keep K/V: a pool of token slots per layer. Length and management strategies
//! (window, sink, paged, the static full cache) decide *which slot* holds which token; a store
//! decides *how* a slot's keys and values are encoded (f32 here, int8/int4 in `quant`). That split
//! is what lets bits wrap any storage.

use burn::prelude::*;

/// A slot store: per layer, `n_slots` slots of `[n_kv, head_dim]` keys and as many values.
pub trait SlotStore<B: Backend> {
    /// Writes token `i` of `k`/`v` into slot `slots[i]`.
    ///
    /// # Shapes
    /// - k, v: `[slots.len(), n_kv, head_dim]`
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>);

    /// Reads `slots` in order, decoded to f32: `[slots.len(), n_kv, head_dim]` each.
    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>);

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

/// Consecutive slot runs: `[(first_slot, first_token, len)]`, so a write or read touches each run
/// with one slice instead of one op per token.
pub fn runs(slots: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &s) in slots.iter().enumerate() {
        match out.last_mut() {
            Some((start, _, len)) if *start + *len == s => *len += 1,
            _ => out.push((s, i, 1)),
        }
    }
    out
}

/// Full-precision slots: one `[n_slots, n_kv, head_dim]` f32 tensor for K and one for V per
/// layer, allocated once. Writes are in place: each buffer is taken out of `self` for
/// `slice_assign`, so no second handle forces burn to copy it.
#[derive(Debug, Clone)]
pub struct F32Store<B: Backend> {
    /// Per layer: `[n_slots, n_kv, head_dim]` keys and values.
    layers: Vec<Option<(Tensor<B, 3>, Tensor<B, 3>)>>,
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
        let shape = [n_slots, n_kv, head_dim];
        let layers = (0..n_layers)
            .map(|_| Some((Tensor::zeros(shape, device), Tensor::zeros(shape, device))))
            .collect();
        Self { layers, n_slots, n_kv, head_dim }
    }

    fn buffers(&self, layer: usize) -> &(Tensor<B, 3>, Tensor<B, 3>) {
        self.layers[layer].as_ref().expect("store buffers are only taken during a write")
    }
}

/// Reads `slots` of one `[n_slots, n_kv, d]` buffer: a slice for one run, a gather otherwise.
pub fn read_slots<B: Backend>(buf: &Tensor<B, 3>, slots: &[usize]) -> Tensor<B, 3> {
    let [_, h, d] = buf.dims();
    match runs(slots).as_slice() {
        [(start, _, len)] => buf.clone().slice([*start..start + len, 0..h, 0..d]),
        _ => {
            let idx: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
            let idx =
                Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [slots.len()]), &buf.device());
            buf.clone().select(0, idx)
        }
    }
}

/// Writes `values` (`[slots.len(), n_kv, d]`) into `buf` at `slots`, one slice per run.
pub fn write_slots<B: Backend>(
    buf: Tensor<B, 3>,
    slots: &[usize],
    values: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let [_, h, d] = buf.dims();
    let mut buf = buf;
    for (slot, token, len) in runs(slots) {
        let part = values.clone().slice([token..token + len, 0..h, 0..d]);
        buf = buf.slice_assign([slot..slot + len, 0..h, 0..d], part);
    }
    buf
}

impl<B: Backend> SlotStore<B> for F32Store<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let (bk, bv) = self.layers[layer].take().expect("store buffers present");
        self.layers[layer] = Some((write_slots(bk, slots, k), write_slots(bv, slots, v)));
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = self.buffers(layer);
        (read_slots(k, slots), read_slots(v, slots))
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        let (bk, bv) = self.layers[layer].take().expect("store buffers present");
        let (h, d) = (self.n_kv, self.head_dim);
        let shift = |buf: Tensor<B, 3>| {
            let moved = buf.clone().slice([from..from + n, 0..h, 0..d]);
            buf.slice_assign([to..to + n, 0..h, 0..d], moved)
        };
        self.layers[layer] = Some((shift(bk), shift(bv)));
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

/// `[b, n_kv, t, d]` (attention's layout) to token-major `[b * t, n_kv, d]` (a slot per token).
pub fn to_slots<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b * t, h, d])
}

/// Token-major `[b * s, n_kv, d]` back to attention's `[b, n_kv, s, d]`.
pub fn from_slots<B: Backend>(x: Tensor<B, 3>, batch: usize) -> Tensor<B, 4> {
    let [n, h, d] = x.dims();
    x.reshape([batch, n / batch, h, d]).swap_dims(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_coalesce_consecutive_slots() {
        assert_eq!(runs(&[3, 4, 5, 0, 1, 9]), vec![(3, 0, 3), (0, 3, 2), (9, 5, 1)]);
        assert!(runs(&[]).is_empty());
    }
}

//! [`LowRankStore`]: keys and values held as `rank`-dim latents in an inner store (f32 or
//! codes), projected on each head's [`LowRankBases`] when written and reconstructed when read.
//!
//! Keys reach it unrotated: RoPE does not commute with a fixed projection, so the cache that
//! holds a low-rank store rotates the reconstructed keys when attention reads them (Palu
//! applies RoPE after reconstruction for the same reason).
//!
//! Bytes: the inner store's (latents: `L · S · H · r` per side, in its encoding) plus the
//! bases, `L · 2 · H · D · r` f32 (and biases, `L · 2 · H · D` f32, where the model has them),
//! held once and counted in metadata.

use burn::prelude::*;

use super::basis::LowRankBases;
use crate::layout::F32_BYTES;
use crate::store::{SlotStore, StoreMemory};

/// One side's basis on the device.
#[derive(Debug, Clone)]
struct SideBasis<B: Backend> {
    /// `[n_kv, head_dim, rank]`
    basis: Tensor<B, 3>,
    /// `[1, n_kv, head_dim]`
    bias: Option<Tensor<B, 3>>,
}

impl<B: Backend> SideBasis<B> {
    fn new(basis: &[f32], bias: Option<&Vec<f32>>, shape: [usize; 3], device: &B::Device) -> Self {
        let [n_kv, d, _] = shape;
        Self {
            basis: Tensor::from_data(TensorData::new(basis.to_vec(), shape), device),
            bias: bias.map(|b| Tensor::from_data(TensorData::new(b.clone(), [1, n_kv, d]), device)),
        }
    }

    /// `[n, n_kv, head_dim]` to the latent `[n, n_kv, rank]`.
    fn project(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = match &self.bias {
            Some(b) => x - b.clone(),
            None => x,
        };
        // [n_kv, n, d] · [n_kv, d, r] = [n_kv, n, r]
        x.swap_dims(0, 1).matmul(self.basis.clone()).swap_dims(0, 1)
    }

    /// The latent `[n, n_kv, rank]` back to `[n, n_kv, head_dim]`.
    fn reconstruct(&self, z: Tensor<B, 3>) -> Tensor<B, 3> {
        // [n_kv, n, r] · [n_kv, r, d] = [n_kv, n, d]
        let x = z.swap_dims(0, 1).matmul(self.basis.clone().swap_dims(1, 2)).swap_dims(0, 1);
        match &self.bias {
            Some(b) => x + b.clone(),
            None => x,
        }
    }

    fn bytes(&self) -> usize {
        let count = |t: &Tensor<B, 3>| t.shape().num_elements() * F32_BYTES;
        count(&self.basis) + self.bias.as_ref().map_or(0, count)
    }
}

pub struct LowRankStore<B: Backend> {
    /// Holds `[n_slots, n_kv, rank]` latents per layer.
    inner: Box<dyn SlotStore<B>>,
    /// Per layer: keys' and values' bases.
    layers: Vec<(SideBasis<B>, SideBasis<B>)>,
}

impl<B: Backend> LowRankStore<B> {
    /// `inner` must hold `[n_kv, bases.rank]` per slot in each of `bases.layers`.
    pub fn new(inner: Box<dyn SlotStore<B>>, bases: &LowRankBases, device: &B::Device) -> Self {
        let shape = [bases.n_kv, bases.head_dim, bases.rank];
        let layers = bases
            .layers
            .iter()
            .map(|l| {
                (
                    SideBasis::new(&l.k, l.k_bias.as_ref(), shape, device),
                    SideBasis::new(&l.v, l.v_bias.as_ref(), shape, device),
                )
            })
            .collect();
        Self { inner, layers }
    }
}

impl<B: Backend> std::fmt::Debug for LowRankStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LowRankStore").field("layers", &self.layers.len()).finish()
    }
}

impl<B: Backend> SlotStore<B> for LowRankStore<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let (kb, vb) = &self.layers[layer];
        let (zk, zv) = (kb.project(k), vb.project(v));
        self.inner.write(layer, slots, zk, zv);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (kb, vb) = &self.layers[layer];
        let (zk, zv) = self.inner.read(layer, slots);
        (kb.reconstruct(zk), vb.reconstruct(zv))
    }

    fn read_ranges(
        &self,
        layer: usize,
        ranges: &[std::ops::Range<usize>],
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (kb, vb) = &self.layers[layer];
        let (zk, zv) = self.inner.read_ranges(layer, ranges);
        (kb.reconstruct(zk), vb.reconstruct(zv))
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        self.inner.move_slots(layer, from, to, n);
    }

    fn memory(&self, live_slots: usize) -> StoreMemory {
        let inner = self.inner.memory(live_slots);
        let bases: usize = self.layers.iter().map(|(k, v)| k.bytes() + v.bytes()).sum();
        StoreMemory { metadata_bytes: inner.metadata_bytes + bases, ..inner }
    }
}

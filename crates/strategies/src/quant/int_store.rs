//! [`QuantStore`]: int8/int4/int3/int2 slots behind the [`SlotStore`] seam, so any strategy can hold
//! quantized K/V.

use burn::prelude::*;

use super::config::{Encoding, QuantConfig, QuantError};
use super::residual::Residual;
use super::side_plane::SidePlane;
use crate::store::{SlotStore, StoreMemory};

#[derive(Debug)]
struct Layer<B: Backend> {
    k: SidePlane<B>,
    v: SidePlane<B>,
    residual: Option<Residual<B>>,
}

/// Quantized slots: per layer a key [`Plane`] and a value plane (packed `u8` codes + f32
/// scales/zero points on the device), optional f32 staging for incomplete per-channel groups,
/// and an optional f32 residual ring of the most recent writes.
#[derive(Debug)]
pub struct QuantStore<B: Backend> {
    config: QuantConfig,
    layers: Vec<Layer<B>>,
    n_slots: usize,
    n_kv: usize,
    head_dim: usize,
}

impl<B: Backend> QuantStore<B> {
    /// A store of `n_slots` slots of `[n_kv, head_dim]` per layer. Fails on bits not in {8, 4, 3, 2},
    /// a zero group size, per-token groups not dividing `head_dim`, a `head_dim` not a whole number of packed words,
    /// or per-channel groups not dividing `n_slots` (call [`QuantConfig::check_alignment`]
    /// too, with the strategy's slots per row or block size).
    pub fn new(
        config: QuantConfig,
        n_layers: usize,
        n_slots: usize,
        n_kv: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Result<Self, QuantError> {
        config.validate(head_dim)?;
        config.check_alignment(n_slots)?;
        let shape = [n_slots, n_kv, head_dim];
        let layers = (0..n_layers)
            .map(|_| Layer {
                k: SidePlane::new(&config.keys, shape, device),
                v: SidePlane::new(&config.values, shape, device),
                residual: (config.residual > 0)
                    .then(|| Residual::new(config.residual, n_kv, head_dim, device)),
            })
            .collect();
        Ok(Self { config, layers, n_slots, n_kv, head_dim })
    }

    pub fn config(&self) -> &QuantConfig {
        &self.config
    }

    /// The store's full byte breakdown, summed over layers from the tensors it holds.
    pub fn breakdown(&self) -> QuantMemory {
        let mut m = QuantMemory::default();
        for l in &self.layers {
            m.code_bytes += l.k.code_bytes() + l.v.code_bytes();
            m.metadata_bytes += l.k.metadata_bytes() + l.v.metadata_bytes();
            m.staging_bytes += l.k.staging_bytes() + l.v.staging_bytes();
            m.pending_groups += l.k.pending_groups() + l.v.pending_groups();
            if let Some(r) = &l.residual {
                m.residual_bytes += r.bytes();
                m.residual_slots += r.occupied();
            }
        }
        m
    }

    /// Bytes of one slot's values in all layers (keys and values): packed codes, or f32 for
    /// an exact side.
    pub(crate) fn code_bytes_per_slot(&self) -> usize {
        let values = self.n_kv * self.head_dim;
        let side = |e: &Encoding| {
            if e.is_exact() {
                values * crate::layout::F32_BYTES
            } else {
                e.codec().code_bytes(values)
            }
        };
        self.layers.len() * (side(&self.config.keys) + side(&self.config.values))
    }
}

/// Where a [`QuantStore`]'s bytes are. Everything here is a tensor really allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuantMemory {
    /// Packed `u8` codes of every slot (allocated up front).
    pub code_bytes: usize,
    /// f32 scales and zero points (allocated up front).
    pub metadata_bytes: usize,
    /// f32 staging of pending per-channel groups (grows and shrinks with them).
    pub staging_bytes: usize,
    pub pending_groups: usize,
    /// f32 residual rings, keys and values (allocated up front).
    pub residual_bytes: usize,
    /// Ring entries holding a slot, summed over layers.
    pub residual_slots: usize,
}

impl QuantMemory {
    /// Every byte the store holds: codes + scales/zeros + staging + residual.
    pub fn total(&self) -> usize {
        self.code_bytes + self.metadata_bytes + self.staging_bytes + self.residual_bytes
    }
}

impl<B: Backend> SlotStore<B> for QuantStore<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let l = &mut self.layers[layer];
        if let Some(r) = &mut l.residual {
            r.write(slots, k.clone(), v.clone());
        }
        l.k.write(slots, k);
        l.v.write(slots, v);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let l = &self.layers[layer];
        let (k, v) = (l.k.read(slots), l.v.read(slots));
        match &l.residual {
            Some(r) => r.overlay(slots, k, v),
            None => (k, v),
        }
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        let l = &mut self.layers[layer];
        l.k.move_slots(from, to, n);
        l.v.move_slots(from, to, n);
        if let Some(r) = &mut l.residual {
            r.move_slots(from, to, n);
        }
    }

    /// `allocated_bytes` = codes + staging + residual (the K/V data in any encoding),
    /// `metadata_bytes` = scales + zero points; their sum is [`QuantMemory::total`].
    /// `live_bytes` = codes of `live_slots` slots + staging + occupied residual entries.
    fn memory(&self, live_slots: usize) -> StoreMemory {
        let m = self.breakdown();
        let residual_live =
            m.residual_slots * 2 * self.n_kv * self.head_dim * crate::layout::F32_BYTES;
        StoreMemory {
            allocated_bytes: m.code_bytes + m.staging_bytes + m.residual_bytes,
            live_bytes: live_slots.min(self.n_slots) * self.code_bytes_per_slot()
                + m.staging_bytes
                + residual_live,
            metadata_bytes: m.metadata_bytes,
        }
    }
}

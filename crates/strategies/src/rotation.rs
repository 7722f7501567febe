//! Hadamard rotation of K/V before a store encodes them (QuaRot / SpinQuant; llama.cpp turns it
//! on for quantized cache types: `attn_rot_k = attn_rot_v = 1`).
//!
//! An outlier channel takes a whole quantization group's range; rotating each head vector by
//! an orthonormal Hadamard matrix `H` spreads it over every channel of the group first. The
//! store holds `x·H` and reads back `x̃·Hᵀ`: with f32 storage that is `x` again (up to rounding),
//! so attention sees what it would without the rotation — which is the same as rotating the
//! queries by `H` and attention's output back by `Hᵀ`, without touching the model. Quantized,
//! the rounding error is made in the rotated basis and spread over the channels.
//!
//! Bytes: no stored byte per token changes; the one `head_dim × head_dim` f32 matrix a store
//! keeps is counted in its metadata.

use std::ops::Range;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::spec::SpecError;
use crate::store::{SlotStore, StoreMemory};

/// Whether a store rotates head vectors before encoding them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rotation {
    #[default]
    None,
    /// The orthonormal Sylvester–Hadamard matrix of `head_dim` (a power of two).
    Hadamard,
}

/// The orthonormal Sylvester–Hadamard matrix of order `n` (a power of two), row-major:
/// `H_1 = [1]`, `H_2m = [[H_m, H_m], [H_m, -H_m]]`, scaled by `1/√n`. It is symmetric and its
/// own inverse.
pub fn hadamard(n: usize) -> Result<Vec<f32>, SpecError> {
    if !n.is_power_of_two() {
        return Err(SpecError::Invalid {
            key: "rotation",
            value: "hadamard".into(),
            why: format!("needs head_dim to be a power of two, not {n}"),
        });
    }
    let scale = 1.0 / (n as f32).sqrt();
    // Entry (i, j) of the Sylvester construction is (-1)^popcount(i & j).
    Ok((0..n * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            if (i & j).count_ones() % 2 == 0 { scale } else { -scale }
        })
        .collect())
}

/// A slot store that holds every head vector rotated by `H`.
pub struct RotatedStore<B: Backend> {
    inner: Box<dyn SlotStore<B>>,
    /// `[head_dim, head_dim]`, symmetric: the rotation and its inverse.
    h: Tensor<B, 2>,
}

impl<B: Backend> std::fmt::Debug for RotatedStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedStore").field("h", &self.h.dims()).finish_non_exhaustive()
    }
}

impl<B: Backend> RotatedStore<B> {
    pub fn new(
        inner: Box<dyn SlotStore<B>>,
        head_dim: usize,
        device: &B::Device,
    ) -> Result<Self, SpecError> {
        let h = Tensor::<B, 1>::from_floats(hadamard(head_dim)?.as_slice(), device)
            .reshape([head_dim, head_dim]);
        Ok(Self { inner, h })
    }

    /// `x·H` for every head vector of `x`: `[n, n_kv, d]` in and out. `H` is its own inverse,
    /// so this also undoes the rotation.
    fn rotate(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, h, d] = x.dims();
        x.reshape([n * h, d]).matmul(self.h.clone()).reshape([n, h, d])
    }
}

impl<B: Backend> SlotStore<B> for RotatedStore<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let (k, v) = (self.rotate(k), self.rotate(v));
        self.inner.write(layer, slots, k, v);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = self.inner.read(layer, slots);
        (self.rotate(k), self.rotate(v))
    }

    fn read_ranges(&self, layer: usize, ranges: &[Range<usize>]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = self.inner.read_ranges(layer, ranges);
        (self.rotate(k), self.rotate(v))
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        self.inner.move_slots(layer, from, to, n);
    }

    fn memory(&self, live_slots: usize) -> StoreMemory {
        let [d, _] = self.h.dims();
        let inner = self.inner.memory(live_slots);
        StoreMemory {
            metadata_bytes: inner.metadata_bytes + d * d * crate::layout::F32_BYTES,
            ..inner
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hadamard_matrix_is_orthonormal_and_symmetric() {
        for n in [1, 2, 4, 64, 128] {
            let h = hadamard(n).unwrap();
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(h[i * n + j], h[j * n + i], "symmetric");
                    let dot: f32 = (0..n).map(|k| h[i * n + k] * h[j * n + k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "n {n}: row {i} · row {j} = {dot}");
                }
            }
        }
        assert!(hadamard(48).is_err());
    }
}

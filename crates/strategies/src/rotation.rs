//! Hadamard rotation of K/V before a store encodes them (QuaRot / SpinQuant; llama.cpp turns it
//! on for quantized cache types: `attn_rot_k = attn_rot_v = 1`).
//!
//! An outlier channel takes a whole quantization group's range; rotating each head vector by
//! an orthonormal Hadamard matrix `H` spreads it over every channel of the block first. The
//! store holds `x·H` and reads back `x̃·Hᵀ`: with f32 storage that is `x` again (up to rounding),
//! so attention sees what it would without the rotation — which is the same as rotating the
//! queries by `H` and attention's output back by `Hᵀ`, without touching the model. Quantized,
//! the rounding error is made in the rotated basis and spread over the channels.
//!
//! Block sizes follow llama.cpp (`llama_kv_cache::build_input_k_rot` / `_v_rot`): keys by the
//! largest power-of-two block of at least 64 that divides `head_dim`, values by 64×64 blocks
//! (its authors measured smaller blocks to be better for V). A head of 64 rotates K and V by
//! the same matrix; Gemma 3's 256-dim heads rotate K by H₂₅₆ and V by four H₆₄ blocks.
//!
//! Bytes: no stored byte per token changes; the f32 matrices a store keeps (one per distinct
//! block size) are counted in its metadata.

use std::ops::Range;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::store::{SlotStore, StoreMemory};

/// Whether a store rotates head vectors before encoding them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rotation {
    #[default]
    None,
    /// llama.cpp's rotation: block-diagonal orthonormal Sylvester–Hadamard matrices, keys by
    /// [`RotationBlocks::keys`], values by [`RotationBlocks::values`] (`head_dim` a multiple
    /// of 64).
    Hadamard,
}

/// The order of the Hadamard blocks keys and values are rotated by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RotationBlocks {
    pub keys: usize,
    pub values: usize,
}

/// The smallest block llama.cpp rotates by, and the one it rotates values by.
const BASE_BLOCK: usize = 64;

impl RotationBlocks {
    /// llama.cpp's choice for a head of `head_dim`: it rotates only heads that are a multiple of
    /// 64 wide, keys by the largest power-of-two multiple of 64 dividing the head, values by 64.
    pub fn llama_cpp(head_dim: usize) -> Result<Self, SpecError> {
        if head_dim == 0 || !head_dim.is_multiple_of(BASE_BLOCK) {
            return Err(SpecError::Invalid {
                key: "rotation",
                value: "hadamard".into(),
                why: format!("needs head_dim to be a multiple of {BASE_BLOCK}, not {head_dim}"),
            });
        }
        let mut keys = BASE_BLOCK;
        while head_dim.is_multiple_of(keys * 2) {
            keys *= 2;
        }
        Ok(Self { keys, values: BASE_BLOCK })
    }
}

/// The orthonormal Sylvester–Hadamard matrix of order `n` (a power of two), row-major:
/// `H_1 = [1]`, `H_2m = [[H_m, H_m], [H_m, -H_m]]`, scaled by `1/√n`. It is symmetric and its
/// own inverse.
pub fn hadamard(n: usize) -> Result<Vec<f32>, SpecError> {
    if !n.is_power_of_two() {
        return Err(SpecError::Invalid {
            key: "rotation",
            value: "hadamard".into(),
            why: format!("needs a power-of-two block, not {n}"),
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

/// A slot store that holds every key rotated by `H_k` and every value by `H_v`, block-diagonally.
pub struct RotatedStore<B: Backend> {
    inner: Box<dyn SlotStore<B>>,
    /// `[b_k, b_k]`, symmetric: the keys' block, its own inverse.
    h_k: Tensor<B, 2>,
    /// `[b_v, b_v]`, symmetric: the values' block (the same matrix as `h_k` when `b_v = b_k`).
    h_v: Tensor<B, 2>,
}

impl<B: Backend> std::fmt::Debug for RotatedStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedStore")
            .field("h_k", &self.h_k.dims())
            .field("h_v", &self.h_v.dims())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> RotatedStore<B> {
    /// Rotates in llama.cpp's blocks for `head_dim` ([`RotationBlocks::llama_cpp`]).
    pub fn new(
        inner: Box<dyn SlotStore<B>>,
        head_dim: usize,
        device: &B::Device,
    ) -> Result<Self, SpecError> {
        let blocks = RotationBlocks::llama_cpp(head_dim)?;
        let matrix = |n: usize| -> Result<Tensor<B, 2>, SpecError> {
            Ok(Tensor::<B, 1>::from_floats(hadamard(n)?.as_slice(), device).reshape([n, n]))
        };
        let h_k = matrix(blocks.keys)?;
        let h_v = if blocks.values == blocks.keys { h_k.clone() } else { matrix(blocks.values)? };
        Ok(Self { inner, h_k, h_v })
    }

    /// `x·diag(H, …, H)` for every head vector of `x`: `[n, n_kv, d]` in and out, `d` a
    /// multiple of `H`'s order. `H` is its own inverse, so this also undoes the rotation.
    fn rotate(x: Tensor<B, 3>, h: &Tensor<B, 2>) -> Tensor<B, 3> {
        let [n, heads, d] = x.dims();
        let [b, _] = h.dims();
        x.reshape([n * heads * d / b, b]).matmul(h.clone()).reshape([n, heads, d])
    }

    fn rotate_pair(&self, (k, v): (Tensor<B, 3>, Tensor<B, 3>)) -> (Tensor<B, 3>, Tensor<B, 3>) {
        (Self::rotate(k, &self.h_k), Self::rotate(v, &self.h_v))
    }
}

impl<B: Backend> SlotStore<B> for RotatedStore<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let (k, v) = self.rotate_pair((k, v));
        self.inner.write(layer, slots, k, v);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        self.rotate_pair(self.inner.read(layer, slots))
    }

    fn read_ranges(&self, layer: usize, ranges: &[Range<usize>]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        self.rotate_pair(self.inner.read_ranges(layer, ranges))
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        self.inner.move_slots(layer, from, to, n);
    }

    /// Rounded among the rotated keys, as llama.cpp rotates the queries too.
    fn round_query(&self, q: Tensor<B, 3>) -> Tensor<B, 3> {
        if !self.inner.rounds_queries() {
            return q;
        }
        Self::rotate(self.inner.round_query(Self::rotate(q, &self.h_k)), &self.h_k)
    }

    fn rounds_queries(&self) -> bool {
        self.inner.rounds_queries()
    }

    fn memory(&self, live_slots: usize) -> StoreMemory {
        let ([b_k, _], [b_v, _]) = (self.h_k.dims(), self.h_v.dims());
        let matrices = if b_k == b_v { b_k * b_k } else { b_k * b_k + b_v * b_v };
        let inner = self.inner.memory(live_slots);
        StoreMemory {
            metadata_bytes: inner.metadata_bytes + matrices * crate::layout::F32_BYTES,
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

    #[test]
    fn blocks_follow_llama_cpp() {
        let blocks = |d| RotationBlocks::llama_cpp(d).map(|b| (b.keys, b.values)).ok();
        assert_eq!(blocks(64), Some((64, 64)));
        assert_eq!(blocks(128), Some((128, 64)));
        assert_eq!(blocks(256), Some((256, 64)));
        assert_eq!(blocks(192), Some((64, 64)));
        assert_eq!(blocks(320), Some((64, 64)));
        assert_eq!(blocks(96), None);
        assert_eq!(blocks(0), None);
    }
}

//! The order of a key's channels when a store encodes it, which decides which channels share a
//! quantization group and what a Hadamard rotation mixes.
//!
//! kvlab runs Llama in Hugging Face's layout, where RoPE pairs channel `i` with `i + d/2`
//! ("half-split"). A GGUF file stores Q and K projections permuted for llama.cpp's RoPE, which
//! pairs channels `2i` and `2i + 1` ("interleaved"): its K cache holds HF channel `s·d/2 + i` at
//! position `2i + s`. Attention is the same either way (q·k is a sum over channels), but a group
//! of 32 consecutive channels is not: half-split groups hold one side of 32 rotary pairs,
//! interleaved groups both sides of 16. `key_order = "interleaved"` writes keys to the store in
//! llama.cpp's order (and reads them back into kvlab's), so a kvlab `q4_0` cache groups exactly
//! the channels llama.cpp's does. Values are not permuted by GGUF, and are left alone.

use std::ops::Range;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::store::{SlotStore, StoreMemory};

/// The channel order keys have in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyOrder {
    /// kvlab's (Hugging Face's) order: rotary pairs `(i, i + d/2)`.
    #[default]
    HalfSplit,
    /// llama.cpp's (GGUF's) order for a Llama model: rotary pairs `(2i, 2i + 1)`.
    Interleaved,
    /// The order llama.cpp's K cache holds for the model at hand: `interleaved` for a family
    /// whose converter permuted Q/K (Llama), `half-split` for one llama.cpp rotates NEOX-style
    /// (Gemma 3, Qwen2). What a like-for-like comparison with llama.cpp on any model wants.
    LlamaCpp,
}

impl KeyOrder {
    /// The concrete order llama.cpp's cache holds keys in, given whether it rotates the model
    /// NEOX-style ([`kvlab_model::arch::Arch::neox_rope`]).
    pub fn llama_cpp(neox_rope: bool) -> Self {
        if neox_rope { Self::HalfSplit } else { Self::Interleaved }
    }
}

/// `perm[p]` = the half-split channel at interleaved position `p` (`p = 2i + s` holds
/// `s·d/2 + i`), for an even `head_dim`.
pub fn interleaved_from_half_split(head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    (0..head_dim).map(|p| (p % 2) * half + p / 2).collect()
}

/// A store that holds keys in llama.cpp's interleaved channel order.
pub struct InterleavedKeys<B: Backend> {
    inner: Box<dyn SlotStore<B>>,
    /// `[head_dim]`: half-split channel of each interleaved position (applied on write).
    to_interleaved: Tensor<B, 1, Int>,
    /// `[head_dim]`: interleaved position of each half-split channel (applied on read).
    to_half_split: Tensor<B, 1, Int>,
}

impl<B: Backend> std::fmt::Debug for InterleavedKeys<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterleavedKeys").finish_non_exhaustive()
    }
}

impl<B: Backend> InterleavedKeys<B> {
    pub fn new(inner: Box<dyn SlotStore<B>>, head_dim: usize, device: &B::Device) -> Self {
        let perm = interleaved_from_half_split(head_dim);
        let mut inverse = vec![0; head_dim];
        for (p, &c) in perm.iter().enumerate() {
            inverse[c] = p;
        }
        let index = |v: Vec<usize>| {
            let v: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [head_dim]), device)
        };
        Self { inner, to_interleaved: index(perm), to_half_split: index(inverse) }
    }
}

impl<B: Backend> SlotStore<B> for InterleavedKeys<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let k = k.select(2, self.to_interleaved.clone());
        self.inner.write(layer, slots, k, v);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = self.inner.read(layer, slots);
        (k.select(2, self.to_half_split.clone()), v)
    }

    fn read_ranges(&self, layer: usize, ranges: &[Range<usize>]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (k, v) = self.inner.read_ranges(layer, ranges);
        (k.select(2, self.to_half_split.clone()), v)
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        self.inner.move_slots(layer, from, to, n);
    }

    fn round_query(&self, q: Tensor<B, 3>) -> Tensor<B, 3> {
        if !self.inner.rounds_queries() {
            return q;
        }
        let q = self.inner.round_query(q.select(2, self.to_interleaved.clone()));
        q.select(2, self.to_half_split.clone())
    }

    fn rounds_queries(&self) -> bool {
        self.inner.rounds_queries()
    }

    /// No stored byte per token; the two `head_dim` index vectors count as metadata.
    fn memory(&self, live_slots: usize) -> StoreMemory {
        let inner = self.inner.memory(live_slots);
        let index = |t: &Tensor<B, 1, Int>| t.shape().num_elements() * t.dtype().size();
        StoreMemory {
            metadata_bytes: inner.metadata_bytes
                + index(&self.to_interleaved)
                + index(&self.to_half_split),
            ..inner
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_positions_pair_each_channel_with_its_rotary_partner() {
        let perm = interleaved_from_half_split(8);
        assert_eq!(perm, [0, 4, 1, 5, 2, 6, 3, 7]);
        let mut seen = perm.clone();
        seen.sort();
        assert_eq!(seen, (0..8).collect::<Vec<_>>(), "a permutation");
    }
}

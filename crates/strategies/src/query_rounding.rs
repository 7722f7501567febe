//! `query_bits = 8`: queries rounded to llama.cpp's `q8_0` blocks before they meet the keys.
//!
//! llama.cpp's CPU attention over a quantized K cache (`ggml_compute_forward_flash_attn_ext_f16`)
//! does not decode the keys: it converts each query row to the key type's `vec_dot_type`
//! (`q8_0` for `q8_0` and `q4_0` keys, `q8_1` for `q4_1`: the same codes and f16 scale, plus an
//! f16 block sum) and takes integer dot products. So every score it computes is the score of a
//! query rounded to 8 bits per block of 32 channels, in the keys' basis (after its Hadamard
//! rotation, in the GGUF channel order). kvlab decodes keys to f32 and keeps the query in f32
//! unless this store is asked to do what llama.cpp does: with it, kvlab's scores are
//! llama.cpp's up to f32 summation order (and the `q8_1` block sum's f16 rounding, which
//! multiplies the key block's minimum).
//!
//! The rounding is a perturbation of a few tenths of a percent per channel, yet it moves a 4-bit
//! cache's perplexity by about a percent (on SmolLM2 with `q4_1` keys, the mean over six
//! perturbation draws from 19.09 to 18.87): the peer comparison
//! (`experiments/bits-llama-cpp.toml`) measures both arithmetics.
//!
//! It wraps the store that encodes the codes; the stores around it (rotation, channel order)
//! pass queries through their change of basis ([`SlotStore::round_query`]).

use std::ops::Range;

use burn::prelude::*;
use burn::tensor::DType;

use kvlab_model::SlotRun;

use crate::quant::{Codec, Scheme};
use crate::store::{SlotStore, StoreMemory};

/// The one width queries are rounded to.
pub const QUERY_BITS: u8 = 8;

/// Channels per `q8_0` block.
pub const QUERY_BLOCK: usize = 32;

/// A store whose queries are rounded to `q8_0` blocks; everything else is `inner`'s.
pub struct QueryRounding<B: Backend> {
    inner: Box<dyn SlotStore<B>>,
}

impl<B: Backend> std::fmt::Debug for QueryRounding<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRounding").finish_non_exhaustive()
    }
}

impl<B: Backend> QueryRounding<B> {
    /// `head_dim` must be a multiple of [`QUERY_BLOCK`] (the builder checks it against the
    /// model's layout).
    pub fn new(inner: Box<dyn SlotStore<B>>) -> Self {
        Self { inner }
    }
}

/// `q8_0` rounding of every block of 32 channels: `d = max|x| / 127` kept as f16, `x ≈ d ·
/// round(x / d)` (the codes from the f32 `d`, as `quantize_row_q8_0` takes them).
///
/// # Shapes
/// - q, output: `[n, heads, head_dim]`
pub fn round_to_q8_0<B: Backend>(q: Tensor<B, 3>) -> Tensor<B, 3> {
    let [n, heads, d] = q.dims();
    let codec = Codec { bits: 8, scheme: Scheme::Q8_0 };
    // [n, heads, d / 32, 32]: one group per block.
    let blocks = q.reshape([n, heads, d / QUERY_BLOCK, QUERY_BLOCK]);
    let quantized = codec.quantize(blocks, 3);
    let scale = quantized.scale.cast(DType::F16).cast(DType::F32);
    codec.dequantize(quantized.codes, scale, None).reshape([n, heads, d])
}

impl<B: Backend> SlotStore<B> for QueryRounding<B> {
    fn write(&mut self, layer: usize, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        self.inner.write(layer, slots, k, v);
    }

    fn read(&self, layer: usize, slots: &[usize]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        self.inner.read(layer, slots)
    }

    fn read_ranges(&self, layer: usize, ranges: &[Range<usize>]) -> (Tensor<B, 3>, Tensor<B, 3>) {
        self.inner.read_ranges(layer, ranges)
    }

    fn runs(&self, layer: usize, ranges: &[Range<usize>]) -> Option<Vec<Vec<SlotRun<B>>>> {
        self.inner.runs(layer, ranges)
    }

    fn move_slots(&mut self, layer: usize, from: usize, to: usize, n: usize) {
        self.inner.move_slots(layer, from, to, n);
    }

    fn round_query(&self, q: Tensor<B, 3>) -> Tensor<B, 3> {
        round_to_q8_0(q)
    }

    fn rounds_queries(&self) -> bool {
        true
    }

    fn memory(&self, live_slots: usize) -> StoreMemory {
        self.inner.memory(live_slots)
    }
}

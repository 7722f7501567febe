//! The integer encoding, as tensor ops that stay on the device: a [`Scheme`]'s group
//! quantization (each format in its file under `formats/`) to unsigned codes held in `u8`
//! tensors, their decoding, and int4 packing of channel pairs into one byte.
//!
//! Codes are always unsigned (`0..2^bits`): symmetric codes (and llama.cpp's `q8_0` and `q4_0`)
//! carry an implicit zero point of `2^(bits-1)`, so every scheme shares the packing and one code
//! dtype. llama.cpp's formats keep their metadata in f16 ([`Codec::metadata_dtype`]): the
//! scales computed here are f32 and are rounded when a plane stores them, as llama.cpp rounds
//! `d` when it writes a block (it quantizes with the unrounded `1/d`, as here).

use burn::prelude::*;
use burn::tensor::{DType, ElementConversion};

use super::config::Scheme;
pub use super::levels::{MIN_SCALE, Quantized};
use super::levels::{max_code, mid_code};

/// One bit width and scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub bits: u8,
    pub scheme: Scheme,
}

impl Codec {
    /// Largest code: `2^bits - 1`.
    pub fn max_code(&self) -> f32 {
        max_code(self.bits)
    }

    /// Symmetric codes' zero point: `2^(bits-1)`.
    pub(crate) fn mid_code(&self) -> f32 {
        mid_code(self.bits)
    }

    /// Bytes of codes for `values` values (two per byte at 4 bits).
    pub fn code_bytes(&self, values: usize) -> usize {
        values * self.bits as usize / 8
    }

    /// Parameters stored per group: scale, plus the zero point (asymmetric, `q4_1`).
    pub(crate) fn params_per_group(&self) -> usize {
        if self.scheme.has_zero_point() { 2 } else { 1 }
    }

    /// The dtype scales and zero points are stored in: f16 for llama.cpp's block formats
    /// (`ggml_half d`), f32 otherwise.
    pub(crate) fn metadata_dtype(&self) -> DType {
        if self.scheme.is_block_format() { DType::F16 } else { DType::F32 }
    }

    /// The quantization step of a group with this range: what `|x - deq(q(x))| <= step / 2`
    /// is measured against ([`super::formats::Format::step`]).
    pub fn step(&self, min: f32, max: f32) -> f32 {
        self.scheme.step(self.bits, min, max)
    }

    /// Quantizes `x`; every slice along `dim` is one group.
    pub fn quantize<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        dim: usize,
    ) -> Quantized<B, D> {
        self.scheme.quantize(self.bits, x, dim)
    }

    /// Decodes unpacked `codes` with `scale`/`zero` broadcast over them.
    pub fn dequantize<B: Backend, const D: usize>(
        &self,
        codes: Tensor<B, D, Int>,
        scale: Tensor<B, D>,
        zero: Option<Tensor<B, D>>,
    ) -> Tensor<B, D> {
        let c = codes.float();
        match (self.scheme.has_zero_point(), zero) {
            (true, Some(zero)) => c.mul(scale).add(zero),
            (true, None) => unreachable!("{} codes need zero points", self.scheme),
            (false, _) => c.sub_scalar(self.mid_code()).mul(scale),
        }
    }

    /// Packs unpacked codes `[n, h, d]` for storage: `[n, h, d]` at 8 bits, `[n, h, d / 2]` at
    /// 4 bits with channel `2c` in the low nibble and `2c + 1` in the high nibble of byte `c`.
    pub fn pack<B: Backend>(&self, codes: Tensor<B, 3, Int>) -> Tensor<B, 3, Int> {
        if self.bits == 8 {
            return codes;
        }
        let [n, h, d] = codes.dims();
        let pairs = codes.reshape([n, h, d / 2, 2]);
        let lo = pairs.clone().slice([0..n, 0..h, 0..d / 2, 0..1]);
        let hi = pairs.slice([0..n, 0..h, 0..d / 2, 1..2]);
        lo.bitwise_or(hi.bitwise_left_shift_scalar(4.elem())).reshape([n, h, d / 2])
    }

    /// Inverse of [`Codec::pack`]: `[n, h, packed]` to one code per value `[n, h, d]`.
    pub fn unpack<B: Backend>(&self, packed: Tensor<B, 3, Int>) -> Tensor<B, 3, Int> {
        if self.bits == 8 {
            return packed;
        }
        let [n, h, p] = packed.dims();
        let lo = packed.clone().bitwise_and_scalar(0x0F.elem()).reshape([n, h, p, 1]);
        let hi = packed.bitwise_right_shift_scalar(4.elem()).reshape([n, h, p, 1]);
        Tensor::cat(vec![lo, hi], 3).reshape([n, h, 2 * p])
    }
}

/// A zeroed `u8` tensor (burn's `zeros` would give the backend's default int, i32 on flex).
pub(crate) fn zeros_u8<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::zeros(shape, (device, DType::U8))
}

/// Bytes a tensor's buffer holds: elements times its dtype's size (1 for `u8` codes).
pub(crate) fn buffer_bytes(shape: burn::tensor::Shape, dtype: DType) -> usize {
    shape.num_elements() * dtype.size()
}

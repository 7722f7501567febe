//! The integer encoding, as tensor ops that stay on the device: min-max (asymmetric) or
//! abs-max (symmetric) group quantization to unsigned codes held in `u8` tensors, and int4
//! packing of channel pairs into one byte.
//!
//! Codes are always unsigned (`0..2^bits`): symmetric codes (and llama.cpp's `q8_0` and `q4_0`)
//! carry an implicit zero point of `2^(bits-1)`, so every scheme shares the packing and one code
//! dtype. llama.cpp's formats keep their metadata in f16 ([`Codec::metadata_dtype`]): the
//! scales computed here are f32 and are rounded when a plane stores them, as llama.cpp rounds
//! `d` when it writes a block (it quantizes with the unrounded `1/d`, as here).

use burn::prelude::*;
use burn::tensor::{DType, ElementConversion, IntDType};

use super::config::Scheme;

/// The smallest scale stored: a constant group (`max == min`) gets this instead of 0, so
/// quantizing divides by something; its codes are then all 0 (or the zero point) and decode
/// to the constant exactly.
pub const MIN_SCALE: f32 = 1e-30;

/// One bit width and scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub bits: u8,
    pub scheme: Scheme,
}

/// A group-quantized tensor: codes (unpacked, one `u8` per value) and the per-group scale and
/// zero point (`None` for symmetric), shaped like the input with the reduced dim kept as 1.
#[derive(Debug, Clone)]
pub struct Quantized<B: Backend, const D: usize> {
    pub codes: Tensor<B, D, Int>,
    pub scale: Tensor<B, D>,
    pub zero: Option<Tensor<B, D>>,
}

impl Codec {
    /// Largest code: `2^bits - 1`.
    pub fn max_code(&self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// Symmetric codes' zero point: `2^(bits-1)`.
    pub fn mid_code(&self) -> f32 {
        (1u32 << (self.bits - 1)) as f32
    }

    /// Bytes of codes for `values` values (two per byte at 4 bits).
    pub fn code_bytes(&self, values: usize) -> usize {
        values * self.bits as usize / 8
    }

    /// Parameters stored per group: scale, plus the zero point (asymmetric, `q4_1`).
    pub fn params_per_group(&self) -> usize {
        if self.scheme.has_zero_point() { 2 } else { 1 }
    }

    /// The dtype scales and zero points are stored in: f16 for llama.cpp's block formats
    /// (`ggml_half d`), f32 otherwise.
    pub fn metadata_dtype(&self) -> DType {
        if self.scheme.is_block_format() { DType::F16 } else { DType::F32 }
    }

    /// The quantization step of a group with this range: what `|x - deq(q(x))| <= step / 2`
    /// is measured against.
    /// For `q4_0` the step is `|d| = max|x| / 8`, and the value opposite the signed extreme
    /// (code 16, clamped to 15) is off by up to one step, not half.
    pub fn step(&self, min: f32, max: f32) -> f32 {
        let amax = max.abs().max(min.abs());
        match self.scheme {
            Scheme::Asymmetric | Scheme::Q4_1 => ((max - min) / self.max_code()).max(MIN_SCALE),
            Scheme::Symmetric | Scheme::Q8_0 => (amax / (self.mid_code() - 1.0)).max(MIN_SCALE),
            Scheme::Q4_0 => (amax / 8.0).max(MIN_SCALE),
        }
    }

    /// Quantizes `x`; every slice along `dim` is one group.
    pub fn quantize<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
        dim: usize,
    ) -> Quantized<B, D> {
        match self.scheme {
            Scheme::Asymmetric => {
                let min = x.clone().min_dim(dim);
                let max = x.clone().max_dim(dim);
                let scale = (max - min.clone()).div_scalar(self.max_code()).clamp_min(MIN_SCALE);
                let q = (x - min.clone()).div(scale.clone()).round().clamp(0.0, self.max_code());
                Quantized { codes: q.cast(IntDType::U8), scale, zero: Some(min) }
            }
            Scheme::Symmetric => {
                let qmax = self.mid_code() - 1.0;
                let scale = x.clone().abs().max_dim(dim).div_scalar(qmax).clamp_min(MIN_SCALE);
                let q = x.div(scale.clone()).round().clamp(-qmax, qmax).add_scalar(self.mid_code());
                Quantized { codes: q.cast(IntDType::U8), scale, zero: None }
            }
            // quantize_row_q8_0: d = amax / 127, q = round(x · (1/d)); the CPU kernels round
            // to nearest even, as burn's `round` does.
            Scheme::Q8_0 => {
                let d = x.clone().abs().max_dim(dim).div_scalar(127.0);
                let q = x.mul(inverse(d.clone())).round().add_scalar(self.mid_code());
                Quantized { codes: q.cast(IntDType::U8), scale: d, zero: None }
            }
            // quantize_row_q4_0_ref: m = the first value of largest magnitude (ties, as 2.5 and
            // -2.5, go to the first), d = m / -8, q = min(15, (int)(x · (1/d) + 8.5));
            // x · (1/d) ≥ -8, so the cast is a floor.
            Scheme::Q4_0 => {
                let first_largest = x.clone().abs().argmax(dim);
                let d = x.clone().gather(dim, first_largest).div_scalar(-8.0);
                let q = x.mul(inverse(d.clone())).add_scalar(8.5).floor().clamp(0.0, 15.0);
                Quantized { codes: q.cast(IntDType::U8), scale: d, zero: None }
            }
            // quantize_row_q4_1_ref: d = (max - min) / 15, q = min(15, (int)((x - min) · (1/d)
            // + 0.5)), a floor as the argument is ≥ 0.
            Scheme::Q4_1 => {
                let (min, max) = (x.clone().min_dim(dim), x.clone().max_dim(dim));
                let d = (max - min.clone()).div_scalar(15.0);
                let q = (x - min.clone()).mul(inverse(d.clone())).add_scalar(0.5).floor();
                let q = q.clamp(0.0, 15.0);
                Quantized { codes: q.cast(IntDType::U8), scale: d, zero: Some(min) }
            }
        }
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

/// `1 / d`, and 0 where `d` is 0 (llama.cpp's `id = d ? 1.0f/d : 0.0f`: a block of zeros
/// quantizes to the zero code).
fn inverse<B: Backend, const D: usize>(d: Tensor<B, D>) -> Tensor<B, D> {
    let zero = d.clone().equal_elem(0.0);
    d.recip().mask_fill(zero, 0.0)
}

/// A zeroed `u8` tensor (burn's `zeros` would give the backend's default int, i32 on flex).
pub fn zeros_u8<B: Backend, const D: usize>(
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::zeros(shape, (device, DType::U8))
}

/// Bytes a tensor's buffer holds: elements times its dtype's size (1 for `u8` codes).
pub fn buffer_bytes(shape: burn::tensor::Shape, dtype: DType) -> usize {
    shape.num_elements() * dtype.size()
}

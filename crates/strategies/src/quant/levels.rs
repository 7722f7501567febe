//! What every quantization format shares: unsigned codes `0..2^bits`, the smallest scale, a
//! quantized group's parts, and llama.cpp's safe inverse. A leaf, so the formats and the codec
//! both reach down for it.

use burn::prelude::*;

/// The code widths a store packs exactly (`bits / 8` bytes per value).
pub const CODE_BITS: [u8; 4] = [8, 4, 3, 2];

/// The smallest scale stored: a constant group (`max == min`) gets this instead of 0, so
/// quantizing divides by something; its codes are then all 0 (or the zero point) and decode
/// to the constant exactly.
pub const MIN_SCALE: f32 = 1e-30;

/// Largest code: `2^bits - 1`.
pub fn max_code(bits: u8) -> f32 {
    ((1u32 << bits) - 1) as f32
}

/// Symmetric codes' zero point: `2^(bits-1)`.
pub(crate) fn mid_code(bits: u8) -> f32 {
    (1u32 << (bits - 1)) as f32
}

/// A group-quantized tensor: codes (unpacked, one `u8` per value) and the per-group scale and
/// zero point (`None` for symmetric), shaped like the input with the reduced dim kept as 1.
#[derive(Debug, Clone)]
pub struct Quantized<B: Backend, const D: usize> {
    pub codes: Tensor<B, D, Int>,
    pub scale: Tensor<B, D>,
    pub zero: Option<Tensor<B, D>>,
}

/// `1 / d`, and 0 where `d` is 0 (llama.cpp's `id = d ? 1.0f/d : 0.0f`: a block of zeros
/// quantizes to the zero code).
pub fn inverse<B: Backend, const D: usize>(d: Tensor<B, D>) -> Tensor<B, D> {
    let zero = d.clone().equal_elem(0.0);
    d.recip().mask_fill(zero, 0.0)
}

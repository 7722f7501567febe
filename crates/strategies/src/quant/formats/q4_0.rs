//! llama.cpp `q4_0` (`ggml-quants.c`, `quantize_row_q4_0_ref`): `d = m / -8` where `m` is the
//! value of largest magnitude (signed), `q = min(15, ⌊x / d + 8.5⌋)`, `x ≈ (q - 8) · d`: 16
//! levels, `m` itself at -8; one f16 `d` per 32 values (18 bytes a block).

use burn::prelude::*;
use burn::tensor::IntDType;

use super::Format;
use crate::quant::levels::{MIN_SCALE, Quantized, inverse};

#[derive(Debug)]
pub struct Q4_0;

impl Format for Q4_0 {
    const NAME: &'static str = "q4_0";
    const FIXED_BITS: Option<u8> = Some(4);
    const ZERO_POINT: bool = false;

    /// `|d| = max|x| / 8`; the value opposite the signed extreme (code 16, clamped to 15) is off
    /// by up to one step, not half.
    fn step(_bits: u8, min: f32, max: f32) -> f32 {
        (max.abs().max(min.abs()) / 8.0).max(MIN_SCALE)
    }

    // m = the first value of largest magnitude (ties, as 2.5 and -2.5, go to the first),
    // d = m / -8, q = min(15, (int)(x · (1/d) + 8.5)); x · (1/d) ≥ -8, so the cast is a floor.
    fn quantize<B: Backend, const D: usize>(_bits: u8, x: Tensor<B, D>, dim: usize) -> Quantized<B, D> {
        let first_largest = x.clone().abs().argmax(dim);
        let d = x.clone().gather(dim, first_largest).div_scalar(-8.0);
        let q = x.mul(inverse(d.clone())).add_scalar(8.5).floor().clamp(0.0, 15.0);
        Quantized { codes: q.cast(IntDType::U8), scale: d, zero: None }
    }
}

//! llama.cpp `q4_1` (`ggml-quants.c`, `quantize_row_q4_1_ref`): `d = (max - min) / 15`,
//! `q = min(15, ⌊(x - min) / d + 0.5⌋)`, `x ≈ q · d + min`; f16 `d` and `min` per 32 values (20
//! bytes a block).

use burn::prelude::*;
use burn::tensor::IntDType;

use super::Format;
use crate::quant::levels::{MIN_SCALE, Quantized, inverse, max_code};

#[derive(Debug)]
pub struct Q4_1;

impl Format for Q4_1 {
    const NAME: &'static str = "q4_1";
    const FIXED_BITS: Option<u8> = Some(4);
    const ZERO_POINT: bool = true;

    fn step(bits: u8, min: f32, max: f32) -> f32 {
        ((max - min) / max_code(bits)).max(MIN_SCALE)
    }

    // (int)((x - min) · (1/d) + 0.5) is a floor, as the argument is ≥ 0.
    fn quantize<B: Backend, const D: usize>(_bits: u8, x: Tensor<B, D>, dim: usize) -> Quantized<B, D> {
        let (min, max) = (x.clone().min_dim(dim), x.clone().max_dim(dim));
        let d = (max - min.clone()).div_scalar(15.0);
        let q = (x - min.clone()).mul(inverse(d.clone())).add_scalar(0.5).floor();
        let q = q.clamp(0.0, 15.0);
        Quantized { codes: q.cast(IntDType::U8), scale: d, zero: Some(min) }
    }
}

//! `symmetric`: `x ≈ (code - 2^(bits-1)) · scale`, `scale = max|x| / (2^(bits-1) - 1)`; one f32
//! per group.

use burn::prelude::*;
use burn::tensor::IntDType;

use super::Format;
use crate::quant::levels::{MIN_SCALE, Quantized, mid_code};

#[derive(Debug)]
pub struct Symmetric;

impl Format for Symmetric {
    const NAME: &'static str = "symmetric";
    const ZERO_POINT: bool = false;

    fn step(bits: u8, min: f32, max: f32) -> f32 {
        (max.abs().max(min.abs()) / (mid_code(bits) - 1.0)).max(MIN_SCALE)
    }

    fn quantize<B: Backend, const D: usize>(bits: u8, x: Tensor<B, D>, dim: usize) -> Quantized<B, D> {
        let qmax = mid_code(bits) - 1.0;
        let scale = x.clone().abs().max_dim(dim).div_scalar(qmax).clamp_min(MIN_SCALE);
        let q = x.div(scale.clone()).round().clamp(-qmax, qmax).add_scalar(mid_code(bits));
        Quantized { codes: q.cast(IntDType::U8), scale, zero: None }
    }
}

//! `asymmetric` (the default): `x ≈ code · scale + zero`, `zero = min x`, `scale = (max - min) /
//! (2^bits - 1)`; two f32 per group (KIVI's min-max quantizer).

use burn::prelude::*;
use burn::tensor::IntDType;

use super::Format;
use crate::quant::levels::{MIN_SCALE, Quantized, max_code};

#[derive(Debug)]
pub struct Asymmetric;

impl Format for Asymmetric {
    const NAME: &'static str = "asymmetric";
    const ZERO_POINT: bool = true;

    fn step(bits: u8, min: f32, max: f32) -> f32 {
        ((max - min) / max_code(bits)).max(MIN_SCALE)
    }

    fn quantize<B: Backend, const D: usize>(bits: u8, x: Tensor<B, D>, dim: usize) -> Quantized<B, D> {
        let min = x.clone().min_dim(dim);
        let max = x.clone().max_dim(dim);
        let scale = (max - min.clone()).div_scalar(max_code(bits)).clamp_min(MIN_SCALE);
        let q = (x - min.clone()).div(scale.clone()).round().clamp(0.0, max_code(bits));
        Quantized { codes: q.cast(IntDType::U8), scale, zero: Some(min) }
    }
}

//! llama.cpp `q8_0` (`ggml-quants.c`, `quantize_row_q8_0_ref`): `d = max|x| / 127`,
//! `q = round(x / d)` in -127..=127, one f16 `d` per 32 values (34 bytes a block).

use burn::prelude::*;
use burn::tensor::IntDType;

use super::Format;
use crate::quant::levels::{MIN_SCALE, Quantized, inverse, mid_code};

#[derive(Debug)]
pub struct Q8_0;

impl Format for Q8_0 {
    const NAME: &'static str = "q8_0";
    const FIXED_BITS: Option<u8> = Some(8);
    const ZERO_POINT: bool = false;

    fn step(_bits: u8, min: f32, max: f32) -> f32 {
        (max.abs().max(min.abs()) / 127.0).max(MIN_SCALE)
    }

    // d = amax / 127, q = round(x · (1/d)); the CPU kernels round to nearest even, as burn's
    // `round` does.
    fn quantize<B: Backend, const D: usize>(bits: u8, x: Tensor<B, D>, dim: usize) -> Quantized<B, D> {
        let d = x.clone().abs().max_dim(dim).div_scalar(127.0);
        let q = x.mul(inverse(d.clone())).round().add_scalar(mid_code(bits));
        Quantized { codes: q.cast(IntDType::U8), scale: d, zero: None }
    }
}

//! `lloyd-max`: `x ≈ level[code] · scale + zero`, `zero` the group's mean, `scale` its standard
//! deviation, `level` the Lloyd–Max codebook of the standard normal at `bits`
//! ([`crate::quant::codebook`]): non-uniform levels, dense near the mean where a rotated
//! head vector's coordinates are dense. Meant after `rotation = "hadamard"`, which makes the
//! coordinates near-Gaussian; two f32 per group (as `asymmetric`), plus the `2^bits` levels,
//! stored once per plane and counted in its metadata. 2, 3 and 4 bits: a code is found by
//! comparing against the `2^bits - 1` boundaries, one tensor op each.

use burn::prelude::*;
use burn::tensor::IntDType;

use super::Format;
use crate::quant::codebook::{boundaries, gaussian_levels};
use crate::quant::levels::{MIN_SCALE, Quantized};

#[derive(Debug)]
pub struct LloydMax;

impl Format for LloydMax {
    const NAME: &'static str = "lloyd-max";
    const MAX_BITS: u8 = 4;
    const ZERO_POINT: bool = true;

    /// Levels are not evenly spaced and the scale is the group's deviation, which `min` and
    /// `max` do not give: the only bound they give is the range itself.
    fn step(_bits: u8, min: f32, max: f32) -> f32 {
        (max - min).max(MIN_SCALE)
    }

    fn levels(bits: u8) -> Option<&'static [f32]> {
        Some(gaussian_levels(bits))
    }

    fn quantize<B: Backend, const D: usize>(bits: u8, x: Tensor<B, D>, dim: usize) -> Quantized<B, D> {
        let mean = x.clone().mean_dim(dim);
        let centred = x - mean.clone();
        let scale = centred.clone().square().mean_dim(dim).sqrt().clamp_min(MIN_SCALE);
        let t = centred.div(scale.clone());
        // The code of t is the number of boundaries below it: the nearest level's index.
        let codes = boundaries(gaussian_levels(bits))
            .into_iter()
            .fold(t.zeros_like(), |c, b| c + t.clone().greater_elem(b).float());
        Quantized { codes: codes.cast(IntDType::U8), scale, zero: Some(mean) }
    }
}

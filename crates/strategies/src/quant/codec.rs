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

use super::formats::Scheme;
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

    /// Bytes of codes for `values` values (`bits / 8` each: two per byte at 4 bits, three
    /// bytes per eight values at 3).
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

    /// A codebook scheme's levels as a tensor on `device` (`None` for evenly spaced codes):
    /// what a plane holds once and hands to [`Codec::dequantize_with`].
    pub fn levels_tensor<B: Backend>(&self, device: &B::Device) -> Option<Tensor<B, 1>> {
        let levels = self.scheme.levels(self.bits)?;
        Some(Tensor::from_data(TensorData::new(levels.to_vec(), [levels.len()]), device))
    }

    /// Decodes unpacked `codes` with `scale`/`zero` broadcast over them.
    pub fn dequantize<B: Backend, const D: usize>(
        &self,
        codes: Tensor<B, D, Int>,
        scale: Tensor<B, D>,
        zero: Option<Tensor<B, D>>,
    ) -> Tensor<B, D> {
        let levels = self.levels_tensor(&codes.device());
        self.dequantize_with(codes, scale, zero, levels.as_ref())
    }

    /// [`Codec::dequantize`] with a codebook scheme's levels already on the device.
    pub fn dequantize_with<B: Backend, const D: usize>(
        &self,
        codes: Tensor<B, D, Int>,
        scale: Tensor<B, D>,
        zero: Option<Tensor<B, D>>,
        levels: Option<&Tensor<B, 1>>,
    ) -> Tensor<B, D> {
        let c = match levels {
            // Each code's level: a lookup by index (codes widened from u8 to index them).
            Some(levels) => {
                let shape = codes.shape();
                let index = codes.cast(DType::I32).flatten::<1>(0, D - 1);
                levels.clone().select(0, index).reshape(shape)
            }
            None => codes.float(),
        };
        match (self.scheme.has_zero_point(), zero) {
            (true, Some(zero)) => c.mul(scale).add(zero),
            (true, None) => unreachable!("{} codes need zero points", self.scheme),
            (false, _) => c.sub_scalar(self.mid_code()).mul(scale),
        }
    }

    /// How codes pack: `(values, bytes)` of one *word*, the fewest whole bytes that hold whole
    /// codes (`lcm(bits, 8)` bits): 8 bits 1 in 1, 4 bits 2 in 1, 2 bits 4 in 1, 3 bits 8 in 3.
    /// `head_dim` must be a multiple of `values` ([`super::QuantConfig::validate`]).
    pub fn word(&self) -> (usize, usize) {
        let bits = self.bits as usize;
        let word_bits = bits * 8 / gcd(bits, 8);
        (word_bits / bits, word_bits / 8)
    }

    /// Packs unpacked codes `[n, h, d]` for storage, `[n, h, d · bits / 8]`: value `i` of a
    /// word takes bits `i·bits ..` of the word, whose bytes are stored little-endian. At 4 bits
    /// channel `2c` is the low nibble and `2c + 1` the high nibble of byte `c`; at 3 bits
    /// channels `8w .. 8w + 8` fill bytes `3w .. 3w + 3`.
    pub fn pack<B: Backend>(&self, codes: Tensor<B, 3, Int>) -> Tensor<B, 3, Int> {
        if self.bits == 8 {
            return codes;
        }
        let [n, h, d] = codes.dims();
        let (per_word, word_bytes) = self.word();
        let words = d / per_word;
        // [n, h, words, per_word]
        let c = widen(codes, word_bytes).reshape([n, h, words, per_word]);
        let code = |i: usize| c.clone().slice([0..n, 0..h, 0..words, i..i + 1]);
        // [n, h, words, 1]: the codes' bit fields do not overlap, so their sum is their OR.
        let word = (1..per_word).fold(code(0), |w, i| {
            w.add(code(i).bitwise_left_shift_scalar(((i * self.bits as usize) as i32).elem()))
        });
        let bytes = (0..word_bytes)
            .map(|j| {
                word.clone()
                    .bitwise_right_shift_scalar(((8 * j) as i32).elem())
                    .bitwise_and_scalar(0xFF.elem())
            })
            .collect();
        narrow(Tensor::cat(bytes, 3).reshape([n, h, words * word_bytes]), word_bytes)
    }

    /// Inverse of [`Codec::pack`]: `[n, h, packed]` to one `u8` code per value `[n, h, d]`.
    pub fn unpack<B: Backend>(&self, packed: Tensor<B, 3, Int>) -> Tensor<B, 3, Int> {
        if self.bits == 8 {
            return packed;
        }
        let [n, h, p] = packed.dims();
        let (per_word, word_bytes) = self.word();
        let words = p / word_bytes;
        // [n, h, words, word_bytes]
        let b = widen(packed, word_bytes).reshape([n, h, words, word_bytes]);
        let byte = |j: usize| b.clone().slice([0..n, 0..h, 0..words, j..j + 1]);
        // [n, h, words, 1]
        let word = (1..word_bytes).fold(byte(0), |w, j| {
            w.add(byte(j).bitwise_left_shift_scalar(((8 * j) as i32).elem()))
        });
        let mask = (1i32 << self.bits) - 1;
        let codes = (0..per_word)
            .map(|i| {
                word.clone()
                    .bitwise_right_shift_scalar(((i * self.bits as usize) as i32).elem())
                    .bitwise_and_scalar(mask.elem())
            })
            .collect();
        narrow(Tensor::cat(codes, 3).reshape([n, h, words * per_word]), word_bytes)
    }
}

/// Words of more than one byte (int3's 24 bits) are built in i32; one-byte words (int4, int2)
/// stay in `u8`, with no cast on the device.
fn widen<B: Backend>(x: Tensor<B, 3, Int>, word_bytes: usize) -> Tensor<B, 3, Int> {
    if word_bytes > 1 { x.cast(DType::I32) } else { x }
}

/// Back to `u8` codes after [`widen`].
fn narrow<B: Backend>(x: Tensor<B, 3, Int>, word_bytes: usize) -> Tensor<B, 3, Int> {
    if word_bytes > 1 { x.cast(DType::U8) } else { x }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
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

//! ggml tensor types and their dequantization to `f32`.
//!
//! Block layouts follow ggml's `ggml-common.h` / `ggml-quants.c` (read for reference, written
//! here from the layout description): every quantized type stores its elements in blocks of
//! `block_size()` consecutive elements along the innermost dimension, each block being
//! `type_size()` bytes, little endian, scales in IEEE half precision.

use half::{bf16, f16};

use super::kquants;
use std::fmt;

/// A ggml tensor element type, as stored in a GGUF tensor info (`ggml_type` ids).
///
/// Only types with a fixed, simple block layout are listed; anything else (the IQ* and ternary
/// families, MXFP4, ...) is rejected when the file is opened, naming the tensor and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// Maps a ggml type id to a type; `None` for ids this reader does not know the layout of.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            // 4 and 5 were Q4_2 / Q4_3, removed from ggml long ago.
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            24 => GgmlType::I8,
            25 => GgmlType::I16,
            26 => GgmlType::I32,
            27 => GgmlType::I64,
            28 => GgmlType::F64,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
        }
    }

    /// ggml's name for the type ("q4_1", "f32", ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q8_1 => "q8_1",
            GgmlType::Q2K => "q2_K",
            GgmlType::Q3K => "q3_K",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q5K => "q5_K",
            GgmlType::Q6K => "q6_K",
            GgmlType::Q8K => "q8_K",
            GgmlType::I8 => "i8",
            GgmlType::I16 => "i16",
            GgmlType::I32 => "i32",
            GgmlType::I64 => "i64",
            GgmlType::F64 => "f64",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Number of elements in one block (1 for plain scalar types).
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q8_1 => 32,
            GgmlType::Q2K
            | GgmlType::Q3K
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::Q8K => 256,
            _ => 1,
        }
    }

    /// Number of bytes of one block.
    pub(crate) fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q5_0 => 2 + 4 + 16,
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,
            GgmlType::Q8_0 => 2 + 32,
            GgmlType::Q8_1 => 2 + 2 + 32,
            GgmlType::Q2K => 16 + 64 + 2 + 2,
            GgmlType::Q3K => 32 + 64 + 12 + 2,
            GgmlType::Q4K => 2 + 2 + 12 + 128,
            GgmlType::Q5K => 2 + 2 + 12 + 32 + 128,
            GgmlType::Q6K => 128 + 64 + 16 + 2,
            GgmlType::Q8K => 4 + 256 + 32,
            GgmlType::I8 => 1,
            GgmlType::I16 => 2,
            GgmlType::I32 => 4,
            GgmlType::I64 | GgmlType::F64 => 8,
        }
    }

    /// Whether [`dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q5_1
                | GgmlType::Q8_0
                | GgmlType::Q4K
                | GgmlType::Q6K
        )
    }

    /// Bytes needed for `n_elements` elements, or `None` when `n_elements` is not a multiple of
    /// the block size (or the size overflows).
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`dequantize`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error("dequantizing {0} to f32 is not implemented")]
    Unsupported(GgmlType),
    #[error("{n_elements} elements is not a multiple of {ty}'s block size {block_size}")]
    NotBlockMultiple { ty: GgmlType, n_elements: usize, block_size: usize },
    #[error("{n_elements} elements of {ty} need {expected} bytes, got {got}")]
    WrongByteCount { ty: GgmlType, n_elements: usize, expected: usize, got: usize },
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n_elements` elements of type `ty` stored in `data` (exactly the bytes they
/// occupy) into `f32`, in storage order.
pub fn dequantize(ty: GgmlType, data: &[u8], n_elements: usize) -> Result<Vec<f32>, DequantError> {
    if !ty.can_dequantize() {
        return Err(DequantError::Unsupported(ty));
    }
    let bs = ty.block_size();
    if !n_elements.is_multiple_of(bs) {
        return Err(DequantError::NotBlockMultiple { ty, n_elements, block_size: bs });
    }
    let expected = n_elements / bs * ty.type_size();
    if data.len() != expected {
        return Err(DequantError::WrongByteCount { ty, n_elements, expected, got: data.len() });
    }
    let mut out = Vec::with_capacity(n_elements);
    let blocks = data.chunks_exact(ty.type_size());
    match ty {
        GgmlType::F32 => {
            out.extend(blocks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
        GgmlType::F16 => out.extend(blocks.map(|c| f16_at(c, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        // Q8_0: f16 scale d, then 32 signed bytes; x = d * q.
        GgmlType::Q8_0 => {
            for b in blocks {
                let d = f16_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        // Q4_0: f16 d, 16 bytes of nibbles; element j (j < 16) is the low nibble of byte j and
        // element j + 16 its high nibble; x = d * (nibble - 8).
        GgmlType::Q4_0 => {
            for b in blocks {
                let d = f16_at(b, 0);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0F) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        // Q4_1: f16 d, f16 m, 16 bytes of nibbles (same order as Q4_0); x = d * nibble + m.
        GgmlType::Q4_1 => {
            for b in blocks {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0F) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        // Q5_0 / Q5_1: like Q4_0 / Q4_1 plus a 32-bit little-endian word qh whose bit j is the
        // fifth (high) bit of element j. Q5_0: x = d * (q - 16); Q5_1: x = d * q + m.
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let has_min = ty == GgmlType::Q5_1;
            for b in blocks {
                let d = f16_at(b, 0);
                let (m, rest) = if has_min { (f16_at(b, 2), &b[4..]) } else { (0.0, &b[2..]) };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                let value = |low: u8, bit: usize| {
                    let q = u32::from(low) | (((qh >> bit) & 1) << 4);
                    if has_min { d * q as f32 + m } else { d * (q as f32 - 16.0) }
                };
                out.extend(qs.iter().enumerate().map(|(j, &q)| value(q & 0x0F, j)));
                out.extend(qs.iter().enumerate().map(|(j, &q)| value(q >> 4, j + 16)));
            }
        }
        GgmlType::Q4K => blocks.for_each(|b| kquants::q4_k_block(b, &mut out)),
        GgmlType::Q6K => blocks.for_each(|b| kquants::q6_k_block(b, &mut out)),
        _ => return Err(DequantError::Unsupported(ty)),
    }
    debug_assert_eq!(out.len(), n_elements);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn type_table_matches_ggml() {
        for (ty, bs, ts) in [
            (GgmlType::Q4_0, 32, 18),
            (GgmlType::Q4_1, 32, 20),
            (GgmlType::Q5_0, 32, 22),
            (GgmlType::Q5_1, 32, 24),
            (GgmlType::Q8_0, 32, 34),
            (GgmlType::Q8_1, 32, 36),
            (GgmlType::Q2K, 256, 84),
            (GgmlType::Q3K, 256, 110),
            (GgmlType::Q4K, 256, 144),
            (GgmlType::Q5K, 256, 176),
            (GgmlType::Q6K, 256, 210),
            (GgmlType::Q8K, 256, 292),
        ] {
            assert_eq!((ty.block_size(), ty.type_size()), (bs, ts), "{ty}");
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(16), None);
    }

    #[test]
    fn f32_f16_bf16() {
        let mut b = Vec::new();
        for x in [1.5f32, -2.25, 0.0] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(dequantize(GgmlType::F32, &b, 3).unwrap(), vec![1.5, -2.25, 0.0]);
        // f16 0x3C00 = 1.0, 0xC000 = -2.0, 0x3800 = 0.5
        let b = [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38];
        assert_eq!(dequantize(GgmlType::F16, &b, 3).unwrap(), vec![1.0, -2.0, 0.5]);
        // bf16 0x3F80 = 1.0, 0xC040 = -3.0
        let b = [0x80, 0x3F, 0x40, 0xC0];
        assert_eq!(dequantize(GgmlType::BF16, &b, 2).unwrap(), vec![1.0, -3.0]);
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.5).to_vec();
        let qs: Vec<i8> = (0..32).map(|i| (i as i8) * 4 - 64).collect();
        b.extend(qs.iter().map(|&q| q as u8));
        let out = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(out[0], -32.0); // -64 * 0.5
        assert_eq!(out[16], 0.0); // 0
        assert_eq!(out[31], 30.0); // 60 * 0.5
        for (i, &x) in out.iter().enumerate() {
            assert_eq!(x, 0.5 * f32::from(qs[i]));
        }
    }

    #[test]
    fn q4_0_block() {
        // d = 2; byte j = low nibble j%16, high nibble 15 - j%16.
        let mut b = h(2.0).to_vec();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let out = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        // element 0: low nibble of byte 0 = 0 -> (0-8)*2 = -16
        assert_eq!(out[0], -16.0);
        // element 15: low nibble of byte 15 = 15 -> 14
        assert_eq!(out[15], 14.0);
        // element 16: high nibble of byte 0 = 15 -> 14
        assert_eq!(out[16], 14.0);
        // element 31: high nibble of byte 15 = 0 -> -16
        assert_eq!(out[31], -16.0);
        assert_eq!(out[8], 0.0);
    }

    #[test]
    fn q4_1_block() {
        // d = 0.25, m = -1; byte j = 0x?j with high nibble 3.
        let mut b = h(0.25).to_vec();
        b.extend_from_slice(&h(-1.0));
        b.extend((0..16u8).map(|j| j | (3 << 4)));
        let out = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], 0.25 * j as f32 - 1.0);
            assert_eq!(out[j + 16], 0.25 * 3.0 - 1.0);
        }
    }

    #[test]
    fn q5_0_and_q5_1_blocks() {
        // all nibbles = 0xF (low) / 0x1 (high); qh has bits set for elements 0 and 17 only.
        let qh: u32 = 1 | (1 << 17);
        let mut b0 = h(1.0).to_vec();
        b0.extend_from_slice(&qh.to_le_bytes());
        b0.extend(std::iter::repeat_n(0x1Fu8, 16));
        let out = dequantize(GgmlType::Q5_0, &b0, 32).unwrap();
        assert_eq!(out[0], 15.0); // (15 | 16) - 16
        assert_eq!(out[1], -1.0); // 15 - 16
        assert_eq!(out[16], -15.0); // 1 - 16
        assert_eq!(out[17], 1.0); // (1 | 16) - 16

        let mut b1 = h(0.5).to_vec();
        b1.extend_from_slice(&h(2.0));
        b1.extend_from_slice(&qh.to_le_bytes());
        b1.extend(std::iter::repeat_n(0x1Fu8, 16));
        let out = dequantize(GgmlType::Q5_1, &b1, 32).unwrap();
        assert_eq!(out[0], 0.5 * 31.0 + 2.0);
        assert_eq!(out[1], 0.5 * 15.0 + 2.0);
        assert_eq!(out[16], 0.5 * 1.0 + 2.0);
        assert_eq!(out[17], 0.5 * 17.0 + 2.0);
    }

    #[test]
    fn rejects_bad_sizes_and_unsupported() {
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 34], 31),
            Err(DequantError::NotBlockMultiple { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 33], 32),
            Err(DequantError::WrongByteCount { expected: 34, got: 33, .. })
        ));
        assert_eq!(
            dequantize(GgmlType::Q5K, &[0; 176], 256),
            Err(DequantError::Unsupported(GgmlType::Q5K))
        );
    }
}

//! ggml's "k-quant" super-blocks of 256 values that Gemma 3's and Qwen2.5's Q4_K_M files use:
//! Q4_K (4-bit codes, 6-bit scales and mins per 32 values) and Q6_K (6-bit codes, 8-bit scales
//! per 16 values).
//!
//! Each function follows ggml's reference dequantizer (`dequantize_row_q4_K`,
//! `dequantize_row_q6_K` in `ggml-quants.c`) operation for operation, in the same f32 order, so
//! the values are bit-identical to llama.cpp's F32 copy of the same file (checked over every
//! tensor of the Gemma and Qwen files, see `crates/model/tests/gguf_models.rs`).

use half::f16;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_K's 12 scale bytes hold eight 6-bit (scale, min) pairs, one per 32 values: pairs 0..4 are
/// the low 6 bits of bytes `j` and `j + 4`; pairs 4..8 take their low 4 bits from byte `j + 4`
/// and their top 2 bits from the spare top bits of bytes `j - 4` (scale) and `j` (min).
fn q4k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (scale, min)
    }
}

/// One Q4_K block (144 bytes: f16 d, f16 dmin, 12 scale bytes, 128 code bytes) to 256 values.
/// Values `64 i .. 64 i + 32` are the low nibbles of code bytes `32 i .. 32 i + 32` and the next
/// 32 values their high nibbles; value = `d · scale · q − dmin · min`.
pub(crate) fn q4_k_block(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let codes = &b[16..144];
    for (i, chunk) in codes.chunks_exact(32).enumerate() {
        let (s1, m1) = q4k_scale_min(2 * i, scales);
        let (s2, m2) = q4k_scale_min(2 * i + 1, scales);
        let (d1, min1) = (d * f32::from(s1), dmin * f32::from(m1));
        let (d2, min2) = (d * f32::from(s2), dmin * f32::from(m2));
        out.extend(chunk.iter().map(|&q| d1 * f32::from(q & 0x0F) - min1));
        out.extend(chunk.iter().map(|&q| d2 * f32::from(q >> 4) - min2));
    }
}

/// One Q6_K block (210 bytes: 128 bytes of low nibbles `ql`, 64 bytes of high 2-bit pairs
/// `qh`, 16 signed scales, f16 d) to 256 values, in two halves of 128. In a half, value
/// `l + 32 k` (k = 0..4, l = 0..32) takes its low 4 bits from `ql[l]` (k = 0, 2: low and high
/// nibble) or `ql[l + 32]` (k = 1, 3), its high 2 bits from bits `2k..2k+2` of `qh[l]`, and its
/// scale from `scales[l / 16 + 2k]`; value = `d · scale · (q − 32)`.
pub(crate) fn q6_k_block(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 208);
    let start = out.len();
    out.resize(start + 256, 0.0);
    let y = &mut out[start..];
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let code = |low: u8, k: usize| -> f32 {
                let q = i32::from(low) | ((i32::from(qh[l] >> (2 * k)) & 3) << 4);
                (q - 32) as f32
            };
            let scale = |k: usize| d * f32::from(sc[is + 2 * k] as i8);
            y[l] = scale(0) * code(ql[l] & 0x0F, 0);
            y[l + 32] = scale(1) * code(ql[l + 32] & 0x0F, 1);
            y[l + 64] = scale(2) * code(ql[l] >> 4, 2);
            y[l + 96] = scale(3) * code(ql[l + 32] >> 4, 3);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Blocks are packed here by an encoder written from the layout description alone, from
    //! chosen codes, scales and mins; the decoder must give back exactly
    //! `(d · scale) · q − (dmin · min)` (Q4_K) and `(d · scale) · (q − 32)` (Q6_K), in f32.
    use super::*;

    /// A deterministic stream of bytes (xorshift).
    struct Bytes(u64);
    impl Bytes {
        fn next(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 24) as u8
        }
    }

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    /// Packs Q4_K: `scales`/`mins` 6-bit, one per 32 values; `codes` 4-bit, 256 of them.
    fn pack_q4_k(d: f32, dmin: f32, scales: [u8; 8], mins: [u8; 8], codes: &[u8]) -> Vec<u8> {
        let mut sm = [0u8; 12];
        for g in 0..8 {
            let (s, m) = (scales[g], mins[g]);
            if g < 4 {
                sm[g] |= s & 63;
                sm[g + 4] |= m & 63;
            } else {
                sm[g + 4] |= (s & 15) | ((m & 15) << 4);
                sm[g - 4] |= (s >> 4) << 6;
                sm[g] |= (m >> 4) << 6;
            }
        }
        let mut qs = [0u8; 128];
        for (e, &q) in codes.iter().enumerate() {
            let (group, pos) = (e / 32, e % 32);
            let byte = &mut qs[(group / 2) * 32 + pos];
            *byte |= if group % 2 == 0 { q & 15 } else { (q & 15) << 4 };
        }
        [&h(d)[..], &h(dmin), &sm, &qs].concat()
    }

    /// Packs Q6_K: `codes` 6-bit (0..64), 256 of them; `scales` one per 16 values.
    fn pack_q6_k(d: f32, scales: [i8; 16], codes: &[u8]) -> Vec<u8> {
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for (e, &q) in codes.iter().enumerate() {
            let (half, r) = (e / 128, e % 128);
            let (k, l) = (r / 32, r % 32);
            let low = &mut ql[64 * half + l + 32 * (k % 2)];
            *low |= if k < 2 { q & 15 } else { (q & 15) << 4 };
            qh[32 * half + l] |= (q >> 4) << (2 * k);
        }
        let sc: Vec<u8> = scales.iter().map(|&s| s as u8).collect();
        [&ql[..], &qh, &sc, &h(d)].concat()
    }

    fn q4_k_expected(d: f32, dmin: f32, scales: [u8; 8], mins: [u8; 8], codes: &[u8]) -> Vec<f32> {
        let (d, dmin) = (f16::from_f32(d).to_f32(), f16::from_f32(dmin).to_f32());
        (0..256)
            .map(|e| {
                let g = e / 32;
                (d * f32::from(scales[g])) * f32::from(codes[e]) - dmin * f32::from(mins[g])
            })
            .collect()
    }

    fn q6_k_expected(d: f32, scales: [i8; 16], codes: &[u8]) -> Vec<f32> {
        let d = f16::from_f32(d).to_f32();
        (0..256)
            .map(|e| {
                let (half, r) = (e / 128, e % 128);
                let scale = scales[8 * half + (r % 32) / 16 + 2 * (r / 32)];
                (d * f32::from(scale)) * (i32::from(codes[e]) - 32) as f32
            })
            .collect()
    }

    fn decode(block: &[u8], f: fn(&[u8], &mut Vec<f32>)) -> Vec<f32> {
        let mut out = Vec::new();
        f(block, &mut out);
        out
    }

    #[test]
    fn q4_k_crafted_block() {
        // Group g has scale g + 1 (and 60 + g for the upper four, exercising the high bits) and
        // min 2 g; code of value e is e % 16.
        let scales = [1, 2, 3, 4, 60, 61, 62, 63];
        let mins = [0, 2, 4, 6, 40, 50, 33, 63];
        let codes: Vec<u8> = (0..256).map(|e| (e % 16) as u8).collect();
        let block = pack_q4_k(0.5, 0.25, scales, mins, &codes);
        assert_eq!(block.len(), 144);
        let out = decode(&block, q4_k_block);
        assert_eq!(out[0], 0.0); // 0.5·1·0 − 0.25·0
        assert_eq!(out[33], 0.5 * 2.0 * 1.0 - 0.25 * 2.0); // group 1, code 1
        assert_eq!(out[4 * 32 + 15], 0.5 * 60.0 * 15.0 - 0.25 * 40.0); // group 4: high bits
        assert_eq!(out[255], 0.5 * 63.0 * 15.0 - 0.25 * 63.0);
        assert_eq!(out, q4_k_expected(0.5, 0.25, scales, mins, &codes));
    }

    #[test]
    fn q6_k_crafted_block() {
        let scales: [i8; 16] = [1, -1, 2, -2, 127, -128, 3, 4, 5, 6, 7, 8, -9, 10, 11, 12];
        let codes: Vec<u8> = (0..256).map(|e| (e % 64) as u8).collect();
        let block = pack_q6_k(0.125, scales, &codes);
        assert_eq!(block.len(), 210);
        let out = decode(&block, q6_k_block);
        assert_eq!(out[0], 0.125 * 1.0 * -32.0); // code 0, scale 0
        assert_eq!(out[16], -0.125 * (16.0 - 32.0)); // scale 1 is -1
        assert_eq!(out[32], 0.125 * 2.0 * 0.0); // k = 1 → scale 2, code 32
        assert_eq!(out[65], 0.125 * 127.0 * (1.0 - 32.0)); // k = 2, l = 1 → scale 4
        assert_eq!(out[81], 0.125 * -128.0 * (17.0 - 32.0)); // k = 2, l = 17 → scale 5
        assert_eq!(out[225], 0.125 * 11.0 * (33.0 - 32.0)); // second half, k = 3, l = 1 → 8 + 6
        assert_eq!(out, q6_k_expected(0.125, scales, &codes));
    }

    #[test]
    fn random_blocks_decode_to_what_was_packed() {
        let mut r = Bytes(0x9E37_79B9_7F4A_7C15);
        for round in 0..200 {
            let d = f32::from(r.next()) / 64.0 - 2.0;
            let dmin = f32::from(r.next()) / 128.0;
            let scales: [u8; 8] = std::array::from_fn(|_| r.next() & 63);
            let mins: [u8; 8] = std::array::from_fn(|_| r.next() & 63);
            let codes: Vec<u8> = (0..256).map(|_| r.next() & 15).collect();
            let out = decode(&pack_q4_k(d, dmin, scales, mins, &codes), q4_k_block);
            assert_eq!(out, q4_k_expected(d, dmin, scales, mins, &codes), "q4_K round {round}");

            let scales: [i8; 16] = std::array::from_fn(|_| r.next() as i8);
            let codes: Vec<u8> = (0..256).map(|_| r.next() & 63).collect();
            let out = decode(&pack_q6_k(d, scales, &codes), q6_k_block);
            assert_eq!(out, q6_k_expected(d, scales, &codes), "q6_K round {round}");
        }
    }
}

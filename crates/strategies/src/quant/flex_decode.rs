//! Unpack and dequantize in one pass over the codes, on flex.
//!
//! Why: a quantized cache decodes every slot it holds on every decode step (attention reads
//! f32). As burn ops that is five to seven passes over the context: int4's nibble split, a
//! `cat` along the last axis (flex copies it element by element), the cast to f32, and a
//! scale and zero point broadcast along the innermost axis (flex's slow broadcast path).
//! Measured on SmolLM2 at 1,024 tokens of context, that made an int4 decode step 2.65x the f32
//! step's time, int8 1.12x (`results/perf/overhead`). Here each code byte is read once and each
//! f32 written once.
//!
//! The arithmetic is the tensor path's, operation for operation: `code * scale + zero`
//! (asymmetric; a codebook's level in place of the code) or `(code - mid) * scale` (symmetric), each rounded to f32 as burn's separate
//! `mul` and `add` are, so both paths give identical bits (tested below). Other backends, and
//! flex tensors in another dtype, take the tensor path ([`decode`] returns `None`).

use burn::prelude::*;

use super::codec::Codec;
use crate::in_place::flex_ref;

/// Decodes packed `codes` with one scale (and zero point) per `per` consecutive values.
///
/// # Shapes
/// - codes: `[n, h, d · bits / 8]` `u8`
/// - scale, zero: `[n, h, d / per]` f32 (per-token groups: `per` = group size; per-channel
///   groups, gathered one row per slot: `per` = 1)
/// - output: `[n, h, d]` f32
///
/// `None`, having computed nothing, unless every tensor is a flex tensor of the right dtype.
pub fn decode<B: Backend>(
    codec: Codec,
    codes: &Tensor<B, 3, Int>,
    scale: &Tensor<B, 3>,
    zero: Option<&Tensor<B, 3>>,
    per: usize,
) -> Option<Tensor<B, 3>> {
    let [n, h, packed] = codes.dims();
    let d = packed * 8 / codec.bits as usize;
    let codes_prim = codes.clone().into_primitive();
    let scale_prim = scale.clone().into_primitive();
    let zero_prim = zero.map(|z| z.clone().into_primitive());
    // `as_slice`: the elements in order, if they are one contiguous run of the buffer.
    let code_bytes = flex_ref(&codes_prim)?.as_slice::<u8>()?;
    let scales = flex_ref(&scale_prim)?.as_slice::<f32>()?;
    let zeros = match &zero_prim {
        Some(p) => Some(flex_ref(p)?.as_slice::<f32>()?),
        None => None,
    };
    let values = n * h * d;
    if per == 0
        || !values.is_multiple_of(per)
        || scales.len() != values / per
        || zeros.is_some_and(|z| z.len() != scales.len())
    {
        return None;
    }
    let mut out = vec![0.0f32; values];
    unpack_into(code_bytes, codec, &mut out);
    if let Some(levels) = codec.scheme.levels(codec.bits) {
        // A codebook's code is an index: its level stands in for it, as the tensor path's
        // `select` does.
        for x in out.iter_mut() {
            *x = levels[*x as usize];
        }
    }
    match (codec.scheme.has_zero_point(), zeros) {
        (true, Some(zeros)) => {
            for ((group, &s), &z) in out.chunks_exact_mut(per).zip(scales).zip(zeros) {
                for x in group {
                    *x = *x * s + z;
                }
            }
        }
        (false, _) => {
            let mid = codec.mid_code();
            for (group, &s) in out.chunks_exact_mut(per).zip(scales) {
                for x in group {
                    *x = (*x - mid) * s;
                }
            }
        }
        (true, None) => return None,
    }
    Some(Tensor::from_data(TensorData::new(out, [n, h, d]), &codes.device()))
}

/// One code per value, as f32, from [`Codec::pack`]'s layout: words of `word_bytes`
/// little-endian bytes, value `i` of a word in its bits `i·bits ..`.
fn unpack_into(codes: &[u8], codec: Codec, out: &mut [f32]) {
    if codec.bits == 8 {
        for (x, &c) in out.iter_mut().zip(codes) {
            *x = c as f32;
        }
        return;
    }
    let (per_word, word_bytes) = codec.word();
    let mask = (1u32 << codec.bits) - 1;
    for (values, bytes) in out.chunks_exact_mut(per_word).zip(codes.chunks_exact(word_bytes)) {
        let word = bytes.iter().rev().fold(0u32, |w, &b| (w << 8) | u32::from(b));
        for (i, x) in values.iter_mut().enumerate() {
            *x = ((word >> (i * codec.bits as usize)) & mask) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::IntDType;

    use super::*;
    use crate::quant::config::Scheme;

    type B = burn_flex::Flex;

    /// Values with a spread of magnitudes and signs, deterministic.
    fn values(n: usize, h: usize, d: usize) -> Tensor<B, 3> {
        let data: Vec<f32> =
            (0..n * h * d).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0).collect();
        Tensor::from_data(TensorData::new(data, [n, h, d]), &Default::default())
    }

    fn tensor_path(
        codec: Codec,
        codes: Tensor<B, 3, Int>,
        scale: Tensor<B, 4>,
        zero: Option<Tensor<B, 4>>,
        g: usize,
    ) -> Vec<f32> {
        let [n, h, _] = codes.dims();
        let unpacked = codec.unpack(codes);
        let d = unpacked.dims()[2];
        let out = codec.dequantize(unpacked.reshape([n, h, d / g, g]), scale, zero);
        out.reshape([n, h, d]).into_data().to_vec().unwrap()
    }

    #[test]
    fn per_token_groups_decode_to_the_tensor_paths_bits() {
        let (n, h, d, g) = (5, 3, 64, 32);
        for bits in [8u8, 4, 3, 2] {
            for scheme in Scheme::ALL.iter().copied().filter(|s| s.allows_bits(bits)) {
                let codec = Codec { bits, scheme };
                let q = codec.quantize(values(n, h, d).reshape([n, h, d / g, g]), 3);
                let codes = codec.pack(q.codes.reshape([n, h, d]));
                let scale = q.scale.clone().reshape([n, h, d / g]);
                let zero = q.zero.clone().map(|z| z.reshape([n, h, d / g]));
                let fused = decode(codec, &codes, &scale, zero.as_ref(), g).expect("flex");
                let want = tensor_path(codec, codes, q.scale, q.zero, g);
                assert_eq!(fused.into_data().to_vec::<f32>().unwrap(), want, "{bits} {scheme:?}");
            }
        }
    }

    #[test]
    fn one_scale_per_value_decodes_like_broadcast_per_channel_metadata() {
        let (n, h, d) = (4, 2, 8);
        let codec = Codec { bits: 4, scheme: Scheme::Asymmetric };
        // Per-channel: groups run along slots (dim 0); each slot gathers its group's row.
        let q = codec.quantize(values(n, h, d), 0);
        let codes = codec.pack(q.codes);
        let scale = q.scale.repeat_dim(0, n);
        let zero = q.zero.map(|z| z.repeat_dim(0, n));
        let fused = decode(codec, &codes, &scale, zero.as_ref(), 1).expect("flex");
        let want = codec.dequantize(codec.unpack(codes), scale, zero);
        assert_eq!(
            fused.into_data().to_vec::<f32>().unwrap(),
            want.into_data().to_vec::<f32>().unwrap()
        );
    }

    #[test]
    fn strided_or_wrong_dtype_inputs_are_declined() {
        let codec = Codec { bits: 8, scheme: Scheme::Symmetric };
        let dev = Default::default();
        let codes = values(4, 1, 8).abs().cast(IntDType::U8);
        // Half of each row of a wider buffer: a strided view.
        let strided = Tensor::<B, 3>::ones([4, 1, 16], &dev).slice([0..4, 0..1, 0..8]);
        assert!(decode(codec, &codes, &strided, None, 1).is_none());
        let i32_codes = Tensor::<B, 3, Int>::zeros([4, 1, 8], &dev);
        let scale = Tensor::<B, 3>::ones([4, 1, 8], &dev);
        assert!(decode(codec, &i32_codes, &scale, None, 1).is_none());
    }
}

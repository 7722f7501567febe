//! llama.cpp's block formats (`q8_0`, `q4_0`, `q4_1`) as kvlab schemes: codes and f16 metadata
//! equal a scalar port of llama.cpp's reference quantizers (`ggml-quants.c`,
//! `quantize_row_*_ref`, written here from the C, independent of the tensor code), values round
//! trip within the format's step, and the store's bytes are llama.cpp's block sizes exactly.

use burn::prelude::*;
use burn::tensor::f16;
use kvlab_strategies::SpecError;
use kvlab_strategies::quant::{Axis, QuantConfig, QuantStore, Scheme};
use kvlab_strategies::store::SlotStore;

type B = burn_flex::Flex;

const QK: usize = 32;

/// Values with outliers: a smooth part, a few large channels, signs mixed, some exact zeros,
/// and on a grid of 1/400, so blocks often hold both `m` and `-m` (q4_0's tie rule matters).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503);
            let base = (h % 2000) as f32 / 400.0 - 2.5;
            match i % 64 {
                7 => base * 9.0, // an outlier channel
                40 => 0.0,       // exact zeros
                _ => base,
            }
        })
        .collect()
}

fn half(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// llama.cpp `quantize_row_q4_0_ref` then `dequantize_row_q4_0`, one block.
fn q4_0_block(x: &[f32]) -> Vec<f32> {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let d16 = half(d);
    x.iter()
        .map(|&v| {
            let q = ((v * id + 8.5) as i8).min(15);
            (q as i32 - 8) as f32 * d16
        })
        .collect()
}

/// llama.cpp `quantize_row_q4_1_ref` then `dequantize_row_q4_1`, one block.
fn q4_1_block(x: &[f32]) -> Vec<f32> {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (d16, m16) = (half(d), half(min));
    x.iter()
        .map(|&v| {
            let q = (((v - min) * id + 0.5) as i8).min(15);
            q as f32 * d16 + m16
        })
        .collect()
}

/// llama.cpp `quantize_row_q8_0` (the CPU kernels round half to even) then
/// `dequantize_row_q8_0`, one block.
fn q8_0_block(x: &[f32]) -> Vec<f32> {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let d16 = half(d);
    x.iter().map(|&v| ((v * id).round_ties_even() as i8) as f32 * d16).collect()
}

fn reference(scheme: Scheme, x: &[f32]) -> Vec<f32> {
    let block = match scheme {
        Scheme::Q8_0 => q8_0_block,
        Scheme::Q4_0 => q4_0_block,
        Scheme::Q4_1 => q4_1_block,
        other => panic!("{other} is not a block format"),
    };
    x.chunks(QK).flat_map(block).collect()
}

fn bits_of(scheme: Scheme) -> u8 {
    scheme.fixed_bits().unwrap()
}

/// Writes `n` tokens of `[h, d]` into a per-token store of `scheme`, reads them back.
fn round_trip(scheme: Scheme, n: usize, h: usize, d: usize, x: &[f32]) -> Vec<f32> {
    let config = QuantConfig::per_token(bits_of(scheme), QK).with_scheme(scheme);
    let mut store = QuantStore::<B>::new(config, 1, n, h, d, &Default::default()).unwrap();
    let t = Tensor::<B, 3>::from_data(TensorData::new(x.to_vec(), [n, h, d]), &Default::default());
    let slots: Vec<usize> = (0..n).collect();
    store.write(0, &slots, t.clone(), t);
    let (k, v) = store.read(0, &slots);
    let (k, v) = (k.into_data().to_vec::<f32>().unwrap(), v.into_data().to_vec::<f32>().unwrap());
    assert_eq!(k, v, "{scheme}: keys and values share the encoding");
    k
}

const FORMATS: [Scheme; 3] = [Scheme::Q8_0, Scheme::Q4_0, Scheme::Q4_1];

#[test]
fn block_formats_decode_to_llama_cpp_reference_values_bit_for_bit() {
    let (n, h, d) = (9, 3, 64);
    for scheme in FORMATS {
        let x = values(n * h * d, 11);
        let got = round_trip(scheme, n, h, d, &x);
        let want = reference(scheme, &x);
        let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();

        assert_eq!(differ, 0, "{scheme}: {differ} of {} values differ from llama.cpp's", x.len());
    }
}

#[test]
fn block_formats_round_trip_within_their_step() {
    let (n, h, d) = (16, 2, 64);
    for scheme in FORMATS {
        let x = values(n * h * d, 5);
        let got = round_trip(scheme, n, h, d, &x);
        for (b, (xs, ys)) in x.chunks(QK).zip(got.chunks(QK)).enumerate() {
            let min = xs.iter().copied().fold(f32::INFINITY, f32::min);
            let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let amax = min.abs().max(max.abs());
            // The step; q4_0's value opposite its signed extreme clamps (code 16 -> 15), a whole
            // step off, every other value rounds to within half a step. f16 metadata adds at
            // most 2^-11 relative on the scale (times the largest code) and on q4_1's minimum.
            let (step, bound) = match scheme {
                Scheme::Q8_0 => (amax / 127.0, 0.5),
                Scheme::Q4_0 => (amax / 8.0, 1.0),
                _ => ((max - min) / 15.0, 0.5),
            };
            let slack = 16.0 * step * 2f32.powi(-11) + min.abs() * 2f32.powi(-11) + 1e-6;
            for (i, (&xv, &yv)) in xs.iter().zip(ys).enumerate() {
                let err = (xv - yv).abs();
                assert!(
                    err <= bound * step + slack,
                    "{scheme} block {b} value {i}: |{xv} - {yv}| = {err} > {bound} step ({step})"
                );
            }
            // The signed extreme of q4_0 is exact up to the f16 scale (it is code 0, -8 d).
            if scheme == Scheme::Q4_0 {
                let m = if max >= -min { max } else { min };
                let i = xs.iter().position(|&v| v == m).unwrap();
                assert!((ys[i] - m).abs() <= m.abs() * 2f32.powi(-10), "{scheme} block {b}");
            }
        }
    }
}

#[test]
fn a_block_of_zeros_decodes_to_zeros() {
    for scheme in FORMATS {
        let got = round_trip(scheme, 2, 1, 64, &[0.0; 128]);
        assert!(got.iter().all(|&v| v == 0.0), "{scheme}: {got:?}");
    }
}

#[test]
fn bytes_are_llama_cpp_block_sizes() {
    // ggml's block structs: block_q8_0 = f16 d + 32 i8 = 34 bytes; block_q4_0 = f16 d + 16
    // bytes of nibbles = 18; block_q4_1 = f16 d + f16 m + 16 = 20.
    let (layers, slots, h, d) = (3, 40, 3, 64);
    let blocks_per_plane = layers * slots * h * d / QK;
    for (scheme, block_bytes) in [(Scheme::Q8_0, 34), (Scheme::Q4_0, 18), (Scheme::Q4_1, 20)] {
        let config = QuantConfig::per_token(bits_of(scheme), QK).with_scheme(scheme);
        let store = QuantStore::<B>::new(config, layers, slots, h, d, &Default::default()).unwrap();
        let m = store.breakdown();
        assert_eq!(m.code_bytes + m.metadata_bytes, 2 * blocks_per_plane * block_bytes, "{scheme}");
        assert_eq!(
            m.metadata_bytes,
            2 * blocks_per_plane * (block_bytes - QK * bits_of(scheme) as usize / 8)
        );
        let mem = store.memory(slots);
        assert_eq!(mem.allocated_bytes + mem.metadata_bytes, 2 * blocks_per_plane * block_bytes);
    }
}

#[test]
fn per_channel_blocks_use_the_same_rule_along_slots() {
    // KIVI keys with q4_0: a block is one channel over 32 slots.
    let (n, h, d) = (32, 1, 64);
    let config = QuantConfig::kivi(4, QK, 0).with_scheme(Scheme::Q4_0);
    assert_eq!(config.keys.axis, Axis::PerChannel);
    let mut store = QuantStore::<B>::new(config, 1, n, h, d, &Default::default()).unwrap();
    let x = values(n * h * d, 3);
    let t = Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [n, h, d]), &Default::default());
    let slots: Vec<usize> = (0..n).collect();
    store.write(0, &slots, t.clone(), t);
    let k = store.read(0, &slots).0.into_data().to_vec::<f32>().unwrap();
    for c in 0..d {
        let column: Vec<f32> = (0..n).map(|s| x[s * d + c]).collect();
        let want = q4_0_block(&column);
        for s in 0..n {
            assert_eq!(k[s * d + c].to_bits(), want[s].to_bits(), "channel {c} slot {s}");
        }
    }
}

#[test]
fn a_format_refuses_other_bits_and_group_sizes() {
    let dev = Default::default();
    let wrong_bits = QuantConfig::per_token(4, QK).with_scheme(Scheme::Q8_0);
    let err = SpecError::from(QuantStore::<B>::new(wrong_bits, 1, 32, 1, 64, &dev).unwrap_err());
    assert!(err.to_string().contains("scheme = q8_0"), "{err}");
    let wrong_group = QuantConfig::per_token(4, 64).with_scheme(Scheme::Q4_1);
    let err = SpecError::from(QuantStore::<B>::new(wrong_group, 1, 32, 1, 64, &dev).unwrap_err());
    assert!(err.to_string().contains("group_size = 64"), "{err}");
}

#[test]
fn interleaved_keys_are_grouped_as_llama_cpp_groups_them() {
    use kvlab_strategies::key_order::{InterleavedKeys, interleaved_from_half_split};
    use kvlab_strategies::store::F32Store;
    let (n, h, d) = (4, 3, 64);
    let dev = Default::default();
    let x = values(n * h * d, 17);
    let t = Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [n, h, d]), &dev);
    let slots: Vec<usize> = (0..n).collect();
    // f32: a permutation in and its inverse out, exactly.
    let mut f32_store =
        InterleavedKeys::new(Box::new(F32Store::<B>::new(1, n, h, d, &dev)), d, &dev);
    f32_store.write(0, &slots, t.clone(), t.clone());
    let (k, v) = f32_store.read(0, &slots);
    assert_eq!(k.into_data().to_vec::<f32>().unwrap(), x);
    assert_eq!(v.into_data().to_vec::<f32>().unwrap(), x);
    // q4_0: each head's keys are quantized in GGUF order (position 2i + s holds channel
    // s·d/2 + i), values in their own order.
    let config = QuantConfig::per_token(4, QK).with_scheme(Scheme::Q4_0);
    let quant = QuantStore::<B>::new(config, 1, n, h, d, &dev).unwrap();
    let mut store = InterleavedKeys::new(Box::new(quant), d, &dev);
    store.write(0, &slots, t.clone(), t);
    let (k, v) = store.read(0, &slots);
    let (k, v) = (k.into_data().to_vec::<f32>().unwrap(), v.into_data().to_vec::<f32>().unwrap());
    let perm = interleaved_from_half_split(d);
    for (head, (xs, ks)) in x.chunks(d).zip(k.chunks(d)).enumerate() {
        let gguf: Vec<f32> = perm.iter().map(|&c| xs[c]).collect();
        let decoded = reference(Scheme::Q4_0, &gguf);
        for (p, &c) in perm.iter().enumerate() {
            assert_eq!(ks[c], decoded[p], "head vector {head}, channel {c}");
        }
    }
    assert_eq!(v, reference(Scheme::Q4_0, &x), "values keep their order");
    // The index vectors are counted as metadata; no byte per token changes.
    let plain = QuantStore::<B>::new(config, 1, n, h, d, &dev).unwrap().memory(n);
    let mem = store.memory(n);
    assert_eq!(mem.allocated_bytes, plain.allocated_bytes);
    assert!(mem.metadata_bytes > plain.metadata_bytes);
}

#[test]
fn llama_cpp_key_order_is_interleaved_for_llama_and_half_split_for_neox_families() {
    use kvlab_model::generate::{Sampling, generate};
    use kvlab_model::init::random_weights;
    use kvlab_model::{Model, ModelConfig};
    use kvlab_strategies::key_order::KeyOrder;
    use kvlab_strategies::{StrategyKind, StrategySpec};
    let dev = Default::default();
    let prompts: Vec<Vec<u32>> = vec![(0..12u32).map(|i| (i * 13 + 3) % 100).collect()];
    let q4_0 = |order: KeyOrder| StrategySpec {
        bits: Some(4),
        group_size: Some(QK),
        scheme: Some(Scheme::Q4_0),
        key_order: Some(order),
        ..StrategySpec::new(StrategyKind::STATIC)
    };
    for neox_rope in [false, true] {
        let mut config = ModelConfig::seed_toy();
        config.arch.neox_rope = neox_rope;
        let model = Model::<B>::from_weights(&random_weights(&config, 5), &dev).unwrap();
        let logits = |order: KeyOrder| -> Vec<f32> {
            let mut cache = q4_0(order).build::<B>(&config, 1, 20, &dev).unwrap();
            let mut out = Vec::new();
            generate(&model, cache.as_mut(), &prompts, 6, &Sampling::Greedy, |step| {
                out.extend(
                    step.logits.clone().into_data().convert::<f32>().to_vec::<f32>().unwrap(),
                );
            })
            .unwrap();
            out
        };
        let (half_split, interleaved) =
            (logits(KeyOrder::HalfSplit), logits(KeyOrder::Interleaved));
        assert_ne!(half_split, interleaved, "the two orders group different channels");
        let want = if neox_rope { half_split } else { interleaved };
        assert_eq!(logits(KeyOrder::LlamaCpp), want, "neox_rope {neox_rope}");
    }
}

//! Quantization round trips: every decoded value is within half a quantization step of what was
//! written, for each axis, both schemes and every width (8, 4, 3, 2 bits); packing is exact and
//! takes `bits / 8` bytes per value.

use burn::prelude::*;
use burn::tensor::DType;
use kvlab_strategies::quant::{Axis, Codec, Encoding, QuantConfig, QuantStore, Scheme};
use kvlab_strategies::store::SlotStore;

type B = burn_flex::Flex;

const N_KV: usize = 2;
const HEAD_DIM: usize = 16;
const SLOTS: usize = 16;
const GROUP: usize = 8;

/// Deterministic values with a spread of ranges and a few outlier channels.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n * N_KV * HEAD_DIM)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            let channel = i % HEAD_DIM;
            if channel == 3 { 20.0 * u + 5.0 } else { u * (1.0 + (i % 7) as f32) }
        })
        .collect()
}

fn tensor(data: &[f32], n: usize) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(data.to_vec(), [n, N_KV, HEAD_DIM]), &Default::default())
}

fn host(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn idx(slot: usize, head: usize, ch: usize) -> usize {
    (slot * N_KV + head) * HEAD_DIM + ch
}

/// The group members of element `(slot, head, ch)` under `axis`.
fn group_of(axis: Axis, slot: usize, head: usize, ch: usize) -> Vec<usize> {
    match axis {
        Axis::PerToken => {
            let g0 = ch / GROUP * GROUP;
            (g0..g0 + GROUP).map(|c| idx(slot, head, c)).collect()
        }
        Axis::PerChannel => {
            let s0 = slot / GROUP * GROUP;
            (s0..s0 + GROUP).map(|s| idx(s, head, ch)).collect()
        }
    }
}

/// Writes `SLOTS` tokens (in two calls, so per-channel groups complete across writes), reads
/// them back and checks each element against its group's step.
fn check(bits: u8, scheme: Scheme, key_axis: Axis, value_axis: Axis) {
    let side = |axis| Encoding { bits, scheme, axis, group_size: GROUP };
    let config = QuantConfig { keys: side(key_axis), values: side(value_axis), residual: 0 };
    let codec = Codec { bits, scheme };
    let mut store =
        QuantStore::<B>::new(config, 1, SLOTS, N_KV, HEAD_DIM, &Default::default()).unwrap();
    let (k, v) = (values(SLOTS, 1), values(SLOTS, 2));
    let half = SLOTS / 2 + 3;
    let first: Vec<usize> = (0..half).collect();
    let rest: Vec<usize> = (half..SLOTS).collect();
    let part =
        |x: &[f32], r: &[usize]| tensor(&x[idx(r[0], 0, 0)..idx(r[0] + r.len(), 0, 0)], r.len());
    store.write(0, &first, part(&k, &first), part(&v, &first));
    store.write(0, &rest, part(&k, &rest), part(&v, &rest));
    assert_eq!(store.breakdown().pending_groups, 0, "every group is complete");
    let all: Vec<usize> = (0..SLOTS).collect();
    let (rk, rv) = store.read(0, &all);
    for (name, axis, want, got) in [("k", key_axis, &k, host(rk)), ("v", value_axis, &v, host(rv))]
    {
        let mut exact = true;
        for s in 0..SLOTS {
            for h in 0..N_KV {
                for c in 0..HEAD_DIM {
                    let members = group_of(axis, s, h, c);
                    let min = members.iter().map(|&i| want[i]).fold(f32::INFINITY, f32::min);
                    let max = members.iter().map(|&i| want[i]).fold(f32::NEG_INFINITY, f32::max);
                    let step = codec.step(min, max);
                    let i = idx(s, h, c);
                    let err = (want[i] - got[i]).abs();
                    let eps = 1e-5 * max.abs().max(min.abs()).max(1.0);
                    assert!(
                        err <= step / 2.0 + eps,
                        "int{bits} {scheme:?} {name} {axis:?}: |{} - {}| = {err} > step/2 = {}",
                        want[i],
                        got[i],
                        step / 2.0
                    );
                    exact &= err == 0.0;
                }
            }
        }
        assert!(!exact, "{name}: a lossy round trip should not be exact everywhere");
    }
}

#[test]
fn quant_round_trip_within_half_a_step() {
    for bits in [8, 4, 3, 2] {
        for scheme in [Scheme::Asymmetric, Scheme::Symmetric] {
            check(bits, scheme, Axis::PerToken, Axis::PerToken);
            check(bits, scheme, Axis::PerChannel, Axis::PerToken);
            check(bits, scheme, Axis::PerToken, Axis::PerChannel);
        }
    }
}

#[test]
fn quant_int4_packs_two_values_per_byte() {
    let codec = Codec { bits: 4, scheme: Scheme::Asymmetric };
    // Every (low, high) pair of nibbles: 256 pairs, 512 codes in one head vector.
    let codes: Vec<u8> = (0..256u32).flat_map(|p| [(p % 16) as u8, (p / 16) as u8]).collect();
    let device = Default::default();
    let t = Tensor::<B, 3, Int>::from_data(
        TensorData::new(codes.clone(), [1, 1, 512]),
        (&device, DType::U8),
    );
    let packed = codec.pack(t);
    assert_eq!(packed.dtype(), DType::U8);
    assert_eq!(packed.dims(), [1, 1, 256]);
    let bytes = packed.clone().into_data();
    assert_eq!(bytes.bytes.len(), 256, "one byte per pair");
    let bytes: Vec<u8> = bytes.to_vec().unwrap();
    assert_eq!(bytes, (0..=255u8).collect::<Vec<_>>(), "byte = low | high << 4");
    let unpacked = codec.unpack(packed);
    assert_eq!(unpacked.dtype(), DType::U8);
    assert_eq!(unpacked.into_data().to_vec::<u8>().unwrap(), codes);
}

/// Packs `codes` by hand, bit by bit: value `i` takes bits `i·bits ..` of one long
/// little-endian bit string (what `Codec::pack` does word by word).
fn pack_by_hand(codes: &[u8], bits: usize) -> Vec<u8> {
    let mut out = vec![0u8; codes.len() * bits / 8];
    for (i, &c) in codes.iter().enumerate() {
        for b in 0..bits {
            let at = i * bits + b;
            out[at / 8] |= ((c >> b) & 1) << (at % 8);
        }
    }
    out
}

/// 3 and 2 bits: every code in every position of a word, packed into exactly `bits / 8` bytes
/// per value, in the bit order a reference packer written here gives, and back.
#[test]
fn quant_low_bit_codes_pack_exactly() {
    let device = Default::default();
    for bits in [3u8, 2] {
        let codec = Codec { bits, scheme: Scheme::Asymmetric };
        let levels = 1u32 << bits;
        // Every code at every position of a word (8 values per 3-bit word, 4 per 2-bit).
        let d = 64;
        let codes: Vec<u8> = (0..4 * d as u32).map(|i| ((i * 7 + i / 5) % levels) as u8).collect();
        let t = Tensor::<B, 3, Int>::from_data(
            TensorData::new(codes.clone(), [4, 1, d]),
            (&device, DType::U8),
        );
        let packed = codec.pack(t);
        assert_eq!(packed.dtype(), DType::U8);
        assert_eq!(packed.dims(), [4, 1, d * bits as usize / 8]);
        let data = packed.clone().into_data();
        assert_eq!(data.bytes.len(), codes.len() * bits as usize / 8, "int{bits}: bytes");
        assert_eq!(codec.code_bytes(codes.len()), data.bytes.len());
        let bytes: Vec<u8> = data.to_vec().unwrap();
        // Rows are packed separately; each row is a whole number of words.
        let want: Vec<u8> =
            codes.chunks(d).flat_map(|row| pack_by_hand(row, bits as usize)).collect();
        assert_eq!(bytes, want, "int{bits}: bit order");
        let unpacked = codec.unpack(packed);
        assert_eq!(unpacked.dtype(), DType::U8);
        assert_eq!(unpacked.into_data().to_vec::<u8>().unwrap(), codes, "int{bits}: back");
    }
}

#[test]
fn quant_constant_groups_decode_exactly() {
    for scheme in [Scheme::Asymmetric, Scheme::Symmetric] {
        let config = QuantConfig::kivi(4, GROUP, 0).with_scheme(scheme);
        let mut store =
            QuantStore::<B>::new(config, 1, SLOTS, N_KV, HEAD_DIM, &Default::default()).unwrap();
        let all: Vec<usize> = (0..SLOTS).collect();
        let x = Tensor::<B, 3>::full([SLOTS, N_KV, HEAD_DIM], 0.0, &Default::default());
        store.write(0, &all, x.clone().add_scalar(1.5), x);
        let (k, v) = store.read(0, &all);
        assert!(host(k).iter().all(|&e| (e - 1.5).abs() < 1e-6), "{scheme:?}");
        assert!(host(v).iter().all(|&e| e == 0.0), "{scheme:?}");
    }
}

/// ndarray keeps `u8` codes too, and decodes what flex decodes.
#[test]
fn quant_ndarray_matches_flex() {
    type N = burn_ndarray::NdArray<f32>;
    let (k, v) = (values(SLOTS, 3), values(SLOTS, 4));
    let all: Vec<usize> = (0..SLOTS).collect();
    let config = QuantConfig::kivi(4, GROUP, 0);
    let mut flex =
        QuantStore::<B>::new(config, 1, SLOTS, N_KV, HEAD_DIM, &Default::default()).unwrap();
    flex.write(0, &all, tensor(&k, SLOTS), tensor(&v, SLOTS));
    let mut nd =
        QuantStore::<N>::new(config, 1, SLOTS, N_KV, HEAD_DIM, &Default::default()).unwrap();
    let t = |x: &[f32]| {
        Tensor::<N, 3>::from_data(
            TensorData::new(x.to_vec(), [SLOTS, N_KV, HEAD_DIM]),
            &Default::default(),
        )
    };
    nd.write(0, &all, t(&k), t(&v));
    assert_eq!(nd.breakdown(), flex.breakdown(), "same bytes: codes are u8 on both");
    let (fk, fv) = flex.read(0, &all);
    let (nk, nv) = nd.read(0, &all);
    let close = |a: Vec<f32>, b: Vec<f32>| {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5 * x.abs().max(1.0))
    };
    assert!(close(host(fk), nk.into_data().to_vec::<f32>().unwrap()));
    assert!(close(host(fv), nv.into_data().to_vec::<f32>().unwrap()));
}

//! `QuantStore` behaviour behind the slot seam: residual exactness, overwrite (ring) semantics of
//! per-channel groups, `move_slots`, validation, and a memory report equal to its closed form.

use burn::prelude::*;
use kvlab_strategies::SpecError;
use kvlab_strategies::quant::{Axis, Encoding, QuantConfig, QuantStore, Scheme};
use kvlab_strategies::store::{SlotStore, StoreMemory};

type B = burn_flex::Flex;

fn token(n: usize, h: usize, d: usize, seed: u32) -> Tensor<B, 3> {
    let data: Vec<f32> = (0..n * h * d)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 1000) as f32 / 97.0
                - 5.0
        })
        .collect();
    Tensor::from_data(TensorData::new(data, [n, h, d]), &Default::default())
}

fn host(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn quant_residual_slots_read_bit_exact() {
    let (h, d, r) = (2, 16, 8);
    let mut store =
        QuantStore::<B>::new(QuantConfig::kivi(4, 4, r), 2, 32, h, d, &Default::default()).unwrap();
    let mut written = Vec::new();
    // A 5-token prefill then single-token decode steps: 20 tokens.
    let mut steps: Vec<Vec<usize>> = vec![(0..5).collect()];
    steps.extend((5..20).map(|s| vec![s]));
    for (i, slots) in steps.iter().enumerate() {
        let (k, v) = (token(slots.len(), h, d, i as u32), token(slots.len(), h, d, 100 + i as u32));
        for layer in 0..2 {
            store.write(layer, slots, k.clone(), v.clone());
        }
        for (j, &s) in slots.iter().enumerate() {
            let row = |t: &Tensor<B, 3>| host(t.clone().slice([j..j + 1, 0..h, 0..d]));
            written.push((s, row(&k), row(&v)));
        }
    }
    for layer in 0..2 {
        for (s, k, v) in &written {
            let (rk, rv) = store.read(layer, &[*s]);
            let (rk, rv) = (host(rk), host(rv));
            if *s >= 20 - r {
                assert_eq!(&rk, k, "layer {layer} slot {s}: residual key must be bit-exact");
                assert_eq!(&rv, v, "layer {layer} slot {s}: residual value must be bit-exact");
            } else {
                assert!(max_diff(&rv, v) > 0.0, "slot {s} left the residual: quantized");
                assert!(max_diff(&rk, k) < 1.0 && max_diff(&rv, v) < 1.0);
            }
        }
    }
    assert_eq!(store.breakdown().residual_slots, 2 * r);
}

#[test]
fn quant_ring_overwrite_restages_the_group() {
    // A window of 8 slots, per-channel groups of 4 (the `window` strategy's ring).
    let (h, d, g) = (2, 8, 4);
    let config = {
        let c = QuantConfig::per_token(8, g);
        QuantConfig { keys: Encoding { axis: Axis::PerChannel, ..c.keys }, ..c }
    };
    let mut store = QuantStore::<B>::new(config, 1, 8, h, d, &Default::default()).unwrap();
    let all: Vec<usize> = (0..8).collect();
    store.write(0, &all[..3], token(3, h, d, 1), token(3, h, d, 2));
    assert_eq!(store.breakdown().pending_groups, 1, "group 0 has 3 of 4 slots: staged");
    store.write(0, &all[3..], token(5, h, d, 3), token(5, h, d, 4));
    assert_eq!(store.breakdown().pending_groups, 0, "both groups complete and quantized");
    let (before, _) = store.read(0, &all);
    let before = host(before);

    // The ring wraps: slot 0 takes token 8. Group 0 is pending again.
    let new = token(1, h, d, 9);
    store.write(0, &[0], new.clone(), token(1, h, d, 10));
    let m = store.breakdown();
    assert_eq!(m.pending_groups, 1);
    assert_eq!(m.staging_bytes, g * h * d * 4);
    let (now, _) = store.read(0, &all);
    let now = host(now);
    let row = h * d;
    assert_eq!(&now[..row], &host(new)[..], "the staged new token reads exactly");
    assert_eq!(&now[row..], &before[row..], "untouched slots keep their decoded values");

    // Slots 1..4 are rewritten: group 0 is complete again and re-quantized.
    let newer = token(3, h, d, 11);
    store.write(0, &[1, 2, 3], newer.clone(), token(3, h, d, 12));
    assert_eq!(store.breakdown().pending_groups, 0);
    assert_eq!(store.breakdown().staging_bytes, 0);
    let (k, _) = store.read(0, &[1, 2, 3]);
    let err = max_diff(&host(k), &host(newer));
    assert!(err > 0.0 && err < 0.05, "re-quantized at int8: error {err}");
}

#[test]
fn quant_move_slots_shifts_the_window() {
    let (h, d) = (2, 8);
    for (config, exact) in [
        (QuantConfig::per_token(4, 4), true),
        (QuantConfig::kivi(8, 4, 0), false),
        (QuantConfig::kivi(4, 4, 3), false),
    ] {
        let mut store = QuantStore::<B>::new(config, 1, 8, h, d, &Default::default()).unwrap();
        let all: Vec<usize> = (0..8).collect();
        store.write(0, &all, token(8, h, d, 5), token(8, h, d, 6));
        let (k0, v0) = store.read(0, &all[1..]);
        store.move_slots(0, 1, 0, 7);
        let (k1, v1) = store.read(0, &all[..7]);
        let (dk, dv) = (max_diff(&host(k0), &host(k1)), max_diff(&host(v0), &host(v1)));
        assert_eq!(dv, 0.0, "{config:?}: per-token values move exactly");
        if exact {
            assert_eq!(dk, 0.0, "{config:?}");
        } else {
            // Per-channel keys re-stage: groups are rebuilt from decoded values, each within
            // half a step of them (values span 10.3, a step is 10.3 / (2^bits - 1)).
            let step = 10.31 / ((1u32 << config.keys.bits) - 1) as f32;
            assert!(dk <= step / 2.0 + 1e-5, "{config:?}: re-quantized keys moved with error {dk}");
        }
        // The last residual entries followed their tokens (slot 7 -> 6, ...).
        if config.residual > 0 {
            let (k, _) = store.read(0, &[6]);
            let want = token(8, h, d, 5).slice([7..8, 0..h, 0..d]);
            assert_eq!(host(k), host(want), "residual entry moved with its slot");
        }
    }
}

#[test]
fn quant_group_aligned_per_channel_move_is_exact() {
    let (h, d) = (1, 4);
    let mut store =
        QuantStore::<B>::new(QuantConfig::kivi(4, 4, 0), 1, 12, h, d, &Default::default()).unwrap();
    let slots: Vec<usize> = (0..10).collect();
    store.write(0, &slots, token(10, h, d, 7), token(10, h, d, 8));
    let (k0, _) = store.read(0, &slots[4..10]);
    store.move_slots(0, 4, 0, 8); // groups 1, 2 -> 0, 1; group 2 is pending (2 of 4 written)
    let (k1, _) = store.read(0, &slots[0..6]);
    assert_eq!(host(k0), host(k1));
    assert_eq!(store.breakdown().pending_groups, 2, "the staged group was copied, not moved");
}

#[test]
fn quant_invalid_configs_name_the_key() {
    let dev = Default::default();
    let key = |e: kvlab_strategies::quant::QuantError| match SpecError::from(e) {
        SpecError::Invalid { key, .. } => key,
        other => panic!("unexpected {other:?}"),
    };
    let new =
        |c: QuantConfig, slots: usize, hd: usize| QuantStore::<B>::new(c, 1, slots, 2, hd, &dev);
    assert_eq!(key(new(QuantConfig::per_token(5, 8), 8, 16).unwrap_err()), "bits");
    assert_eq!(key(new(QuantConfig::per_token(1, 8), 8, 16).unwrap_err()), "bits");
    // 3 bits pack 8 channels into 3 bytes, 2 bits 4 into 1: head_dim must hold whole words.
    assert_eq!(key(new(QuantConfig::per_token(3, 4), 8, 12).unwrap_err()), "bits");
    assert_eq!(key(new(QuantConfig::per_token(2, 2), 8, 6).unwrap_err()), "bits");
    assert!(new(QuantConfig::per_token(3, 8), 8, 16).is_ok());
    assert!(new(QuantConfig::per_token(2, 2), 8, 4).is_ok());
    assert_eq!(key(new(QuantConfig::per_token(8, 0), 8, 16).unwrap_err()), "group_size");
    assert_eq!(key(new(QuantConfig::per_token(8, 12), 8, 16).unwrap_err()), "group_size");
    assert_eq!(key(new(QuantConfig::per_token(4, 1), 8, 15).unwrap_err()), "bits", "odd head_dim");
    // KIVI values are per-token: the group must divide head_dim too.
    assert_eq!(key(new(QuantConfig::kivi(8, 32, 0), 64, 16).unwrap_err()), "group_size");
    // Per-channel groups span slots.
    assert_eq!(key(new(QuantConfig::kivi(8, 8, 0), 12, 16).unwrap_err()), "group_size");
    let kivi = QuantConfig::kivi(4, 32, 64);
    assert_eq!(key(kivi.check_alignment(100).unwrap_err()), "group_size");
    assert!(kivi.check_alignment(96).is_ok());
    assert!(QuantConfig::per_token(4, 32).check_alignment(100).is_ok(), "per-token: any region");
    let err = SpecError::from(kivi.check_alignment(100).unwrap_err()).to_string();
    assert!(err.starts_with("group_size = 32:"), "{err}");
}

#[test]
fn quant_memory_equals_closed_form() {
    // 30 layers, 3 kv heads, head_dim 64, 1024 slots, group 32 (SmolLM2-135M's K/V shape).
    let (l, s, h, d, g) = (30, 1024, 3, 64, 32);
    let dev = Default::default();

    // int8, per-token, asymmetric: codes 1 byte/value; scale + zero per 32 channels.
    let store = QuantStore::<B>::new(QuantConfig::per_token(8, g), l, s, h, d, &dev).unwrap();
    let codes = 2 * 30 * 1024 * 3 * 64; // K and V: 11_796_480
    let meta = 2 * 30 * 1024 * 3 * (64 / 32) * 4 * 2; // 2_949_120
    assert_eq!((codes, meta), (11_796_480, 2_949_120));
    assert_eq!(
        store.memory(0),
        StoreMemory { allocated_bytes: codes, live_bytes: 0, metadata_bytes: meta }
    );
    assert_eq!(store.memory(100).live_bytes, 100 * 2 * 30 * 3 * 64);
    assert_eq!(store.breakdown().total(), 14_745_600);

    // int3 and int2, per-token: 3 bytes per 8 values, 1 byte per 4; the same metadata.
    for (bits, code_bytes) in [(3, 2 * 30 * 1024 * 3 * 64 * 3 / 8), (2, 2 * 30 * 1024 * 3 * 64 / 4)]
    {
        let store =
            QuantStore::<B>::new(QuantConfig::per_token(bits, g), l, s, h, d, &dev).unwrap();
        assert_eq!(
            store.memory(0),
            StoreMemory { allocated_bytes: code_bytes, live_bytes: 0, metadata_bytes: meta },
            "int{bits}"
        );
        assert_eq!(store.memory(100).live_bytes, 100 * 2 * 30 * 3 * 64 * bits as usize / 8);
    }
    assert_eq!(2 * 30 * 1024 * 3 * 64 * 3 / 8, 4_423_680);

    // int8 symmetric: scales only.
    let sym = QuantConfig::per_token(8, g).with_scheme(Scheme::Symmetric);
    let store = QuantStore::<B>::new(sym, l, s, h, d, &dev).unwrap();
    assert_eq!(store.memory(0).metadata_bytes, 2 * 30 * 1024 * 3 * 2 * 4);

    // int4 KIVI, residual 32: codes half a byte/value; K scale+zero per channel per 32 slots,
    // V per 32 channels per slot; f32 residual ring of 32 slots, K and V.
    let mut store = QuantStore::<B>::new(QuantConfig::kivi(4, g, 32), l, s, h, d, &dev).unwrap();
    let codes = 2 * 30 * 1024 * 3 * 64 / 2; // 5_898_240
    let k_meta = 30 * (1024 / 32) * 3 * 64 * 4 * 2; // 1_474_560
    let v_meta = 30 * 1024 * 3 * (64 / 32) * 4 * 2; // 1_474_560
    let residual = 30 * 2 * 32 * 3 * 64 * 4; // 1_474_560
    assert_eq!(
        store.memory(0),
        StoreMemory {
            allocated_bytes: codes + residual,
            live_bytes: 0,
            metadata_bytes: k_meta + v_meta
        }
    );
    assert_eq!(store.breakdown().total(), 5_898_240 + 2_949_120 + 1_474_560);

    // 40 tokens written in every layer: key group 0 quantized, group 1 staged (8 of 32 slots).
    let slots: Vec<usize> = (0..40).collect();
    for layer in 0..l {
        store.write(layer, &slots, token(40, h, d, 1), token(40, h, d, 2));
    }
    let staging = 30 * 32 * 3 * 64 * 4; // one pending group per layer: 737_280
    let m = store.breakdown();
    assert_eq!((m.pending_groups, m.staging_bytes, m.residual_slots), (30, staging, 30 * 32));
    assert_eq!(m.total(), codes + k_meta + v_meta + residual + staging);
    assert_eq!(m.total(), 11_059_200);
    let live = 40 * (2 * 30 * 3 * 64 / 2) + staging + 30 * 32 * 2 * 3 * 64 * 4;
    assert_eq!(
        store.memory(40),
        StoreMemory {
            allocated_bytes: codes + residual + staging,
            live_bytes: live,
            metadata_bytes: k_meta + v_meta
        }
    );
}

#[test]
fn quant_asymmetric_key_value_bytes_equal_the_formula() {
    // SmolLM2-135M's K/V shape: 30 layers, 3 kv heads, head_dim 64, 1024 slots, group 32.
    let (l, s, h, d, g) = (30, 1024, 3, 64, 32);
    let dev = Default::default();
    // Per side: codes L·S·H·D·bits/8 (f32: 4 bytes a value), scale + zero per 32 channels
    // of a slot (none for an f32 side).
    let side_codes =
        |bits: usize| if bits == 32 { l * s * h * d * 4 } else { l * s * h * d * bits / 8 };
    let side_meta = |bits: usize| if bits == 32 { 0 } else { l * s * h * (d / g) * 4 * 2 };
    for (kb, vb) in [(8u8, 4u8), (4, 2), (4, 4), (2, 4), (8, 3), (4, 32), (32, 2)] {
        let config = QuantConfig::per_token(kb, g).with_bits(kb, vb);
        let store = QuantStore::<B>::new(config, l, s, h, d, &dev).unwrap();
        let (k, v) = (kb as usize, vb as usize);
        let want = StoreMemory {
            allocated_bytes: side_codes(k) + side_codes(v),
            live_bytes: 0,
            metadata_bytes: side_meta(k) + side_meta(v),
        };
        assert_eq!(store.memory(0), want, "K{kb}V{vb}");
        let per_slot = (side_codes(k) + side_codes(v)) / s;
        assert_eq!(store.memory(100).live_bytes, 100 * per_slot, "K{kb}V{vb} live");
    }
    // K8V4 by hand: 30·1024·3·64 = 5_898_240 values a side; 5_898_240 + 2_949_120 code bytes.
    let k8v4 = QuantStore::<B>::new(QuantConfig::per_token(8, g).with_bits(8, 4), l, s, h, d, &dev);
    assert_eq!(k8v4.unwrap().memory(0).allocated_bytes, 8_847_360);
}

#[test]
fn quant_each_side_reads_back_in_its_own_encoding() {
    // K4V32: keys quantized, values exact; K32V2 the other way round.
    let (n, h, d) = (16, 2, 32);
    let dev = Default::default();
    let slots: Vec<usize> = (0..n).collect();
    let (k, v) = (token(n, h, d, 1), token(n, h, d, 2));
    let err =
        |a: Tensor<B, 3>, b: &Tensor<B, 3>| -> f32 { a.sub(b.clone()).abs().max().into_scalar() };
    for (kb, vb) in [(4u8, 32u8), (32, 2)] {
        let config = QuantConfig::per_token(kb, 16).with_bits(kb, vb);
        let mut store = QuantStore::<B>::new(config, 1, n, h, d, &dev).unwrap();
        store.write(0, &slots, k.clone(), v.clone());
        let (rk, rv) = store.read(0, &slots);
        let (ek, ev) = (err(rk, &k), err(rv, &v));
        assert_eq!(ek == 0.0, kb == 32, "K{kb}V{vb}: key error {ek}");
        assert_eq!(ev == 0.0, vb == 32, "K{kb}V{vb}: value error {ev}");
    }
    // A side's error is its own width's: values at 2 bits err more than keys at 4 on the same data.
    let config = QuantConfig::per_token(4, 16).with_bits(4, 2);
    let mut store = QuantStore::<B>::new(config, 1, n, h, d, &dev).unwrap();
    store.write(0, &slots, k.clone(), k.clone());
    let (rk, rv) = store.read(0, &slots);
    assert!(err(rv, &k) > err(rk, &k));
}

#[test]
fn quant_side_errors_name_the_side_key() {
    let dev = Default::default();
    let key = |c: QuantConfig| match QuantStore::<B>::new(c, 1, 8, 2, 32, &dev) {
        Err(e) => match SpecError::from(e) {
            SpecError::Invalid { key, .. } => key,
            other => panic!("unexpected {other:?}"),
        },
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(key(QuantConfig::per_token(8, 32).with_bits(5, 8)), "key_bits");
    assert_eq!(key(QuantConfig::per_token(8, 32).with_bits(8, 5)), "value_bits");
    let q4_0_values = QuantConfig::per_token(8, 32).with_bits(8, 8);
    let mixed = QuantConfig {
        values: kvlab_strategies::quant::Encoding { scheme: Scheme::Q4_0, ..q4_0_values.values },
        ..q4_0_values
    };
    assert_eq!(key(mixed), "value_scheme");
}

//! Bits wrap any storage: int8 and int4 stores under static, window, shift-window, sink and
//! paged run through the model, stay close to their f32 twins, and report the packed bytes.

use kvlab_model::generate::feed_pending;
use kvlab_model::init::random_weights;
use kvlab_model::{KvCache, Model, ModelConfig};
use kvlab_strategies::quant::QuantPreset;
use kvlab_strategies::{StrategyKind, StrategySpec};

type B = burn_flex::Flex;

/// Teacher-forced: the same 29 tokens per row go through every cache (a 9-token prompt, then
/// one at a time), so each step's logits are comparable even where greedy choices would differ.
fn logits(model: &Model<B>, cache: &mut dyn KvCache<B>) -> Vec<Vec<f32>> {
    let rows: Vec<Vec<u32>> =
        (0..2).map(|r| (0..29u32).map(|i| (i * 13 + r * 7) % 100).collect()).collect();
    (9..=29)
        .map(|n| {
            let seqs: Vec<Vec<u32>> = rows.iter().map(|r| r[..n].to_vec()).collect();
            let (l, _) = feed_pending(model, cache, &seqs, &model.device()).unwrap();
            l.into_data().to_vec::<f32>().unwrap()
        })
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn int8_and_int4_wrap_every_slot_strategy() {
    let config = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    let model = Model::<B>::from_weights(&random_weights(&config, 9), &Default::default()).unwrap();
    let bases = [
        StrategySpec::new(StrategyKind::STATIC),
        StrategySpec { cache_tokens: Some(16), ..StrategySpec::new(StrategyKind::named("window")) },
        StrategySpec {
            cache_tokens: Some(16),
            ..StrategySpec::new(StrategyKind::named("shift-window"))
        },
        StrategySpec {
            cache_tokens: Some(16),
            sink_tokens: Some(4),
            ..StrategySpec::new(StrategyKind::named("sink"))
        },
        StrategySpec { block_size: Some(16), ..StrategySpec::new(StrategyKind::PAGED) },
    ];
    for base in bases {
        let mut f32_cache = base.build::<B>(&config, 2, 32, &Default::default()).unwrap();
        let want = logits(&model, f32_cache.as_mut());
        for (bits, preset, bound) in [
            (8, QuantPreset::PerToken, 0.1),
            (8, QuantPreset::Kivi, 0.1),
            (4, QuantPreset::PerToken, 2.0),
        ] {
            let spec = StrategySpec {
                bits: Some(bits),
                group_size: Some(16),
                quant_axis: Some(preset),
                ..base.clone()
            };
            let mut cache = spec.build::<B>(&config, 2, 32, &Default::default()).unwrap();
            let got = logits(&model, cache.as_mut());
            let diff = max_diff(&got, &want);
            assert!(
                diff.is_finite() && diff <= bound,
                "{:?} int{bits} {preset:?}: max |Δlogit| {diff}",
                base.kind
            );
            let m = cache.memory();
            let f = f32_cache.memory();
            // Per-token: codes are bits/32 of the f32 bytes, scales and zero points are metadata.
            // KIVI also holds the f32 staging of key groups not yet complete.
            let codes = f.allocated_bytes * bits as usize / 32;
            match preset {
                QuantPreset::PerToken => {
                    assert_eq!(m.allocated_bytes, codes, "{:?} int{bits}", base.kind)
                }
                QuantPreset::Kivi => {
                    assert!(m.allocated_bytes >= codes, "{:?} int{bits} kivi", base.kind)
                }
            }
            assert!(m.metadata_bytes > 0);
        }
    }
}

#[test]
fn quantizing_a_store_less_strategy_is_rejected() {
    let spec = StrategySpec { bits: Some(8), ..StrategySpec::new(StrategyKind::CONCAT) };
    assert!(spec.validate().unwrap_err().to_string().contains("bits = 8"));
    let spec = StrategySpec { bits: Some(5), ..StrategySpec::new(StrategyKind::STATIC) };
    assert!(spec.validate().unwrap_err().to_string().contains("expected 32, 8, 4, 3 or 2"));
    let spec = StrategySpec {
        bits: Some(8),
        group_size: Some(24),
        ..StrategySpec::new(StrategyKind::STATIC)
    };
    let Err(err) = spec.build::<B>(&ModelConfig::seed_toy(), 1, 32, &Default::default()) else {
        panic!("a group of 24 does not divide head_dim 64");
    };
    assert!(err.to_string().contains("group_size"), "{err}");
}

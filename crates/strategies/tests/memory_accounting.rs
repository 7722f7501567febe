//! Every strategy's reported bytes equal its closed-form count: the article's formula
//! 2 · L · batch · n_kv · head_dim · layers · 4 with L replaced by what the strategy allocates
//! (max_seq, the window, whole blocks) or holds (the tokens it keeps), plus block tables.

use kvlab_model::generate::feed_pending;
use kvlab_model::init::random_weights;
use kvlab_model::{KvMemory, Model, ModelConfig};
use kvlab_strategies::{StrategyKind, StrategySpec};

type B = burn_flex::Flex;

const BATCH: usize = 2;
const MAX_SEQ: usize = 40;

/// What a strategy reports after `fed` tokens of every row.
fn memory_after(spec: &StrategySpec, config: &ModelConfig, fed: usize) -> KvMemory {
    let model = Model::<B>::from_weights(&random_weights(config, 3), &Default::default()).unwrap();
    let mut cache = spec.build::<B>(config, BATCH, MAX_SEQ, &model.device()).unwrap();
    let seqs: Vec<Vec<u32>> =
        (0..BATCH).map(|r| (0..fed as u32).map(|i| (i + r as u32) % 100).collect()).collect();
    feed_pending(&model, cache.as_mut(), &seqs, &model.device()).unwrap();
    cache.memory()
}

/// 2 · tokens · batch · n_kv · head_dim · layers · 4 bytes.
fn formula(c: &ModelConfig, tokens_per_row: usize, rows: usize) -> usize {
    2 * tokens_per_row * rows * c.n_kv_heads * c.head_dim * c.n_layers * 4
}

fn with(
    kind: StrategyKind,
    cache_tokens: Option<usize>,
    sink: Option<usize>,
    block: Option<usize>,
) -> StrategySpec {
    StrategySpec { cache_tokens, sink_tokens: sink, block_size: block, ..StrategySpec::new(kind) }
}

#[test]
fn reported_bytes_equal_the_closed_form_for_every_strategy() {
    let c = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    for fed in [1, 7, 13, 30] {
        let kv = |tokens: usize| formula(&c, tokens, BATCH);
        let cases: Vec<(StrategySpec, KvMemory)> = vec![
            (StrategySpec::new(StrategyKind::NONE), KvMemory::default()),
            (
                StrategySpec::new(StrategyKind::CONCAT),
                KvMemory {
                    allocated_bytes: kv(fed),
                    live_bytes: kv(fed),
                    metadata_bytes: 0,
                    tokens: fed,
                },
            ),
            (
                StrategySpec::new(StrategyKind::STATIC),
                KvMemory {
                    allocated_bytes: kv(MAX_SEQ),
                    live_bytes: kv(fed),
                    metadata_bytes: 0,
                    tokens: fed,
                },
            ),
            (
                with(StrategyKind::named("window"), Some(8), None, None),
                KvMemory {
                    allocated_bytes: kv(8),
                    live_bytes: kv(fed.min(8)),
                    metadata_bytes: 0,
                    tokens: fed.min(8),
                },
            ),
            (
                with(StrategyKind::named("shift-window"), Some(8), None, None),
                KvMemory {
                    allocated_bytes: kv(8),
                    live_bytes: kv(fed.min(8)),
                    metadata_bytes: 0,
                    tokens: fed.min(8),
                },
            ),
            (
                with(StrategyKind::named("sink"), Some(10), Some(4), None),
                KvMemory {
                    allocated_bytes: kv(10),
                    live_bytes: kv(fed.min(10)),
                    metadata_bytes: 0,
                    tokens: fed.min(10),
                },
            ),
            (
                with(StrategyKind::PAGED, None, None, Some(16)),
                KvMemory {
                    // The pool: ceil(40 / 16) = 3 blocks of 16 slots per row, allocated up front.
                    allocated_bytes: kv(3 * 16),
                    live_bytes: kv(fed),
                    // One u32 block-table entry per block in use.
                    metadata_bytes: 4 * BATCH * fed.div_ceil(16),
                    tokens: fed,
                },
            ),
        ];
        for (spec, want) in cases {
            let got = memory_after(&spec, &c, fed);
            assert_eq!(got, want, "{} after {fed} tokens", spec.kind);
        }
    }
}

#[test]
fn the_formula_matches_the_article_for_smollm2() {
    // SmolLM2-135M, f32: 2 · 30 · 3 · 64 · 4 = 46,080 bytes per token.
    let c = ModelConfig::smollm2_135m();
    assert_eq!(formula(&c, 1, 1), 46_080);
    assert_eq!(c.kv_bytes(4096, 1, 4), formula(&c, 4096, 1));
}

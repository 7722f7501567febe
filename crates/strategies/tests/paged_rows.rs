//! A paged batch whose rows have different lengths (a serving batch after one request finished
//! and another took its row) reads each row through its own block table, and every row's
//! logits equal recomputing that row alone.

use kvlab_model::init::random_weights;
use kvlab_model::model::tokens_tensor;
use kvlab_model::{Model, ModelConfig, NoCache};
use kvlab_strategies::store::F32Store;
use kvlab_strategies::{KvLayout, PagedCache};

type B = burn_flex::Flex;

fn recompute(model: &Model<B>, seq: &[u32]) -> Vec<f32> {
    let logits =
        model.forward_last(tokens_tensor(&[seq], &model.device()), &mut NoCache::new(1)).unwrap();
    logits.into_data().to_vec().unwrap()
}

#[test]
fn rows_of_different_lengths_read_their_own_blocks() {
    let config = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    let device = Default::default();
    let model = Model::<B>::from_weights(&random_weights(&config, 5), &device).unwrap();
    let layout = KvLayout::new(&config, 2);
    let (blocks, block) = (12, 4);
    let store =
        Box::new(F32Store::new(config.n_layers, blocks * block, 2, config.head_dim, &device));
    let mut cache = PagedCache::<B>::new(layout, blocks, block, store).unwrap();

    // Both rows prefill 6 tokens, then row 1 finishes and a new request starts in its place.
    let mut seqs: Vec<Vec<u32>> =
        vec![(0..6).map(|i| i * 3 % 100).collect(), (0..6).map(|i| i * 5 % 100).collect()];
    let rows: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    model.forward_last(tokens_tensor(&rows, &device), &mut cache).unwrap();
    let used_before = cache.pool().used_blocks();
    cache.free_row(1).unwrap();
    assert_eq!(cache.pool().used_blocks(), used_before - 2, "row 1's two blocks came back");
    seqs[1] = vec![42];

    // Decode: row 0 feeds its 7th token, row 1 its 1st, in one batch.
    for step in 0..9u32 {
        let next = [seqs[0].len() as u32 % 100, (step * 11 + 7) % 100];
        seqs[0].push(next[0]);
        if step > 0 {
            seqs[1].push(next[1]);
        }
        let feed: Vec<&[u32]> = seqs.iter().map(|s| &s[s.len() - 1..]).collect();
        let logits = model.forward_last(tokens_tensor(&feed, &device), &mut cache).unwrap();
        let host: Vec<f32> = logits.into_data().to_vec().unwrap();
        let vocab = config.vocab_size;
        for (r, seq) in seqs.iter().enumerate() {
            let want = recompute(&model, seq);
            let diff = host[r * vocab..(r + 1) * vocab]
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff <= 1e-4, "step {step} row {r} (len {}): max |Δlogit| {diff}", seq.len());
        }
    }
    assert_eq!(cache.row_lens(), vec![seqs[0].len(), seqs[1].len()]);
}

/// Blocks are reserved before the forward runs: a step that does not fit fails before any layer
/// writes, and leaves the pool and every row as they were (the next step that fits reads the
/// logits of recomputation).
#[test]
fn a_step_that_does_not_fit_leaves_the_cache_as_it_was() {
    let config = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    let device = Default::default();
    let model = Model::<B>::from_weights(&random_weights(&config, 5), &device).unwrap();
    let (blocks, block) = (3, 4);
    let store =
        Box::new(F32Store::new(config.n_layers, blocks * block, 2, config.head_dim, &device));
    let mut cache = PagedCache::<B>::new(KvLayout::new(&config, 1), blocks, block, store).unwrap();
    let seq: Vec<u32> = (0..10).map(|i| i * 7 % 100).collect();
    model.forward_last(tokens_tensor(&[&seq[..6]], &device), &mut cache).unwrap();
    let (used, lens) = (cache.pool().used_blocks(), cache.row_lens());

    // 6 + 7 = 13 tokens need 4 blocks of 4; the pool has 3.
    let err = model.forward_last(tokens_tensor(&[&seq[..7]], &device), &mut cache).unwrap_err();
    assert!(matches!(err, kvlab_model::CacheError::OutOfBlocks { .. }), "{err}");
    assert_eq!((cache.pool().used_blocks(), cache.row_lens()), (used, lens));

    let logits: Vec<f32> = model
        .forward_last(tokens_tensor(&[&seq[6..10]], &device), &mut cache)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let want = recompute(&model, &seq);
    let diff = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "max |Δlogit| {diff}");
}

//! Low-rank K/V (`rank`): at `rank = head_dim` the static cache's logits are the full cache's;
//! at a lower rank they are a reference model's — the same weights with each KV head's K and V
//! projection replaced by its rank-r truncation (its rows projected on the top-r eigenvectors
//! of `A·Aᵀ`, found here by subspace iteration, not by the crate's Jacobi solver) decoding
//! through a plain static cache. Bytes equal latents plus bases; bad ranks name the key.

use kvlab_model::generate::{Sampling, generate};
use kvlab_model::init::random_weights;
use kvlab_model::weights::ModelWeights;
use kvlab_model::{Arch, KvCache, Model, ModelConfig};
use kvlab_strategies::{SpecError, StrategyKind, StrategySpec};

type B = burn_flex::Flex;

const PROMPT: usize = 10;
const STEPS: usize = 12;

fn decode(model: &Model<B>, cache: &mut dyn KvCache<B>) -> Vec<Vec<f32>> {
    let prompts: Vec<Vec<u32>> =
        (0..2).map(|r| (0..PROMPT as u32).map(|i| (i * 7 + r * 13 + 3) % 100).collect()).collect();
    let mut logits = Vec::new();
    generate(model, cache, &prompts, STEPS, &Sampling::Greedy, |step| {
        logits.push(step.logits.clone().into_data().to_vec::<f32>().unwrap());
    })
    .unwrap();
    logits
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn static_spec(rank: Option<usize>) -> StrategySpec {
    StrategySpec { rank, ..StrategySpec::new(StrategyKind::STATIC) }
}

/// An orthonormal basis `[d][r]` of the top-r eigenvectors of the symmetric `g` (`[d][d]`), by
/// subspace iteration: multiply by `g`, re-orthonormalize (Gram–Schmidt), many times.
fn top_subspace(g: &[Vec<f64>], r: usize) -> Vec<Vec<f64>> {
    let d = g.len();
    let mut q: Vec<Vec<f64>> = (0..d)
        .map(|i| {
            (0..r).map(|j| ((i * 31 + j * 17) % 13) as f64 - 6.0 + (i == j) as u8 as f64).collect()
        })
        .collect();
    for _ in 0..3000 {
        let mut next: Vec<Vec<f64>> = (0..d)
            .map(|i| (0..r).map(|j| (0..d).map(|k| g[i][k] * q[k][j]).sum()).collect())
            .collect();
        for j in 0..r {
            for p in 0..j {
                let dot: f64 = (0..d).map(|i| next[i][j] * next[i][p]).sum();
                for row in next.iter_mut() {
                    row[j] -= dot * row[p];
                }
            }
            let norm = (0..d).map(|i| next[i][j].powi(2)).sum::<f64>().sqrt();
            for row in next.iter_mut() {
                row[j] /= norm;
            }
        }
        q = next;
    }
    q
}

/// Rows `[n_kv·d, hidden]` of a K or V projection with each head's rows `A` replaced by
/// `Q·Qᵀ·A`, `Q` the top-r eigenvectors of `A·Aᵀ`.
fn truncate(w: &mut [f32], hidden: usize, n_kv: usize, d: usize, r: usize) {
    for h in 0..n_kv {
        let a: Vec<Vec<f64>> = (0..d)
            .map(|i| {
                w[(h * d + i) * hidden..(h * d + i + 1) * hidden]
                    .iter()
                    .map(|&x| x as f64)
                    .collect()
            })
            .collect();
        let g: Vec<Vec<f64>> = (0..d)
            .map(|i| (0..d).map(|j| (0..hidden).map(|k| a[i][k] * a[j][k]).sum()).collect())
            .collect();
        let q = top_subspace(&g, r);
        for i in 0..d {
            for k in 0..hidden {
                // (Q·Qᵀ·A)[i][k] = Σ_j Q[i][j] · Σ_m Q[m][j]·A[m][k]
                let x: f64 =
                    (0..r).map(|j| q[i][j] * (0..d).map(|m| q[m][j] * a[m][k]).sum::<f64>()).sum();
                w[(h * d + i) * hidden + k] = x as f32;
            }
        }
    }
}

fn truncated(weights: &ModelWeights, r: usize) -> ModelWeights {
    let c = &weights.config;
    let mut out = weights.clone();
    for l in &mut out.layers {
        truncate(&mut l.wk.data, c.hidden_size, c.n_kv_heads, c.head_dim, r);
        truncate(&mut l.wv.data, c.hidden_size, c.n_kv_heads, c.head_dim, r);
    }
    out
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    let llama = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    vec![("llama", llama.clone()), ("qwen2 (biases)", ModelConfig { arch: Arch::qwen2(), ..llama })]
}

#[test]
fn full_rank_reproduces_the_full_cache() {
    let device = Default::default();
    for (arch, config) in configs() {
        let model = Model::<B>::from_weights(&random_weights(&config, 5), &device).unwrap();
        let want =
            decode(&model, static_spec(None).build(&config, 2, 32, &device).unwrap().as_mut());
        let spec = static_spec(Some(config.head_dim));
        let got =
            decode(&model, spec.build_for_model(&model, None, 2, 32, &device).unwrap().as_mut());
        let diff = max_diff(&got, &want);
        assert!(diff <= 1e-4, "{arch}: rank = head_dim, max |Δlogit| {diff}");
    }
}

#[test]
fn lower_rank_equals_the_truncated_projections() {
    let device = Default::default();
    for (arch, config) in configs() {
        let weights = random_weights(&config, 5);
        let model = Model::<B>::from_weights(&weights, &device).unwrap();
        let full =
            decode(&model, static_spec(None).build(&config, 2, 32, &device).unwrap().as_mut());
        for rank in [32, 8] {
            let reference = Model::<B>::from_weights(&truncated(&weights, rank), &device).unwrap();
            let want = decode(
                &reference,
                static_spec(None).build(&config, 2, 32, &device).unwrap().as_mut(),
            );
            let spec = static_spec(Some(rank));
            let got = decode(
                &model,
                spec.build_for_model(&model, None, 2, 32, &device).unwrap().as_mut(),
            );
            let diff = max_diff(&got, &want);
            assert!(diff <= 1e-4, "{arch}, rank {rank}: max |Δlogit| vs reference {diff}");
            assert!(
                max_diff(&got, &full) > 1e-2,
                "{arch}, rank {rank}: a lower rank changes logits"
            );
        }
    }
}

#[test]
fn low_rank_bytes_are_latents_plus_bases() {
    let device = Default::default();
    let (batch, max_seq, rank) = (2, 32, 16);
    for (arch, config) in configs() {
        let model = Model::<B>::from_weights(&random_weights(&config, 5), &device).unwrap();
        let (l, h, d) = (config.n_layers, config.n_kv_heads, config.head_dim);
        let bias = if config.arch.qkv_bias { l * 2 * h * d * 4 } else { 0 };
        for bits in [None, Some(8u8)] {
            let spec = StrategySpec { bits, group_size: Some(16), ..static_spec(Some(rank)) };
            let cache = spec.build_for_model(&model, None, batch, max_seq, &device).unwrap();
            let m = cache.memory();
            let slots = batch * max_seq;
            // Latents: r values per head per slot, K and V; f32 or one byte each.
            let per_value = if bits.is_some() { 1 } else { 4 };
            assert_eq!(m.allocated_bytes, l * 2 * slots * h * rank * per_value, "{arch} {bits:?}");
            // Bases K and V, [h, d, r] f32 per layer; int8's scale + zero (f32) per group of 16.
            let scales = if bits.is_some() { l * 2 * slots * h * (rank / 16) * 2 * 4 } else { 0 };
            let bases = l * 2 * h * d * rank * 4;
            assert_eq!(m.metadata_bytes, bases + bias + scales, "{arch} {bits:?}");
        }
    }
}

#[test]
fn bad_ranks_name_the_key() {
    let device = Default::default();
    let config = ModelConfig::seed_toy();
    let model = Model::<B>::from_weights(&random_weights(&config, 5), &device).unwrap();
    let key = |spec: StrategySpec| match spec.build_for_model(&model, None, 1, 16, &device) {
        Err(SpecError::Invalid { key, .. }) => key,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(key(static_spec(Some(0))), "rank");
    assert_eq!(key(static_spec(Some(65))), "rank", "more than head_dim");
    let window = StrategySpec {
        cache_tokens: Some(8),
        rank: Some(8),
        ..StrategySpec::new(StrategyKind::named("window"))
    };
    assert_eq!(key(window), "rank", "only static holds latents");
    // Keys normed after their projection (Gemma 3's QK-norm) are not in its span.
    let normed = ModelConfig { arch: Arch { qk_norm: true, ..Arch::default() }, ..config.clone() };
    let model = Model::<B>::from_weights(&random_weights(&normed, 5), &device).unwrap();
    let err = static_spec(Some(8)).build_for_model(&model, None, 1, 16, &device).err().unwrap();
    assert!(matches!(err, SpecError::Invalid { key: "rank", .. }), "{err}");
}

#[test]
fn calibrated_bases_at_full_rank_reproduce_the_full_cache_even_with_qk_norm() {
    let device = Default::default();
    let window = kvlab_model::SlidingWindow { tokens: 6, global_every: 2, rope_theta: 1_000.0 };
    let llama = ModelConfig::seed_toy().with_kv_heads(2).unwrap();
    // Gemma 3's QK-norm (keys normed after the projection) without its sliding-window layers.
    let normed = Arch { sliding_window: None, ..Arch::gemma3(window) };
    let calibration: Vec<u32> = (0..40u32).map(|i| (i * 11 + 5) % 100).collect();
    for (arch, config) in
        configs().into_iter().chain([("qk-norm", ModelConfig { arch: normed, ..llama })])
    {
        let model = Model::<B>::from_weights(&random_weights(&config, 5), &device).unwrap();
        let want =
            decode(&model, static_spec(None).build(&config, 2, 32, &device).unwrap().as_mut());
        let spec = StrategySpec {
            rank_basis: Some(kvlab_strategies::RankBasis::Calibrated),
            ..static_spec(Some(config.head_dim))
        };
        let got = decode(
            &model,
            spec.build_for_model(&model, Some(&calibration), 2, 32, &device).unwrap().as_mut(),
        );
        let diff = max_diff(&got, &want);
        assert!(diff <= 1e-4, "{arch}: calibrated rank = head_dim, max |Δlogit| {diff}");
        // Without calibration text the spec says what it needs.
        assert!(matches!(
            spec.build_for_model(&model, None, 2, 32, &device).err(),
            Some(SpecError::Build(_))
        ));
    }
}

#[test]
fn calibrated_bases_are_the_top_eigenvectors_of_the_moments() {
    use kvlab_strategies::low_rank::LayerMoments;
    use kvlab_strategies::low_rank::LowRankBases;
    // One head of 4 dims whose second moments are diagonal, largest on dims 2 then 0: the
    // rank-2 basis is those two coordinate vectors, largest first (up to sign).
    let (d, rank) = (4, 2);
    let mut m = vec![0.0f64; d * d];
    for (i, e) in [5.0, 1.0, 9.0, 0.5].into_iter().enumerate() {
        m[i * d + i] = e;
    }
    let config = ModelConfig { n_layers: 1, ..ModelConfig::seed_toy() };
    let model = Model::<B>::from_weights(&random_weights(&config, 5), &Default::default()).unwrap();
    let projections = model.kv_projections();
    let moments = [LayerMoments { k: m.clone(), v: m }];
    let bases = LowRankBases::from_moments(&moments, &projections, 1, d, rank);
    let basis = &bases.layers[0].k; // [d, rank] row-major
    let column = |c: usize| -> Vec<f32> { (0..d).map(|i| basis[i * rank + c].abs()).collect() };
    assert_eq!(column(0), [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(column(1), [1.0, 0.0, 0.0, 0.0]);
}

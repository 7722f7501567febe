//! Seeded random initialization, generated on the host so that the same seed gives the same
//! weights on every backend (backends' own RNGs differ).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::ModelConfig;
use crate::weights::{HostTensor, LayerWeights, ModelWeights, PostNorms, QkNorm, QkvBias};

/// Weights drawn from N(0, 1/fan_in) for projections (so activations keep unit scale and
/// logits are spread enough for greedy decoding to be stable), N(0, 1) for embeddings, ones for
/// norms, and N(0, 0.1²) for the biases of families that have them.
pub fn random_weights(config: &ModelConfig, seed: u64) -> ModelWeights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = config;
    let (d, q, kv, ff) =
        (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
    let linear = |rows: usize, cols: usize, rng: &mut ChaCha8Rng| {
        normal(rng, vec![rows, cols], 1.0 / (cols as f32).sqrt())
    };
    let ones = |n: usize| HostTensor::new(vec![1.0; n], vec![n]);
    let embed = normal(&mut rng, vec![c.vocab_size, d], 1.0);
    let layers = (0..c.n_layers)
        .map(|_| LayerWeights {
            attn_norm: ones(d),
            wq: linear(q, d, &mut rng),
            wk: linear(kv, d, &mut rng),
            wv: linear(kv, d, &mut rng),
            wo: linear(d, q, &mut rng),
            mlp_norm: ones(d),
            gate: linear(ff, d, &mut rng),
            up: linear(ff, d, &mut rng),
            down: linear(d, ff, &mut rng),
            qkv_bias: c.arch.qkv_bias.then(|| QkvBias {
                q: normal(&mut rng, vec![q], 0.1),
                k: normal(&mut rng, vec![kv], 0.1),
                v: normal(&mut rng, vec![kv], 0.1),
            }),
            qk_norm: c.arch.qk_norm.then(|| QkNorm { q: ones(c.head_dim), k: ones(c.head_dim) }),
            post_norms: c.arch.post_norms.then(|| PostNorms { attn: ones(d), mlp: ones(d) }),
        })
        .collect();
    let lm_head = (!c.tie_embeddings).then(|| linear(c.vocab_size, d, &mut rng));
    ModelWeights { config: c.clone(), embed, layers, final_norm: ones(d), lm_head }
}

/// Box-Muller normal samples.
fn normal(rng: &mut ChaCha8Rng, shape: Vec<usize>, std: f32) -> HostTensor {
    let n: usize = shape.iter().product();
    let mut data = Vec::with_capacity(n + 1);
    while data.len() < n {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        data.push((r * th.cos()) as f32 * std);
        data.push((r * th.sin()) as f32 * std);
    }
    data.truncate(n);
    HostTensor::new(data, shape)
}

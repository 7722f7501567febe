//! Calibrated bases: the model's own keys and values over calibration text, as the cache would
//! receive them (after the projection, its bias and any per-head norm; before RoPE), summed into
//! each layer's and KV head's second-moment matrix `Σ k·kᵀ`. Its top eigenvectors are the
//! rank-r subspace that keeps the most of those keys' energy — the projection's SVD whitened by
//! the inputs it sees (SVD-LLM; Palu's low-rank projections are fitted the same way), where the
//! plain SVD assumes inputs of every direction alike.

use burn::prelude::*;
use kvlab_model::model::tokens_tensor;
use kvlab_model::{
    AttentionMask, CacheError, KeyPositions, KvCache, KvMemory, KvProjection, KvView, Model,
    RotaryEncoding,
};

use super::moments::{LayerMoments, add_outer_upper, mirror_upper};

/// A cache that holds one forward's keys and values as they come and adds each layer's to its
/// moments; attention reads them back (keys rotated from position 0), so the forward is the
/// model's own.
struct Recording<B: Backend> {
    /// Per layer: this forward's keys (unrotated) and values, `[1, n_kv, t, d]`.
    held: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    moments: Vec<LayerMoments>,
    /// Per layer: K biases, `[n_kv * d]`.
    k_bias: Vec<Option<Vec<f32>>>,
    /// Per layer: V biases, `[n_kv * d]`.
    v_bias: Vec<Option<Vec<f32>>>,
    d: usize,
}

/// Adds `Σ (x - b)(x - b)ᵀ` over the tokens of `x` (`[1, n_kv, t, d]`) to the upper triangle of
/// `acc` per head ([`moments()`] mirrors it once every forward is in).
fn accumulate<B: Backend>(acc: &mut [f64], x: &Tensor<B, 4>, bias: Option<&Vec<f32>>, d: usize) {
    let [_, n_kv, t, _] = x.dims();
    let data: Vec<f32> = x.clone().into_data().convert::<f32>().to_vec().expect("f32 keys");
    let mut row = vec![0.0f64; d];
    for h in 0..n_kv {
        let m = &mut acc[h * d * d..(h + 1) * d * d];
        for s in 0..t {
            let x = &data[(h * t + s) * d..(h * t + s + 1) * d];
            for (i, r) in row.iter_mut().enumerate() {
                *r = x[i] as f64 - bias.map_or(0.0, |b| b[h * d + i] as f64);
            }
            add_outer_upper(m, &row);
        }
    }
}

impl<B: Backend> KvCache<B> for Recording<B> {
    fn next_input(&self, total: usize) -> std::ops::Range<usize> {
        0..total
    }

    fn query_start(&self) -> Vec<usize> {
        vec![0]
    }

    fn key_positions(&self, _layer: usize) -> KeyPositions {
        KeyPositions::Ordered
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        _rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let d = self.d;
        accumulate(&mut self.moments[layer].k, &k, self.k_bias[layer].as_ref(), d);
        accumulate(&mut self.moments[layer].v, &v, self.v_bias[layer].as_ref(), d);
        self.held[layer] = Some((k, v));
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        _new_tokens: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (k, v) = self.held[layer]
            .clone()
            .ok_or_else(|| CacheError::Invalid(format!("calibration: layer {layer} unwritten")))?;
        Ok(KvView::dense(rope.apply(k, &[0]), v, AttentionMask::CausalEnd))
    }

    fn commit(&mut self, _new_tokens: usize) {}

    fn reset(&mut self) {}

    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        None
    }
}

/// Each layer's moments over one forward of `ids` (batch 1).
pub fn moments<B: Backend>(
    model: &Model<B>,
    projections: &[KvProjection],
    ids: &[u32],
) -> Result<Vec<LayerMoments>, CacheError> {
    let c = &model.config;
    let (n_kv, d) = (c.n_kv_heads, c.head_dim);
    let zeros = || vec![0.0f64; n_kv * d * d];
    let mut cache = Recording::<B> {
        held: vec![None; c.n_layers],
        moments: (0..c.n_layers).map(|_| LayerMoments { k: zeros(), v: zeros() }).collect(),
        k_bias: projections.iter().map(|p| p.k_bias.clone()).collect(),
        v_bias: projections.iter().map(|p| p.v_bias.clone()).collect(),
        d,
    };
    if ids.is_empty() {
        return Err(CacheError::Invalid("calibration: no tokens".into()));
    }
    model
        .forward(tokens_tensor(&[ids], &model.device()), &mut cache)
        .map_err(|e| CacheError::Invalid(format!("calibration forward: {e}")))?;
    let mut moments = cache.moments;
    for m in moments.iter_mut().flat_map(|l| [&mut l.k, &mut l.v]) {
        for head in m.chunks_exact_mut(d * d) {
            mirror_upper(head, d);
        }
    }
    Ok(moments)
}

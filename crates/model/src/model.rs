//! The Llama-style decoder: embedding, N decoder layers, final norm, LM head.
//!
//! The model holds parameters only; the KV cache is passed into every forward (as llama-burn
//! keeps it), so one loaded model serves every strategy of a sweep.

use burn::module::Param;
use burn::nn::{Embedding, RmsNorm};
use burn::prelude::*;

use crate::attention::Attention;
use crate::cache::{CacheError, KvCache};
use crate::config::ModelConfig;
use crate::control_vector::ControlVector;
use crate::layer::DecoderLayer;
use crate::linear::SplitLinear;
use crate::mlp::GatedMlp;
use crate::rope::RotaryEncoding;
use crate::weights::{HostTensor, ModelWeights};

/// Not itself a burn `Module`: it carries the rotary tables beside its parameter modules.
#[derive(Debug, Clone)]
pub struct Model<B: Backend> {
    pub embed: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `[hidden, vocab]`. A tied head is a copy of the embedding, transposed once at load so the
    /// per-token head matmul reads contiguous memory.
    pub lm_head: SplitLinear<B>,
    /// Per layer, the rotary tables at that layer's base (Gemma 3's local and global layers
    /// differ); layers of one base share one table.
    pub ropes: Vec<RotaryEncoding<B>>,
    pub config: ModelConfig,
    /// Added to the residual stream after each layer, where set (a perturbation draw).
    pub control: Option<ControlVector<B>>,
}

impl<B: Backend> Model<B> {
    /// Uploads host weights to `device`, splitting each projection into one column block per
    /// rayon thread (see [`SplitLinear`]); use [`Model::from_weights_with_parts`] with 1 for
    /// GPU backends.
    pub fn from_weights(weights: &ModelWeights, device: &B::Device) -> Result<Self, String> {
        Self::from_weights_with_parts(weights, device, rayon::current_num_threads())
    }

    pub(crate) fn from_weights_with_parts(
        weights: &ModelWeights,
        device: &B::Device,
        parts: usize,
    ) -> Result<Self, String> {
        weights.config.validate().map_err(|e| e.to_string())?;
        weights.check_shapes()?;
        let c = &weights.config;
        let norm = |t: &HostTensor| rms_norm(t, c.rms_eps, device);
        let layers = weights
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| DecoderLayer {
                attn_norm: norm(&l.attn_norm),
                attn: Attention {
                    qkv: SplitLinear::from_host(&[&l.wq, &l.wk, &l.wv], parts, device),
                    qkv_bias: l.qkv_bias.as_ref().map(|b| {
                        let stacked = [&b.q.data[..], &b.k.data, &b.v.data].concat();
                        let n = stacked.len();
                        Tensor::from_data(TensorData::new(stacked, [n]), device)
                    }),
                    q_norm: l.qk_norm.as_ref().map(|n| norm(&n.q)),
                    k_norm: l.qk_norm.as_ref().map(|n| norm(&n.k)),
                    wo: SplitLinear::from_host(&[&l.wo], parts, device),
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                    head_dim: c.head_dim,
                    key_bucket: 0,
                    fused: false,
                    window: c.layer_attention(i).window,
                },
                attn_post_norm: l.post_norms.as_ref().map(|n| norm(&n.attn)),
                mlp_norm: norm(&l.mlp_norm),
                mlp: GatedMlp {
                    gate_up: SplitLinear::from_host(&[&l.gate, &l.up], parts, device),
                    down: SplitLinear::from_host(&[&l.down], parts, device),
                    activation: c.arch.activation,
                },
                mlp_post_norm: l.post_norms.as_ref().map(|n| norm(&n.mlp)),
            })
            .collect();
        let head = weights.lm_head.as_ref().unwrap_or(&weights.embed);
        Ok(Self {
            embed: Embedding { weight: Param::from_tensor(matrix(&weights.embed, device)) },
            layers,
            norm: norm(&weights.final_norm),
            lm_head: SplitLinear::from_host(&[head], parts, device),
            ropes: layer_ropes(c, device),
            config: c.clone(),
            control: None,
        })
    }

    /// This model with `control` added after its layers (`None`: none).
    pub fn with_control(self, control: Option<ControlVector<B>>) -> Self {
        Self { control, ..self }
    }

    /// Pads attention's keys to multiples of `bucket` (0: off), so a decode compiles a bounded
    /// set of attention shapes on backends that compile per shape. Logits are unchanged.
    pub fn set_key_bucket(&mut self, bucket: usize) {
        for layer in &mut self.layers {
            layer.attn.key_bucket = bucket;
        }
    }

    /// Attention in one pass where the backend allows it (see [`crate::fused_attention`]).
    pub fn set_fused_attention(&mut self, fused: bool) {
        for layer in &mut self.layers {
            layer.attn.fused = fused;
        }
    }

    pub fn fused_attention(&self) -> bool {
        self.layers.first().is_some_and(|l| l.attn.fused)
    }

    pub fn key_bucket(&self) -> usize {
        self.layers.first().map_or(0, |l| l.attn.key_bucket)
    }

    pub fn device(&self) -> B::Device {
        self.embed.weight.val().device()
    }

    /// Runs the layers over new tokens, storing their K/V in `cache`.
    ///
    /// # Shapes
    /// - tokens: `[batch, t]`
    /// - output: `[batch, t, hidden]` (after the final norm)
    pub(crate) fn forward_hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut dyn KvCache<B>,
    ) -> Result<Tensor<B, 3>, CacheError> {
        let [_, t] = tokens.dims();
        // Each layer's query positions, read before `reserve` moves the cache on.
        let starts: Vec<Vec<usize>> =
            (0..self.layers.len()).map(|l| cache.layer_query_start(l)).collect();
        cache.reserve(t)?;
        let mut x = self.embed.forward(tokens);
        if self.config.arch.scale_embeddings {
            // Gemma: embeddings times √hidden, the factor rounded to f32 as llama.cpp's is.
            x = x.mul_scalar((self.config.hidden_size as f32).sqrt());
        }
        for (i, ((layer, rope), starts)) in
            self.layers.iter().zip(&self.ropes).zip(&starts).enumerate()
        {
            x = layer.forward(x, i, starts, cache, rope)?;
            if let Some(v) = self.control.as_ref().and_then(|c| c.layer(i)) {
                let hidden = self.config.hidden_size;
                x = x + v.clone().reshape([1, 1, hidden]);
            }
        }
        cache.commit(t);
        Ok(self.norm.forward(x))
    }

    /// Logits at every new position: `[batch, t] -> [batch, t, vocab]`.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut dyn KvCache<B>,
    ) -> Result<Tensor<B, 3>, CacheError> {
        Ok(self.lm_head.forward(self.forward_hidden(tokens, cache)?))
    }

    /// Logits at the last new position only (the head is the largest matmul of a decode step):
    /// `[batch, t] -> [batch, vocab]`.
    pub fn forward_last(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut dyn KvCache<B>,
    ) -> Result<Tensor<B, 2>, CacheError> {
        let hidden = self.forward_hidden(tokens, cache)?;
        let [b, t, d] = hidden.dims();
        let last = hidden.slice([0..b, t - 1..t, 0..d]);
        let vocab = self.config.vocab_size;
        Ok(self.lm_head.forward(last).reshape([b, vocab]))
    }

    /// Every parameter tensor, flattened to host f32, in a fixed order (for hashing and
    /// cross-backend comparisons).
    pub fn parameters_f32(&self) -> Vec<Vec<f32>> {
        let mut out = vec![to_vec(self.embed.weight.val())];
        for l in &self.layers {
            out.push(to_vec(l.attn_norm.gamma.val()));
            for lin in [&l.attn.qkv, &l.attn.wo, &l.mlp.gate_up, &l.mlp.down] {
                out.push(to_vec(lin.weight()));
            }
            out.push(to_vec(l.mlp_norm.gamma.val()));
            out.extend(l.attn.qkv_bias.iter().map(|b| to_vec(b.clone())));
            let norms = [&l.attn.q_norm, &l.attn.k_norm, &l.attn_post_norm, &l.mlp_post_norm];
            out.extend(norms.into_iter().flatten().map(|n| to_vec(n.gamma.val())));
        }
        out.push(to_vec(self.norm.gamma.val()));
        out.push(to_vec(self.lm_head.weight()));
        out
    }
}

/// Row-major token ids `[batch][t]` to a `[batch, t]` Int tensor.
pub fn tokens_tensor<B: Backend>(rows: &[&[u32]], device: &B::Device) -> Tensor<B, 2, Int> {
    let t = rows.first().map_or(0, |r| r.len());
    assert!(rows.iter().all(|r| r.len() == t), "every row feeds the same number of tokens");
    let ids: Vec<i64> = rows.iter().flat_map(|r| r.iter().map(|&id| id as i64)).collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), t]), device)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 tensor data")
}

fn matrix<B: Backend>(t: &HostTensor, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.dims2()), device)
}

/// One rotary table per distinct base, cloned (shared, not copied) into every layer using it.
fn layer_ropes<B: Backend>(c: &ModelConfig, device: &B::Device) -> Vec<RotaryEncoding<B>> {
    let mut built: Vec<(f64, RotaryEncoding<B>)> = Vec::new();
    (0..c.n_layers)
        .map(|layer| {
            let theta = c.layer_attention(layer).rope_theta;
            if let Some((_, rope)) = built.iter().find(|(t, _)| *t == theta) {
                return rope.clone();
            }
            let rope = RotaryEncoding::new(c.head_dim, theta, c.max_positions, device);
            built.push((theta, rope.clone()));
            rope
        })
        .collect()
}

fn rms_norm<B: Backend>(t: &HostTensor, eps: f64, device: &B::Device) -> RmsNorm<B> {
    let gamma = Tensor::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device);
    RmsNorm { gamma: Param::from_tensor(gamma), epsilon: eps }
}

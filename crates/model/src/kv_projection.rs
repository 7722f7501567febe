//! The K and V projections of each layer, read back to the host: what a low-rank cache takes
//! its bases from (an SVD of each KV head's projection, Palu arXiv 2407.21118).

use burn::prelude::*;

use crate::model::Model;

/// One layer's key and value projections, as attention applies them: `k = x · wk + k_bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct KvProjection {
    /// `[hidden, n_kv_heads * head_dim]` row-major: head `h`'s keys are columns
    /// `h·head_dim .. (h+1)·head_dim`.
    pub wk: Vec<f32>,
    /// `[hidden, n_kv_heads * head_dim]` row-major.
    pub wv: Vec<f32>,
    /// `[n_kv_heads * head_dim]`, where the family has biases (Qwen2).
    pub k_bias: Option<Vec<f32>>,
    /// `[n_kv_heads * head_dim]`.
    pub v_bias: Option<Vec<f32>>,
    pub hidden: usize,
    /// Whether keys are RMS-normed per head after the projection (Gemma 3): then a key is no
    /// longer `x · wk`, and `wk`'s column space is not where the cache's keys lie.
    pub k_normed: bool,
}

impl<B: Backend> Model<B> {
    /// Every layer's [`KvProjection`], in layer order.
    pub fn kv_projections(&self) -> Vec<KvProjection> {
        let c = &self.config;
        let (q, kv) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let host = |t: Tensor<B, 2>| -> Vec<f32> {
            t.into_data().convert::<f32>().to_vec().expect("f32 weights")
        };
        let host1 = |t: Tensor<B, 1>| -> Vec<f32> {
            t.into_data().convert::<f32>().to_vec().expect("f32 biases")
        };
        self.layers
            .iter()
            .map(|layer| {
                let attn = &layer.attn;
                // [hidden, (n_heads + 2 n_kv) head_dim]: Q, K, V columns in that order.
                let w = attn.qkv.weight();
                let hidden = w.dims()[0];
                let bias = attn.qkv_bias.clone();
                KvProjection {
                    wk: host(w.clone().slice([0..hidden, q..q + kv])),
                    wv: host(w.slice([0..hidden, q + kv..q + 2 * kv])),
                    k_bias: bias.clone().map(|b| host1(b.narrow(0, q, kv))),
                    v_bias: bias.map(|b| host1(b.narrow(0, q + kv, kv))),
                    hidden,
                    k_normed: attn.k_norm.is_some(),
                }
            })
            .collect()
    }
}

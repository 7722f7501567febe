//! Multi-head attention with grouped KV heads (MHA, GQA and MQA are one code path).
//!
//! GQA is computed without materializing repeated K/V: the `n_rep` query heads that share a KV
//! head are folded into the query-length axis, `[b, n_kv, n_rep * t, d]`, so one matmul per KV
//! head serves its whole group. Memory is what kvlab measures; repeating K/V `n_rep` times for
//! every decode step would spend exactly what GQA saves.

use burn::nn::RmsNorm;
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::cache::{AttentionMask, CacheError, KvCache};
use crate::fused_attention::{self, Visible};
use crate::linear::SplitLinear;
use crate::rope::RotaryEncoding;
use crate::sliding_window::local_mask;

/// A large negative bias: exp() of it underflows to exactly 0 next to any real score.
const HIDDEN: f32 = -1.0e30;

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Q, K and V projections fused into one pass over `[hidden, (n_heads + 2 n_kv) head_dim]`.
    pub qkv: SplitLinear<B>,
    /// `[(n_heads + 2 n_kv) head_dim]`: Q, K and V biases in the projection's order (Qwen2).
    pub qkv_bias: Option<Tensor<B, 1>>,
    /// RMSNorm of each query head's vector (`[head_dim]` weights) before RoPE (Gemma 3).
    pub q_norm: Option<RmsNorm<B>>,
    /// RMSNorm of each key head's vector before the cache rotates it (Gemma 3).
    pub k_norm: Option<RmsNorm<B>>,
    pub wo: SplitLinear<B>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Keys are padded (zeros, hidden by the mask) to a multiple of this before the score
    /// matmul; 0 leaves them as they are. Why: a decode step's key count grows by one every
    /// step, and cubecl backends (wgpu, CUDA) pick kernel variants (vectorization width,
    /// bounds checks) and autotune keys from shapes; a bucket keeps the shapes a decode of N
    /// tokens sees to N / bucket (on wgpu: 56 kernels compiled for a 512-step decode instead
    /// of 76, `results/wgpu/README.md`). See [`bucketed`].
    pub key_bucket: usize,
    /// Attention in one pass where the backend allows it ([`fused_attention`]), instead of the
    /// dense ops over a `[queries, keys]` score tensor. Off by default: the dense path is the
    /// reference (the two agree to float rounding, not bit for bit).
    pub fused: bool,
    /// `Some(w)`: a local layer whose queries see only the last `w` positions
    /// ([`crate::sliding_window`]); `None`: global.
    pub window: Option<usize>,
}

/// The key count attention runs on: `s` rounded up to a multiple of `bucket` (0: `s`).
pub fn bucketed(s: usize, bucket: usize) -> usize {
    if bucket == 0 { s } else { s.div_ceil(bucket) * bucket }
}

/// `x` with zero rows appended along dim 2 up to `s_pad`: `[b, h, s, d] -> [b, h, s_pad, d]`.
fn pad_keys<B: Backend>(x: Tensor<B, 4>, s_pad: usize) -> Tensor<B, 4> {
    let [b, h, s, d] = x.dims();
    if s_pad == s {
        return x;
    }
    let zeros = Tensor::zeros([b, h, s_pad - s, d], &x.device());
    Tensor::cat(vec![x, zeros], 2)
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// - x: `[batch, t, hidden]` (already normed)
    /// - output: `[batch, t, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        layer: usize,
        starts: &[usize],
        cache: &mut dyn KvCache<B>,
        rope: &RotaryEncoding<B>,
    ) -> Result<Tensor<B, 3>, CacheError> {
        let [b, t, _] = x.dims();
        let (h, kvh, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let n_rep = h / kvh;

        // [b, t, (h + 2 kvh) d], split into q [b, h, t, d] and k, v [b, kvh, t, d]
        let qkv = self.qkv.forward(x);
        let qkv = match &self.qkv_bias {
            Some(bias) => qkv + bias.clone().reshape([1, 1, (h + 2 * kvh) * d]),
            None => qkv,
        };
        let (qd, kd) = (h * d, kvh * d);
        let q = qkv.clone().slice([0..b, 0..t, 0..qd]).reshape([b, t, h, d]).swap_dims(1, 2);
        let k =
            qkv.clone().slice([0..b, 0..t, qd..qd + kd]).reshape([b, t, kvh, d]).swap_dims(1, 2);
        let v =
            qkv.slice([0..b, 0..t, qd + kd..qd + 2 * kd]).reshape([b, t, kvh, d]).swap_dims(1, 2);

        // Per-head norms act on the last axis, head_dim.
        let q = match &self.q_norm {
            Some(norm) => norm.forward(q),
            None => q,
        };
        let k = match &self.k_norm {
            Some(norm) => norm.forward(k),
            None => k,
        };

        let q = cache.round_query(layer, rope.apply(q, starts));
        let mut view = cache.update(layer, k, v, rope)?;
        if let Some(window) = self.window {
            let (shape, device) = ([b, t, view.keys()], view.device());
            let positions = cache.key_positions(layer);
            view.mask = local_mask(view.mask, positions, window, shape, layer, &device)?;
        }
        if self.fused && !cache.observes_attention(layer) {
            let visible = match &view.mask {
                AttentionMask::CausalEnd => Some(Visible::CausalEnd),
                AttentionMask::Hidden(hidden) => {
                    hidden.clone().into_data().to_vec::<bool>().ok().map(Visible::Hidden)
                }
            };
            // Query heads folded as below: [b, h, t, d] -> [b, kvh, n_rep * t, d].
            let folded = q.clone().reshape([b, kvh, n_rep * t, d]);
            if let Some(out) =
                visible.and_then(|vis| fused_attention::attend(&folded, &view.kv, t, vis))
            {
                let out = out.reshape([b, h, t, d]).swap_dims(1, 2).reshape([b, t, h * d]);
                return Ok(self.wo.forward(out));
            }
        }
        // [b, kvh, s, d] each: runs a cache handed are copied here, on this path only.
        let (k, v) = view.to_dense();
        let s = k.dims()[2];
        // Keys and values padded with zero rows to the bucket; the mask hides the padding, so
        // its scores are HIDDEN, its probabilities exactly 0 and its values add nothing.
        let s_pad = bucketed(s, self.key_bucket);
        // [b, kvh, s_pad, d] each
        let (keys, values) = (pad_keys(k, s_pad), pad_keys(v, s_pad));

        // Query heads h = g * n_rep + r share KV head g: [b, h, t, d] -> [b, kvh, n_rep * t, d]
        let q = q.reshape([b, kvh, n_rep * t, d]);
        // [b, kvh, n_rep * t, s_pad]
        let scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(1.0 / (d as f64).sqrt());
        let scores = match view.mask {
            AttentionMask::CausalEnd if t == 1 && s_pad == s => scores,
            AttentionMask::CausalEnd => {
                let bias = causal_end_bias::<B>(t, s, s_pad, n_rep, &scores.device());
                scores + bias
            }
            AttentionMask::Hidden(hidden) => {
                // [b, t, s] -> [b, t, s_pad], the padding hidden too.
                let hidden = if s_pad == s {
                    hidden
                } else {
                    let pad = Tensor::<B, 3, Bool>::full([b, t, s_pad - s], true, &hidden.device());
                    Tensor::cat(vec![hidden, pad], 2)
                };
                // [b, t, s_pad] -> [b, 1, n_rep * t, s_pad]: the same mask for every head of a
                // group.
                let bias = Tensor::<B, 3>::zeros([b, t, s_pad], &scores.device())
                    .mask_fill(hidden, HIDDEN)
                    .unsqueeze_dim::<4>(1)
                    .repeat_dim(2, n_rep);
                scores + bias
            }
        };
        let probs = softmax(scores, 3);
        if cache.observes_attention(layer) {
            // [b, kvh, n_rep * t, s_pad] -> [b, h, t, s]: query head g * n_rep + r is row
            // r * t + i of group g, as `q` was folded above.
            let shown = probs.clone().reshape([b, h, t, s_pad]).slice([0..b, 0..h, 0..t, 0..s]);
            cache.observe_attention(layer, shown);
        }
        // [b, kvh, n_rep * t, d] -> [b, h, t, d] -> [b, t, h * d]
        let out = probs.matmul(values).reshape([b, h, t, d]).swap_dims(1, 2).reshape([b, t, h * d]);
        Ok(self.wo.forward(out))
    }
}

/// `[1, 1, n_rep * t, s_pad]`: 0 where query `i` may see key `j` (j <= s - t + i), else
/// HIDDEN (which covers the padding keys `s..s_pad`).
fn causal_end_bias<B: Backend>(
    t: usize,
    s: usize,
    s_pad: usize,
    n_rep: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let offset = s - t;
    let mut bias = Vec::with_capacity(n_rep * t * s_pad);
    for _ in 0..n_rep {
        for i in 0..t {
            bias.extend((0..s_pad).map(|j| if j <= offset + i { 0.0 } else { HIDDEN }));
        }
    }
    Tensor::from_data(TensorData::new(bias, [1, 1, n_rep * t, s_pad]), device)
}

//! Multi-head attention with grouped KV heads (MHA, GQA and MQA are one code path).
//!
//! GQA is computed without materializing repeated K/V: the `n_rep` query heads that share a KV
//! head are folded into the query-length axis, `[b, n_kv, n_rep * t, d]`, so one matmul per KV
//! head serves its whole group. Memory is what kvlab measures; repeating K/V `n_rep` times for
//! every decode step would spend exactly what GQA saves.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::cache::{AttentionMask, CacheError, KvCache};
use crate::linear::SplitLinear;
use crate::rope::RotaryEncoding;

/// A large negative bias: exp() of it underflows to exactly 0 next to any real score.
const HIDDEN: f32 = -1.0e30;

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Q, K and V projections fused into one pass over `[hidden, (n_heads + 2 n_kv) head_dim]`.
    pub qkv: SplitLinear<B>,
    pub wo: SplitLinear<B>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
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
        let (qd, kd) = (h * d, kvh * d);
        let q = qkv.clone().slice([0..b, 0..t, 0..qd]).reshape([b, t, h, d]).swap_dims(1, 2);
        let k =
            qkv.clone().slice([0..b, 0..t, qd..qd + kd]).reshape([b, t, kvh, d]).swap_dims(1, 2);
        let v =
            qkv.slice([0..b, 0..t, qd + kd..qd + 2 * kd]).reshape([b, t, kvh, d]).swap_dims(1, 2);

        let q = rope.apply(q, starts);
        let view = cache.update(layer, k, v, rope)?;
        let s = view.k.dims()[2];

        // Query heads h = g * n_rep + r share KV head g: [b, h, t, d] -> [b, kvh, n_rep * t, d]
        let q = q.reshape([b, kvh, n_rep * t, d]);
        // [b, kvh, n_rep * t, s]
        let scores = q.matmul(view.k.swap_dims(2, 3)).mul_scalar(1.0 / (d as f64).sqrt());
        let scores = match view.mask {
            AttentionMask::CausalEnd if t == 1 => scores,
            AttentionMask::CausalEnd => {
                let bias = causal_end_bias::<B>(t, s, n_rep, &scores.device());
                scores + bias
            }
            AttentionMask::Hidden(hidden) => {
                // [b, t, s] -> [b, 1, n_rep * t, s]: the same mask for every head of a group.
                let bias = Tensor::<B, 3>::zeros([b, t, s], &scores.device())
                    .mask_fill(hidden, HIDDEN)
                    .unsqueeze_dim::<4>(1)
                    .repeat_dim(2, n_rep);
                scores + bias
            }
        };
        let probs = softmax(scores, 3);
        // [b, kvh, n_rep * t, d] -> [b, h, t, d] -> [b, t, h * d]
        let out = probs.matmul(view.v).reshape([b, h, t, d]).swap_dims(1, 2).reshape([b, t, h * d]);
        Ok(self.wo.forward(out))
    }
}

/// `[1, 1, n_rep * t, s]`: 0 where query `i` may see key `j` (j <= s - t + i), else HIDDEN.
fn causal_end_bias<B: Backend>(
    t: usize,
    s: usize,
    n_rep: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let offset = s - t;
    let mut bias = Vec::with_capacity(n_rep * t * s);
    for _ in 0..n_rep {
        for i in 0..t {
            bias.extend((0..s).map(|j| if j <= offset + i { 0.0 } else { HIDDEN }));
        }
    }
    Tensor::from_data(TensorData::new(bias, [1, 1, n_rep * t, s]), device)
}

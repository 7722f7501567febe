//! One decoder layer: `x + attn(norm(x))`, then `x + mlp(norm(x))` (Llama, Qwen2), or with the
//! block outputs normed too before each residual add, `x + norm(attn(norm(x)))` (Gemma's
//! "sandwich" norms).

use burn::nn::RmsNorm;
use burn::prelude::*;

use crate::attention::Attention;
use crate::cache::{CacheError, KvCache};
use crate::mlp::GatedMlp;
use crate::rope::RotaryEncoding;

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    pub attn: Attention<B>,
    /// Norm of attention's output, where the family has one.
    pub attn_post_norm: Option<RmsNorm<B>>,
    pub mlp_norm: RmsNorm<B>,
    pub mlp: GatedMlp<B>,
    /// Norm of the MLP's output, where the family has one.
    pub mlp_post_norm: Option<RmsNorm<B>>,
}

impl<B: Backend> DecoderLayer<B> {
    /// # Shapes
    /// - x: `[batch, t, hidden]` -> `[batch, t, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        layer: usize,
        starts: &[usize],
        cache: &mut dyn KvCache<B>,
        rope: &RotaryEncoding<B>,
    ) -> Result<Tensor<B, 3>, CacheError> {
        let attn =
            self.attn.forward(self.attn_norm.forward(x.clone()), layer, starts, cache, rope)?;
        let h = x + post_norm(&self.attn_post_norm, attn);
        let mlp = self.mlp.forward(self.mlp_norm.forward(h.clone()));
        Ok(h + post_norm(&self.mlp_post_norm, mlp))
    }
}

fn post_norm<B: Backend>(norm: &Option<RmsNorm<B>>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match norm {
        Some(norm) => norm.forward(x),
        None => x,
    }
}

//! One pre-norm decoder layer: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::nn::RmsNorm;
use burn::prelude::*;

use crate::attention::Attention;
use crate::cache::{CacheError, KvCache};
use crate::mlp::SwiGlu;
use crate::rope::RotaryEncoding;

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    pub attn: Attention<B>,
    pub mlp_norm: RmsNorm<B>,
    pub mlp: SwiGlu<B>,
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
        let h =
            x.clone() + self.attn.forward(self.attn_norm.forward(x), layer, starts, cache, rope)?;
        Ok(h.clone() + self.mlp.forward(self.mlp_norm.forward(h)))
    }
}

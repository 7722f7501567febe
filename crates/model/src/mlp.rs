//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::linear::SplitLinear;

#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// Gate and up projections fused into one pass: `[hidden, 2 * intermediate]`.
    pub gate_up: SplitLinear<B>,
    pub down: SplitLinear<B>,
}

impl<B: Backend> SwiGlu<B> {
    /// # Shapes
    /// - x: `[batch, t, hidden]` -> `[batch, t, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let gate_up = self.gate_up.forward(x);
        let ff = gate_up.dims()[2] / 2;
        let gate = gate_up.clone().slice([0..b, 0..t, 0..ff]);
        let up = gate_up.slice([0..b, 0..t, ff..2 * ff]);
        self.down.forward(silu(gate) * up)
    }
}

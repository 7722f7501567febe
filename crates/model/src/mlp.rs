//! The gated feed-forward block: `down(act(gate(x)) * up(x))` — SwiGLU (Llama, Qwen2) or GeGLU
//! with GELU's tanh approximation (Gemma).

use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, silu};

use crate::arch::Activation;
use crate::linear::SplitLinear;

#[derive(Module, Debug)]
pub struct GatedMlp<B: Backend> {
    /// Gate and up projections fused into one pass: `[hidden, 2 * intermediate]`.
    pub gate_up: SplitLinear<B>,
    pub down: SplitLinear<B>,
    #[module(skip)]
    pub activation: Activation,
}

impl<B: Backend> GatedMlp<B> {
    /// # Shapes
    /// - x: `[batch, t, hidden]` -> `[batch, t, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let gate_up = self.gate_up.forward(x);
        let ff = gate_up.dims()[2] / 2;
        let gate = gate_up.clone().slice([0..b, 0..t, 0..ff]);
        let up = gate_up.slice([0..b, 0..t, ff..2 * ff]);
        let gate = match self.activation {
            Activation::Silu => silu(gate),
            Activation::GeluTanh => gelu_approximate(gate),
        };
        self.down.forward(gate * up)
    }
}

//! How a decoder family differs from Llama's, as data: one decoder reads these flags instead of
//! one copy of the model per family.
//!
//! | | Llama (SmolLM2) | Gemma 3 | Qwen2 |
//! |---|---|---|---|
//! | Q/K/V bias | no | no | yes |
//! | RMSNorm of q and k per head, before RoPE | no | yes | no |
//! | norms per block | 2 (pre) | 4 (pre and post, "sandwich") | 2 (pre) |
//! | MLP | SiLU-gated | GELU(tanh)-gated | SiLU-gated |
//! | embeddings scaled by √hidden | no | yes | no |
//! | layers | all global | 5 of every 6 see a 512-token window (rope base 10,000), every 6th global | all global |
//!
//! Values come from the GGUF's metadata where the file has them; what llama.cpp hard-codes for a
//! family (Gemma 3's window pattern and local rope base) is hard-coded in the loader's family
//! table, with the source named there.

use serde::{Deserialize, Serialize};

/// The gated MLP's activation: `down(act(gate(x)) * up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Qwen2.
    #[default]
    Silu,
    /// GELU with the tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// Sliding-window attention on some layers (Gemma 3, Mistral-style local layers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlidingWindow {
    /// A local layer's query at position `p` sees keys at positions `p - tokens + 1 ..= p`
    /// (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`: a key is hidden when `p - key >= tokens`).
    pub tokens: usize,
    /// Every `global_every`-th layer (layers `global_every - 1`, `2 global_every - 1`, ...) is
    /// global; the others are local. 0: every layer is local.
    pub global_every: usize,
    /// Rotary base of the local layers (global layers use the config's `rope_theta`).
    pub rope_theta: f64,
}

/// What one layer's attention sees, and at which rotary base.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerAttention {
    /// `Some(w)`: a local layer whose queries see the last `w` positions; `None`: global.
    pub window: Option<usize>,
    pub rope_theta: f64,
}

/// The family's differences from Llama (the default is Llama's: every flag off).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Arch {
    /// Q, K and V projections carry a bias.
    pub qkv_bias: bool,
    /// q and k are RMS-normed per head (weights `[head_dim]`) before RoPE.
    pub qk_norm: bool,
    /// Attention's and the MLP's outputs are RMS-normed before their residual adds.
    pub post_norms: bool,
    pub activation: Activation,
    /// Token embeddings are multiplied by √hidden before the first layer.
    pub scale_embeddings: bool,
    pub sliding_window: Option<SlidingWindow>,
    /// llama.cpp rotates this family NEOX-style (pairs `i`, `i + d/2`, as kvlab does): its GGUF
    /// keeps Q/K rows unpermuted and its K cache holds keys in kvlab's channel order. Off
    /// (Llama), the converter permuted Q/K for interleaved pairs and the loader undoes it.
    pub neox_rope: bool,
}

impl Arch {
    /// Gemma 3 (text): QK-norm, sandwich norms, GeGLU, scaled embeddings, and local layers.
    pub fn gemma3(window: SlidingWindow) -> Self {
        Self {
            qkv_bias: false,
            qk_norm: true,
            post_norms: true,
            activation: Activation::GeluTanh,
            scale_embeddings: true,
            sliding_window: Some(window),
            neox_rope: true,
        }
    }

    /// Qwen2 / Qwen2.5: Llama plus Q/K/V biases.
    pub fn qwen2() -> Self {
        Self { qkv_bias: true, neox_rope: true, ..Self::default() }
    }

    /// Layer `layer`'s attention, given the model's global rotary base.
    pub fn layer_attention(&self, layer: usize, rope_theta: f64) -> LayerAttention {
        match self.sliding_window {
            // `is_multiple_of(0)` is false: with `global_every = 0` every layer is local.
            Some(w) if !(layer + 1).is_multiple_of(w.global_every) => {
                LayerAttention { window: Some(w.tokens), rope_theta: w.rope_theta }
            }
            _ => LayerAttention { window: None, rope_theta },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_layers_5_11_17_are_global() {
        let arch =
            Arch::gemma3(SlidingWindow { tokens: 512, global_every: 6, rope_theta: 10_000.0 });
        let global: Vec<usize> =
            (0..18).filter(|&l| arch.layer_attention(l, 1e6).window.is_none()).collect();
        assert_eq!(global, vec![5, 11, 17]);
        assert_eq!(arch.layer_attention(5, 1e6).rope_theta, 1e6);
        assert_eq!(
            arch.layer_attention(4, 1e6),
            LayerAttention { window: Some(512), rope_theta: 10_000.0 }
        );
        assert_eq!(
            Arch::default().layer_attention(3, 1e5),
            LayerAttention { window: None, rope_theta: 1e5 }
        );
    }
}

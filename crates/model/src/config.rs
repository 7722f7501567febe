//! Model hyper-parameters and the named presets kvlab ships.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::arch::{Arch, LayerAttention, SlidingWindow};

/// The shape of a Llama-style decoder. Everything the KV-cache formula needs is here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads; divides `n_heads` (MHA: equal, GQA: fewer, MQA: one).
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    /// The LM head reuses the token embedding matrix.
    pub tie_embeddings: bool,
    /// The largest position the rotary table covers.
    pub max_positions: usize,
    /// How the family differs from Llama (QK-norm, biases, local layers, ...).
    #[serde(default)]
    pub arch: Arch,
}

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("unknown model preset '{0}' (known: {known})", known = PRESETS.join(", "))]
    UnknownPreset(String),
    #[error("invalid model config: {0}")]
    Invalid(String),
}

/// Names accepted by [`ModelConfig::preset`].
pub const PRESETS: &[&str] = &["seed-toy", "smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b"];

impl ModelConfig {
    /// The article's toy `LlamaConfig(vocab_size=100, hidden_size=256, intermediate_size=512,
    /// num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)`. The article leaves
    /// rope theta and eps at transformers' defaults (10000, 1e-6) and unties the head.
    pub fn seed_toy() -> Self {
        Self {
            vocab_size: 100,
            hidden_size: 256,
            intermediate_size: 512,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 4,
            head_dim: 64,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            tie_embeddings: false,
            max_positions: 32_768,
            arch: Arch::default(),
        }
    }

    /// SmolLM2-135M(-Instruct): 30 layers, 9 query heads sharing 3 KV heads.
    pub fn smollm2_135m() -> Self {
        Self {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            n_layers: 30,
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
            rope_theta: 100_000.0,
            rms_eps: 1e-5,
            tie_embeddings: true,
            max_positions: 32_768,
            arch: Arch::default(),
        }
    }

    /// Gemma 3 270M (base): 18 layers, 4 query heads sharing one KV head of 256 dims; 15 local
    /// layers with a 512-token window.
    pub fn gemma3_270m() -> Self {
        Self {
            vocab_size: 262_144,
            hidden_size: 640,
            intermediate_size: 2048,
            n_layers: 18,
            n_heads: 4,
            n_kv_heads: 1,
            head_dim: 256,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            tie_embeddings: true,
            max_positions: 32_768,
            arch: Arch::gemma3(SlidingWindow {
                tokens: 512,
                global_every: 6,
                rope_theta: 10_000.0,
            }),
        }
    }

    /// Qwen2.5-Coder-1.5B-Instruct: 28 layers, 12 query heads sharing 2 KV heads of 128 dims,
    /// Q/K/V biases, an untied head.
    pub fn qwen25_coder_1_5b() -> Self {
        Self {
            vocab_size: 151_936,
            hidden_size: 1536,
            intermediate_size: 8960,
            n_layers: 28,
            n_heads: 12,
            n_kv_heads: 2,
            head_dim: 128,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            tie_embeddings: false,
            max_positions: 32_768,
            arch: Arch::qwen2(),
        }
    }

    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name {
            "seed-toy" => Ok(Self::seed_toy()),
            "smollm2-135m" => Ok(Self::smollm2_135m()),
            "gemma3-270m" => Ok(Self::gemma3_270m()),
            "qwen2.5-coder-1.5b" => Ok(Self::qwen25_coder_1_5b()),
            other => Err(ConfigError::UnknownPreset(other.to_string())),
        }
    }

    /// The same model with another number of KV heads (the MHA/GQA/MQA lever).
    pub fn with_kv_heads(mut self, n_kv_heads: usize) -> Result<Self, ConfigError> {
        self.n_kv_heads = n_kv_heads;
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("max_positions", self.max_positions),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be > 0")));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ConfigError::Invalid(format!(
                "kv_heads = {} does not divide n_heads = {}",
                self.n_kv_heads, self.n_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::Invalid(format!(
                "head_dim = {} must be even for rotary embeddings",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// Layer `layer`'s attention: global, or local with a window, and its rotary base.
    pub fn layer_attention(&self, layer: usize) -> LayerAttention {
        self.arch.layer_attention(layer, self.rope_theta)
    }

    /// Query heads served by one KV head.
    pub fn n_rep(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// The article's formula for one token of one sequence:
    /// 2 (K and V) · n_kv_heads · head_dim · layers · bytes.
    pub fn kv_bytes_per_token(&self, bytes_per_element: usize) -> usize {
        2 * self.n_kv_heads * self.head_dim * self.n_layers * bytes_per_element
    }

    /// 2 · L · batch · n_kv_heads · head_dim · layers · bytes.
    pub fn kv_bytes(&self, seq_len: usize, batch: usize, bytes_per_element: usize) -> usize {
        seq_len * batch * self.kv_bytes_per_token(bytes_per_element)
    }

    /// The formula as a sum over layers, for the model's own cache plan: a local layer with a
    /// window of `W` holds `min(L, W)` tokens, a global layer `L`:
    /// Σ_layers 2 · L_layer · batch · n_kv_heads · head_dim · bytes. Equal to
    /// [`ModelConfig::kv_bytes`] on a model without local layers.
    pub fn kv_bytes_planned(
        &self,
        seq_len: usize,
        batch: usize,
        bytes_per_element: usize,
    ) -> usize {
        let per_token_layer = 2 * batch * self.n_kv_heads * self.head_dim * bytes_per_element;
        (0..self.n_layers)
            .map(|l| match self.layer_attention(l).window {
                Some(w) => seq_len.min(w),
                None => seq_len,
            })
            .sum::<usize>()
            * per_token_layer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_kv_formula() {
        let c = ModelConfig::smollm2_135m();
        // 2 · 30 layers · 3 heads · 64 dims · 4 bytes = 46,080 bytes per token in f32.
        assert_eq!(c.kv_bytes_per_token(4), 46_080);
        assert_eq!(c.kv_bytes(1024, 2, 4), 46_080 * 2048);
    }

    #[test]
    fn gemma3_planned_bytes_sum_over_layers() {
        let c = ModelConfig::gemma3_270m();
        // 15 local layers hold 512 tokens, 3 global layers 2,048: 2 · 1 KV head · 256 dims · 4 B.
        assert_eq!(c.kv_bytes_planned(2048, 1, 4), (15 * 512 + 3 * 2048) * 2 * 256 * 4);
        assert_eq!(c.kv_bytes(2048, 1, 4), 18 * 2048 * 2 * 256 * 4);
        assert_eq!(c.kv_bytes_planned(300, 2, 4), c.kv_bytes(300, 2, 4), "inside the window");
        let s = ModelConfig::smollm2_135m();
        assert_eq!(s.kv_bytes_planned(4096, 3, 1), s.kv_bytes(4096, 3, 1));
    }

    #[test]
    fn rejects_kv_heads_not_dividing_heads() {
        let err = ModelConfig::smollm2_135m().with_kv_heads(2).unwrap_err();
        assert!(err.to_string().contains("kv_heads = 2"), "{err}");
        assert!(ModelConfig::preset("nope").is_err());
    }
}

//! The dimensions every cache is sized by, and the byte arithmetic shared by all strategies.

use kvlab_model::ModelConfig;

/// Bytes of one f32 element: kvlab keeps full-precision K/V in f32.
pub const F32_BYTES: usize = 4;

/// What a cache must hold per token: `n_layers` layers of `n_kv_heads × head_dim` keys and as
/// many values, for each of `batch` sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub batch: usize,
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvLayout {
    pub fn new(config: &ModelConfig, batch: usize) -> Self {
        Self {
            batch,
            n_layers: config.n_layers,
            n_kv_heads: config.n_kv_heads,
            head_dim: config.head_dim,
        }
    }

    /// Elements of K (or of V) for one token of one sequence in one layer.
    pub fn elements_per_token_layer(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The article's formula, 2 · L · batch · n_kv_heads · head_dim · layers · bytes, for `tokens`
    /// tokens per sequence at `bytes` bytes per element.
    pub fn formula_bytes(&self, tokens: usize, bytes: usize) -> usize {
        2 * tokens * self.batch * self.n_kv_heads * self.head_dim * self.n_layers * bytes
    }
}

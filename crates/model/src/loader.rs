//! Loads a llama-architecture GGUF into [`ModelWeights`]: the config from the file's metadata
//! (never hard-coded), every tensor dequantized to f32, shapes checked, and the Q/K rows put
//! back in the order HF's rotate-half RoPE expects.
//!
//! Why the un-permutation: llama.cpp's converter permutes the rows of `attn_q` and `attn_k` so
//! that its default RoPE, which rotates interleaved pairs `(2i, 2i+1)`, computes what HF's
//! rotate-half RoPE computes on pairs `(i, i + d/2)`. Per head, the converter maps HF row
//! `j * d/2 + i` (j in {0, 1}) to GGUF row `2i + j`; [`unpermute_rows`] inverts it. The test
//! against the independent reference (`tests/reference.rs`) checks this numerically.

use std::path::Path;

use thiserror::Error;

use crate::config::ModelConfig;
use crate::gguf::{GgufError, GgufFile};
use crate::weights::{HostTensor, LayerWeights, ModelWeights};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{path}: architecture '{found}' is not supported (kvlab loads 'llama')")]
    Architecture { path: String, found: String },
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
}

/// Reads the model config from `llama.*` metadata.
pub fn config_from_gguf(file: &GgufFile) -> Result<ModelConfig, LoadError> {
    let path = file.path().display().to_string();
    let arch = file.get_str("general.architecture")?;
    if arch != "llama" {
        return Err(LoadError::Architecture { path, found: arch.to_string() });
    }
    let n_heads = file.get_u32("llama.attention.head_count")? as usize;
    let hidden = file.get_u32("llama.embedding_length")? as usize;
    let vocab = match file.get_u32("llama.vocab_size") {
        Ok(v) => v as usize,
        Err(_) => file.get_str_array("tokenizer.ggml.tokens")?.len(),
    };
    let config = ModelConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: file.get_u32("llama.feed_forward_length")? as usize,
        n_layers: file.get_u32("llama.block_count")? as usize,
        n_heads,
        n_kv_heads: file.get_u32("llama.attention.head_count_kv")? as usize,
        head_dim: match file.get_u32("llama.rope.dimension_count") {
            Ok(d) => d as usize,
            Err(_) => hidden / n_heads,
        },
        rope_theta: file.get_f32("llama.rope.freq_base").map(shortest_f64).unwrap_or(10_000.0),
        rms_eps: shortest_f64(file.get_f32("llama.attention.layer_norm_rms_epsilon")?),
        tie_embeddings: file.tensor("output.weight").is_none(),
        max_positions: 32_768,
    };
    config.validate().map_err(|e| LoadError::Shape { path, message: e.to_string() })?;
    Ok(config)
}

/// The f64 a person wrote when the file stores an f32: `1e-5` stays `1e-5`, not
/// `9.999999747378752e-6` (f32's shortest decimal, parsed back as f64).
fn shortest_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// Opens `path` and loads every weight.
pub fn load_gguf(path: &Path) -> Result<ModelWeights, LoadError> {
    let file = GgufFile::open(path)?;
    weights_from_gguf(&file)
}

pub fn weights_from_gguf(file: &GgufFile) -> Result<ModelWeights, LoadError> {
    let config = config_from_gguf(file)?;
    let tensor = |name: &str| -> Result<HostTensor, LoadError> {
        let (data, shape) = file.tensor_f32(name)?;
        Ok(HostTensor::new(data, shape))
    };
    let hd = config.head_dim;
    let layers = (0..config.n_layers)
        .map(|i| {
            let t = |name: &str| tensor(&format!("blk.{i}.{name}.weight"));
            Ok(LayerWeights {
                attn_norm: t("attn_norm")?,
                wq: unpermute_rows(t("attn_q")?, config.n_heads, hd),
                wk: unpermute_rows(t("attn_k")?, config.n_kv_heads, hd),
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                mlp_norm: t("ffn_norm")?,
                gate: t("ffn_gate")?,
                up: t("ffn_up")?,
                down: t("ffn_down")?,
            })
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    let lm_head = match file.tensor("output.weight") {
        Some(_) => Some(tensor("output.weight")?),
        None => None,
    };
    let weights = ModelWeights {
        embed: tensor("token_embd.weight")?,
        layers,
        final_norm: tensor("output_norm.weight")?,
        lm_head,
        config,
    };
    weights
        .check_shapes()
        .map_err(|message| LoadError::Shape { path: file.path().display().to_string(), message })?;
    Ok(weights)
}

/// Undoes llama.cpp's Q/K row permutation: per head of `head_dim` rows, GGUF row `2i + j` goes
/// back to row `j * head_dim/2 + i`.
///
/// # Shapes
/// - t: `[n_heads * head_dim, in]`
pub fn unpermute_rows(t: HostTensor, n_heads: usize, head_dim: usize) -> HostTensor {
    let [rows, cols] = t.dims2();
    debug_assert_eq!(rows, n_heads * head_dim);
    let half = head_dim / 2;
    let mut out = vec![0.0f32; t.data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(out, t.shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        // One head of 4 rows (d/2 = 2), one column: HF rows [a0, a1, b0, b1] are stored by the
        // converter as pairs [a0, b0, a1, b1].
        let gguf = HostTensor::new(vec![0.0, 10.0, 1.0, 11.0], vec![4, 1]);
        assert_eq!(unpermute_rows(gguf, 1, 4).data, vec![0.0, 1.0, 10.0, 11.0]);
    }
}

//! Loads a GGUF of a supported family (`llama`, `gemma3`, `qwen2`) into [`ModelWeights`]: the
//! config from the file's metadata (never hard-coded, except what llama.cpp itself hard-codes for
//! a family: see [`Family`]), every tensor dequantized to f32, shapes checked, and for `llama`
//! files the Q/K rows put back in the order HF's rotate-half RoPE expects.
//!
//! Why the un-permutation: llama.cpp's converter permutes the rows of `attn_q` and `attn_k` of
//! `llama` models so that its default RoPE, which rotates interleaved pairs `(2i, 2i+1)`,
//! computes what HF's rotate-half RoPE computes on pairs `(i, i + d/2)`. Per head, the converter
//! maps HF row `j * d/2 + i` (j in {0, 1}) to GGUF row `2i + j`; [`unpermute_rows`] inverts it.
//! The test against the independent reference (`tests/reference.rs`) checks this numerically.
//! `gemma3` and `qwen2` files are not permuted: llama.cpp rotates them "NEOX" style, which is
//! rotate-half.

use std::path::Path;

use thiserror::Error;

use crate::arch::{Arch, SlidingWindow};
use crate::config::ModelConfig;
use crate::gguf::{GgufError, GgufFile};
use crate::weights::{HostTensor, LayerWeights, ModelWeights, PostNorms, QkNorm, QkvBias};

/// The architectures kvlab loads (`general.architecture`).
pub(crate) const ARCHITECTURES: &[&str] = &["llama", "gemma3", "qwen2"];

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(
        "{path}: architecture '{found}' is not supported (kvlab loads {})",
        ARCHITECTURES.join(", ")
    )]
    Architecture { path: String, found: String },
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
}

/// A supported family: its metadata prefix and what its graph does beyond Llama's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Gemma3,
    Qwen2,
}

impl Family {
    fn of(file: &GgufFile) -> Result<Self, LoadError> {
        match file.get_str("general.architecture")? {
            "llama" => Ok(Family::Llama),
            "gemma3" => Ok(Family::Gemma3),
            "qwen2" => Ok(Family::Qwen2),
            other => Err(LoadError::Architecture {
                path: file.path().display().to_string(),
                found: crate::printable::printable(other),
            }),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Gemma3 => "gemma3",
            Family::Qwen2 => "qwen2",
        }
    }

    /// What the file's metadata does not say. For Gemma 3, llama.cpp's `llama-model.cpp`
    /// hard-codes the local layers (`set_swa_pattern(6)`: every 6th layer global) and their rope
    /// base (`rope_freq_base_train_swa = 10000`); the window size is read from
    /// `gemma3.attention.sliding_window`.
    fn arch(self, file: &GgufFile) -> Result<Arch, LoadError> {
        Ok(match self {
            Family::Llama => Arch::default(),
            Family::Qwen2 => Arch::qwen2(),
            Family::Gemma3 => Arch::gemma3(SlidingWindow {
                tokens: file.get_u32("gemma3.attention.sliding_window")? as usize,
                global_every: 6,
                rope_theta: 10_000.0,
            }),
        })
    }
}

/// Reads the model config from the family's metadata (`llama.*`, `gemma3.*`, `qwen2.*`).
pub fn config_from_gguf(file: &GgufFile) -> Result<ModelConfig, LoadError> {
    let path = file.path().display().to_string();
    let family = Family::of(file)?;
    let key = |k: &str| format!("{}.{k}", family.prefix());
    let u32_key = |k: &str| file.get_u32(&key(k)).map(|v| v as usize);
    let n_heads = u32_key("attention.head_count")?;
    let hidden = u32_key("embedding_length")?;
    let vocab = match u32_key("vocab_size") {
        Ok(v) => v,
        Err(_) => file.get_str_array("tokenizer.ggml.tokens")?.len(),
    };
    // Gemma's heads are wider than hidden / heads (256 vs 160): its key_length says so.
    let head_dim = u32_key("attention.key_length")
        .or_else(|_| u32_key("rope.dimension_count"))
        // No head count divides nothing: `validate` below names n_heads = 0.
        .unwrap_or(hidden.checked_div(n_heads).unwrap_or(0));
    let config = ModelConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: u32_key("feed_forward_length")?,
        n_layers: u32_key("block_count")?,
        n_heads,
        n_kv_heads: u32_key("attention.head_count_kv")?,
        head_dim,
        rope_theta: file.get_f32(&key("rope.freq_base")).map(shortest_f64).unwrap_or(10_000.0),
        rms_eps: shortest_f64(file.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
        tie_embeddings: file.tensor("output.weight").is_none(),
        max_positions: 32_768,
        arch: family.arch(file)?,
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
    // The arch says how llama.cpp rotates the family, hence whether its converter permuted Q/K.
    let permuted = !Family::of(file)?.arch(file)?.neox_rope;
    let tensor = |name: &str| -> Result<HostTensor, LoadError> {
        let (data, shape) = file.tensor_f32(name)?;
        Ok(HostTensor::new(data, shape))
    };
    let (hd, arch) = (config.head_dim, config.arch);
    let layers = (0..config.n_layers)
        .map(|i| {
            let t = |name: &str| tensor(&format!("blk.{i}.{name}"));
            let qk = |name: &str, heads: usize| -> Result<HostTensor, LoadError> {
                let w = t(name)?;
                Ok(if permuted { unpermute_rows(w, heads, hd) } else { w })
            };
            Ok(LayerWeights {
                attn_norm: t("attn_norm.weight")?,
                wq: qk("attn_q.weight", config.n_heads)?,
                wk: qk("attn_k.weight", config.n_kv_heads)?,
                wv: t("attn_v.weight")?,
                wo: t("attn_output.weight")?,
                mlp_norm: t("ffn_norm.weight")?,
                gate: t("ffn_gate.weight")?,
                up: t("ffn_up.weight")?,
                down: t("ffn_down.weight")?,
                qkv_bias: match arch.qkv_bias {
                    true => Some(QkvBias {
                        q: t("attn_q.bias")?,
                        k: t("attn_k.bias")?,
                        v: t("attn_v.bias")?,
                    }),
                    false => None,
                },
                qk_norm: match arch.qk_norm {
                    true => {
                        Some(QkNorm { q: t("attn_q_norm.weight")?, k: t("attn_k_norm.weight")? })
                    }
                    false => None,
                },
                // llama.cpp's names: `post_attention_norm` normalizes attention's output (the
                // pre-MLP norm is `ffn_norm`), `post_ffw_norm` the MLP's.
                post_norms: match arch.post_norms {
                    true => Some(PostNorms {
                        attn: t("post_attention_norm.weight")?,
                        mlp: t("post_ffw_norm.weight")?,
                    }),
                    false => None,
                },
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
pub(crate) fn unpermute_rows(t: HostTensor, n_heads: usize, head_dim: usize) -> HostTensor {
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

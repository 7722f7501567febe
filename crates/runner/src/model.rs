//! Resolving an experiment's `model` to a config and weights, and checking strategies build.

use std::path::{Path, PathBuf};

use burn::prelude::Backend;
use kvlab_model::assets::{PRETRAINED, pretrained_gguf};
use kvlab_model::gguf::GgufFile;
use kvlab_model::loader::{config_from_gguf, load_gguf};
use kvlab_model::{Model, ModelConfig, ModelWeights};
use kvlab_strategies::{SpecError, StrategySpec};

use serde::Deserialize;

/// Where a model's weights come from (`[experiment] weights`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    #[default]
    Random,
    Pretrained,
}

/// Where model weights come from, as resolved by the CLI.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    /// `--model PATH`: a local .gguf used for `pretrained` weights.
    pub gguf: Option<PathBuf>,
    /// `--cache-dir`.
    pub cache_dir: Option<PathBuf>,
}

/// The config of a preset name, or read from a `.gguf` file's metadata.
pub(crate) fn config_of(model: &str) -> Result<ModelConfig, String> {
    if is_gguf(Path::new(model)) {
        let file = GgufFile::open(Path::new(model)).map_err(|e| e.to_string())?;
        return config_from_gguf(&file).map_err(|e| e.to_string());
    }
    ModelConfig::preset(model).map_err(|e| e.to_string())
}

/// Checks a model can be loaded with these weights, without loading it. Pretrained weights
/// exist for the presets in [`PRETRAINED`] (pinned GGUFs, or `--model PATH`) and for `.gguf`
/// paths.
pub fn check(model: &str, weights: Weights) -> Result<(), String> {
    config_of(model)?;
    match weights {
        Weights::Pretrained if !(PRETRAINED.contains(&model) || is_gguf(Path::new(model))) => {
            Err(format!(
                "model {model} has no pretrained weights (use weights = \"random\", or one of \
                 {} or a .gguf path)",
                PRETRAINED.join(", ")
            ))
        }
        _ => Ok(()),
    }
}

/// Checks a strategy is implemented and accepts `max_seq` tokens per row (builds a cache of it
/// for the toy model on the CPU: some parameters, like KIVI group sizes, depend on the length).
pub(crate) fn check_buildable(spec: &StrategySpec, max_seq: usize) -> Result<(), String> {
    let mut config = ModelConfig::seed_toy();
    if let Some(k) = spec.kv_heads.filter(|&k| k > 0 && config.n_heads.is_multiple_of(k)) {
        config.n_kv_heads = k;
    }
    // A low-rank cache takes its bases from the run's model, which is not loaded yet: here its
    // latent store is checked (a static cache `rank` wide), its rank against the model's
    // head_dim when the run builds it.
    spec.validate().map_err(|e| e.to_string())?;
    if let Some(rank) = spec.rank {
        config.head_dim = rank;
    }
    let spec = StrategySpec { rank: None, ..spec.clone() };
    match spec.build::<burn_flex::Flex>(&config, 1, max_seq.max(1), &burn_flex::FlexDevice) {
        Ok(_) => Ok(()),
        Err(SpecError::Build(msg)) => Err(msg),
        Err(e) => Err(e.to_string()),
    }
}

/// The GGUF file pretrained weights of `model` come from: the path itself, else `--model`,
/// `KVLAB_MODEL`, or the preset's pinned file fetched into the cache.
pub(crate) fn gguf_path(model: &str, source: &ModelSource) -> Result<PathBuf, String> {
    if is_gguf(Path::new(model)) {
        return Ok(PathBuf::from(model));
    }
    let (cli, cache) = (source.gguf.as_deref(), source.cache_dir.as_deref());
    match pretrained_gguf(model, cli, cache) {
        Some(path) => path.map_err(|e| e.to_string()),
        // Not a pretrained preset: the default model's file, as before presets had files.
        None => kvlab_model::assets::model_path(cli, cache).map_err(|e| e.to_string()),
    }
}

/// Host weights for a model: seeded random init from its config, or the pretrained GGUF.
pub fn weights(
    model: &str,
    weights: Weights,
    seed: u64,
    source: &ModelSource,
) -> Result<ModelWeights, String> {
    check(model, weights)?;
    match weights {
        Weights::Random => Ok(kvlab_model::init::random_weights(&config_of(model)?, seed)),
        Weights::Pretrained => {
            let path = gguf_path(model, source)?;
            let loaded = load_gguf(&path).map_err(|e| e.to_string())?;
            if !is_gguf(Path::new(model)) {
                let preset = config_of(model)?;
                if loaded.config != preset {
                    return Err(format!(
                        "{}: its config {:?} is not the {model} preset {:?}",
                        path.display(),
                        loaded.config,
                        preset
                    ));
                }
            }
            Ok(loaded)
        }
    }
}

/// Uploads host weights to a backend's device.
pub fn upload<B: Backend>(weights: &ModelWeights, device: &B::Device) -> Result<Model<B>, String> {
    Model::<B>::from_weights(weights, device)
}

/// Whether a path names a GGUF file.
pub(crate) fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gguf")
}

/// Parameters a config holds (every projection, norm, the embedding and an untied LM head): the
/// memory check's weights and the shard planner's cost per token.
pub fn parameters(c: &ModelConfig) -> u128 {
    let (h, hd) = (c.hidden_size as u128, c.head_dim as u128);
    let qkv_out = hd * (c.n_heads as u128 + 2 * c.n_kv_heads as u128);
    let attention = h * hd * (2 * c.n_heads as u128 + 2 * c.n_kv_heads as u128)
        + if c.arch.qkv_bias { qkv_out } else { 0 }
        + if c.arch.qk_norm { 2 * hd } else { 0 };
    let mlp = 3 * h * c.intermediate_size as u128;
    let head = if c.tie_embeddings { 1 } else { 2 };
    // Two norms per layer (four with post-norms), and the final norm.
    let norms = if c.arch.post_norms { 4 } else { 2 } * h;
    c.n_layers as u128 * (attention + mlp + norms) + h + head * h * c.vocab_size as u128
}

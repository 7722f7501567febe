//! The models a sweep runs on: host weights read once per model, and the device copy of the
//! head layout the current run needs (one at a time: a new layout frees the previous one).

use anyhow::{Result, anyhow};
use burn::prelude::Backend;
use kvlab_model::{Model, ModelWeights};
use kvlab_strategies::heads::{HeadReduction, convert_kv_heads};

use crate::experiment::Experiment;
use crate::model::ModelSource;
use crate::sweep::{Run, Value};

/// The head layout a run's model needs: `None` for the checkpoint's own.
pub(crate) type HeadLayout = Option<(usize, HeadReduction)>;

/// The run's head layout, read from its keys directly: a chunked-perplexity run has no
/// strategy but still converts the model.
pub(crate) fn head_layout(run: &Run) -> Result<HeadLayout> {
    let Some(kv_heads) = run.get("kv_heads").and_then(|v| v.as_usize()) else {
        return Ok(None);
    };
    let reduction = match run.get("head_reduction") {
        Some(Value::Str(name)) => name.parse::<HeadReduction>()?,
        _ => HeadReduction::default(),
    };
    Ok(Some((kv_heads, reduction)))
}

/// One model of the sweep: its host weights and the device copy of one head layout.
pub(crate) struct LoadedModel<B: Backend> {
    name: String,
    host: ModelWeights,
    device_copy: Option<(HeadLayout, Model<B>)>,
}

impl<B: Backend> LoadedModel<B> {
    /// Reads `name`'s host weights (random from the seed, or the GGUF).
    pub fn read(e: &Experiment, name: &str, source: &ModelSource) -> Result<Self> {
        let host = crate::model::weights(name, e.file.experiment.weights, e.seed(), source)
            .map_err(|m| anyhow!("model {name}: {m}"))?;
        Ok(Self { name: name.to_string(), host, device_copy: None })
    }

    /// Makes the device copy the one of `layout`, uploading it (converted first) unless it is
    /// the one held; [`Self::current`] then returns it.
    pub(crate) fn ensure_layout(&mut self, layout: HeadLayout, device: &B::Device) -> Result<()> {
        if self.device_copy.as_ref().is_none_or(|(held, _)| *held != layout) {
            drop(self.device_copy.take()); // free the previous layout's device copy first
            let model = match layout {
                None => crate::model::upload::<B>(&self.host, device),
                Some((k, reduction)) => {
                    let converted = convert_kv_heads(&self.host, k, reduction)?;
                    crate::model::upload::<B>(&converted, device)
                }
            }
            .map_err(|m| anyhow!("model {}: {m}", self.name))?;
            self.device_copy = Some((layout, model));
        }
        Ok(())
    }

    /// Pads the device copy's attention keys to multiples of `bucket` (0: off); logits are
    /// unchanged, only the shapes a backend compiles for are.
    pub fn set_key_bucket(&mut self, bucket: usize) {
        if let Some((_, model)) = &mut self.device_copy {
            model.set_key_bucket(bucket);
        }
    }

    /// Attention in one fused pass over the cache's K/V (`true`) or the dense reference ops.
    pub fn set_fused_attention(&mut self, fused: bool) {
        if let Some((_, model)) = &mut self.device_copy {
            model.set_fused_attention(fused);
        }
    }

    /// The device copy made by the last [`Self::ensure_layout`].
    pub fn current(&self) -> Result<&Model<B>> {
        match &self.device_copy {
            Some((_, model)) => Ok(model),
            None => Err(anyhow!("internal: model {} used before it was uploaded", self.name)),
        }
    }

    /// Runs `f` on the checkpoint's own layout: the held device copy if it is that one, else a
    /// temporary upload (the perplexity reference of a converted model).
    pub(crate) fn with_native<T>(
        &self,
        device: &B::Device,
        f: impl FnOnce(&Model<B>) -> Result<T>,
    ) -> Result<T> {
        match &self.device_copy {
            Some((None, model)) => f(model),
            _ => {
                let native = crate::model::upload::<B>(&self.host, device)
                    .map_err(|m| anyhow!("model {}: {m}", self.name))?;
                f(&native)
            }
        }
    }
}

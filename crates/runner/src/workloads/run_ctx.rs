//! What one run's measurement is handed.

use burn::prelude::Backend;
use kvlab_model::{KvCache, Model};

use crate::experiment::Experiment;
use crate::progress::Progress;
use crate::sweep::Run;

/// Everything one run's measurement needs.
pub struct RunCtx<'a, B: Backend> {
    pub model: &'a Model<B>,
    pub device: &'a B::Device,
    pub experiment: &'a Experiment,
    pub run: &'a Run,
    pub progress: &'a Progress,
    /// Where pretrained weights, the tokenizer and corpora come from.
    pub source: &'a crate::model::ModelSource,
}

impl<B: Backend> RunCtx<'_, B> {
    /// Builds the run's cache for `batch` rows of at most `max_seq` tokens.
    pub fn cache(&self, batch: usize, max_seq: usize) -> anyhow::Result<Box<dyn KvCache<B>>> {
        let spec = self.run.spec().map_err(anyhow::Error::msg)?;
        Ok(spec.build_for_model::<B>(self.model, batch, max_seq, self.device)?)
    }
}

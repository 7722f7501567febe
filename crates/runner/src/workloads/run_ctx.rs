//! What one run's measurement is handed.

use burn::prelude::Backend;
use kvlab_model::{KvCache, Model};

use kvlab_strategies::RankBasis;

use crate::experiment::{Experiment, PerplexityParams};
use crate::model::Weights;
use crate::workloads::corpus::corpus_tokens;

/// Tokens of calibration text for `rank_basis = "calibrated"`.
pub const CALIBRATION_TOKENS: usize = 512;
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
        let calibration = match spec.rank_basis {
            Some(RankBasis::Calibrated) => Some(self.calibration_tokens()?),
            _ => None,
        };
        Ok(spec.build_for_model::<B>(
            self.model,
            calibration.as_deref(),
            batch,
            max_seq,
            self.device,
        )?)
    }

    /// The text calibrated low-rank bases are fitted on: the first [`CALIBRATION_TOKENS`]
    /// tokens of Macbeth (a play no experiment evaluates), or seeded random ids for a model
    /// without pretrained weights (and so without a tokenizer).
    fn calibration_tokens(&self) -> anyhow::Result<Vec<u32>> {
        let corpus = match self.experiment.weights() {
            Weights::Pretrained => "shakespeare:macbeth",
            Weights::Random => "random",
        };
        let p = PerplexityParams {
            corpus: corpus.into(),
            tokens: CALIBRATION_TOKENS,
            mode: Default::default(),
            chunk: None,
            divergence: false,
            draws: 0,
            draw_scale: 1e-3,
        };
        let (seed, vocab) = (self.experiment.seed() ^ 0xca11b, self.model.config.vocab_size);
        corpus_tokens(&p, seed, self.run.model(), vocab, self.source)
    }
}

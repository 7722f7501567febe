//! The workloads: each measures one run on a backend `B` and returns its metric columns.

pub mod fragmentation;
pub mod haystack;
pub mod memory;
pub mod perplexity;
pub mod retrieval;
pub mod throughput;
pub mod walkthrough;

use burn::prelude::Backend;
use kvlab_model::{KvCache, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::experiment::Experiment;
use crate::progress::Progress;
use crate::rows::Metrics as _;
use crate::sweep::{Run, Workload};

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
        Ok(spec.build::<B>(&self.model.config, batch, max_seq, self.device)?)
    }
}

/// The metric columns of a workload's CSV, after the run columns: its `Metrics` struct's
/// fields.
pub fn metric_columns(workload: Workload) -> &'static [&'static str] {
    match workload {
        Workload::Walkthrough => walkthrough::Metrics::columns(),
        Workload::Memory => memory::Metrics::columns(),
        Workload::Throughput => throughput::Metrics::columns(),
        Workload::Perplexity => perplexity::Metrics::columns(),
        Workload::Fragmentation => fragmentation::Metrics::columns(),
        Workload::Retrieval => retrieval::Metrics::columns(),
    }
}

/// `batch` rows of `len` token ids drawn from a ChaCha8 stream seeded with `seed`: the same
/// prompts for every strategy of a sweep.
pub fn random_prompts(seed: u64, batch: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch).map(|_| (0..len).map(|_| rng.random_range(0..vocab as u32)).collect()).collect()
}

/// Waits for the device's queued work (timed regions end with it).
pub fn sync<B: Backend>(device: &B::Device) -> anyhow::Result<()> {
    B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))
}

//! A loaded and validated experiment, and the runs it asks for.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::schema::{ExperimentFile, PplMode};
use crate::backend::BackendName;
use crate::sweep::{self, AxisValues, Run, Workload};

/// A loaded and validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file's text (copied next to the results so `runner report` needs nothing else).
    pub source: String,
    pub file: ExperimentFile,
    pub backend: BackendName,
    pub axes: AxisValues,
    /// `[[sweep.also]]`: more points, each the main sweep with some strategy axes replaced.
    pub also: Vec<AxisValues>,
}

impl Experiment {
    pub fn name(&self) -> &str {
        &self.file.experiment.name
    }

    pub fn seed(&self) -> u64 {
        self.file.experiment.seed
    }

    /// Where the experiment's weights come from.
    pub fn weights(&self) -> crate::model::Weights {
        self.file.experiment.weights
    }

    /// The workloads this experiment configures, in run order.
    pub fn workloads(&self) -> Vec<Workload> {
        let w = &self.file.workload;
        Workload::ALL
            .into_iter()
            .filter(|k| match k {
                Workload::Walkthrough => w.walkthrough.is_some(),
                Workload::Memory => w.memory.is_some(),
                Workload::Throughput => w.throughput.is_some(),
                Workload::Perplexity => w.perplexity.is_some(),
                Workload::Fragmentation => w.fragmentation.is_some(),
                Workload::Retrieval => w.retrieval.is_some(),
            })
            .collect()
    }

    /// Every run of one workload, in the pinned order.
    pub fn runs(&self, workload: Workload) -> Vec<Run> {
        let chunked = workload == Workload::Perplexity
            && self.file.workload.perplexity.as_ref().is_some_and(|p| p.mode == PplMode::Chunked);
        // The main sweep's runs, then each `also` entry's that are not among them.
        let mut runs = sweep::expand(&self.axes, workload);
        for axes in &self.also {
            for run in sweep::expand(axes, workload) {
                if !runs.iter().any(|r| r.params == run.params) {
                    runs.push(run);
                }
            }
        }
        if !chunked {
            return runs;
        }
        // Chunked perplexity does not use a cache strategy: one run per model and head layout
        // (kv_heads and head_reduction transform the model itself, so they still apply).
        const MODEL_KEYS: [&str; 3] = ["model", "kv_heads", "head_reduction"];
        let mut seen = BTreeSet::new();
        runs.into_iter()
            .map(|mut r| {
                for (k, v) in &mut r.params {
                    if !MODEL_KEYS.contains(k) {
                        *v = None;
                    }
                }
                r
            })
            .filter(|r| seen.insert(r.label()))
            .collect()
    }

    /// Every run of every workload.
    pub(crate) fn all_runs(&self) -> Vec<Run> {
        self.workloads().into_iter().flat_map(|w| self.runs(w)).collect()
    }
}

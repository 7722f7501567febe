//! The workloads: each measures one run on a backend `B` and returns its metric columns.

pub mod corpus;
pub mod fragmentation;
pub mod haystack;
pub mod memory;
pub mod perplexity;
pub mod retrieval;
pub mod throughput;
pub mod walkthrough;

mod device_sync;
mod prompts;
mod run_ctx;

pub use device_sync::sync;
pub use prompts::random_prompts;
pub use run_ctx::RunCtx;

use crate::rows::Metrics as _;
use crate::sweep::Workload;

/// The metric columns of a workload's CSV, after the run columns: its `Metrics` struct's
/// fields.
pub(crate) fn metric_columns(workload: Workload) -> &'static [&'static str] {
    match workload {
        Workload::Walkthrough => walkthrough::Metrics::columns(),
        Workload::Memory => memory::Metrics::columns(),
        Workload::Throughput => throughput::Metrics::columns(),
        Workload::Perplexity => perplexity::Metrics::columns(),
        Workload::Fragmentation => fragmentation::Metrics::columns(),
        Workload::Retrieval => retrieval::Metrics::columns(),
    }
}

//! Serving simulation for kvlab: how much of a KV memory budget holds real token states when
//! requests are batched continuously, with paged (vLLM PagedAttention) versus reserved
//! contiguous allocation. This is the "better management" lever: same model, same bytes per
//! token, more requests in flight because less memory is reserved, fragmented or idle.
//!
//! - [`trace`]: request traces (synthetic `chat` / `long-output` / `system-prompt` /
//!   `samples`, CSV files), with shared prompt prefixes;
//! - [`allocator`]: the first-fit allocator behind the contiguous policies;
//! - [`policy`]: the allocation policies and their names;
//! - [`config`]: what a run simulates (policy, budget, sharing, preemption, cost model);
//! - [`memory`]: the allocators applied to a byte budget (prefix sharing with
//!   copy-on-write, a host pool for swapping), and the accounting of every byte;
//! - [`scheduler`]: continuous batching with FCFS admission and preemption ([`simulate`]);
//! - [`work`]: one iteration's work, as an [`Executor`] sees it;
//! - [`metrics`]: the memory split, summary row and time series;
//! - [`latency`]: TTFT and TPOT percentiles;
//! - [`execute`]: the scheduled batches run through a real model (wall-clock throughput).

pub mod allocator;
pub mod config;
pub mod execute;
pub mod latency;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod scheduler;
pub mod trace;
pub mod work;

#[cfg(test)]
mod scheduler_tests;

use kvlab_strategies::block_pool::PoolError;
use thiserror::Error;

pub use config::{CostModel, Preemption, SimConfig};
pub use latency::{Latency, Percentiles};
pub use metrics::{IterationSample, MemorySample, Summary, write_csv};
pub use policy::Policy;
pub use scheduler::{Rejections, SimResult, Traffic, simulate, simulate_with};
pub use trace::{Prefix, Request, TraceGen, TraceKind};
pub use work::{Executor, IterationWork, RowWork};

/// Why a simulation could not run (rejected requests are counted, not errors).
#[derive(Debug, Error)]
pub enum ServingError {
    #[error("invalid simulation config: {0}")]
    InvalidConfig(&'static str),
    #[error("KV budget of {budget} bytes is smaller than {what} ({needed} bytes)")]
    BudgetTooSmall { budget: u64, needed: u64, what: &'static str },
    #[error("request {id}: {reason}")]
    InvalidRequest { id: u64, reason: &'static str },
    #[error("block pool: {0}")]
    Pool(#[from] PoolError),
    #[error("allocator: {0}")]
    Alloc(#[from] allocator::AllocError),
    #[error("internal error: a lease does not belong to this memory")]
    LeaseMismatch,
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("accounting broke at iteration {iteration}: parts sum to {accounted}, budget {budget}")]
    AccountingMismatch { iteration: u64, accounted: u128, budget: u64 },
    #[error("executing the schedule: {0}")]
    Execution(String),
    #[error("no progress after {iterations} busy iterations (scheduler bug)")]
    NoProgress { iterations: u64 },
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
    #[error("cannot write CSV {path}: {source}")]
    Csv { path: String, source: csv::Error },
}

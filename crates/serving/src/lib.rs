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
//! - [`metrics`]: the memory split ([`MemorySample`]), summary row and time series;
//! - [`latency`]: TTFT and TPOT percentiles;
//! - [`execute`]: the scheduled batches run through a real model (wall-clock throughput).

pub mod allocator;
mod budget_split;
pub mod config;
mod error;
pub mod execute;
mod in_flight;
mod keep_policy;
pub mod latency;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod scheduler;
mod sim_result;
pub mod trace;
pub mod work;

#[cfg(test)]
mod scheduler_tests;

pub use config::{CostModel, Preemption, SimConfig};
pub use error::ServingError;
pub use keep_policy::{keep_policy, simulated_keep_policies};
pub use latency::{Latency, Percentiles};
pub use metrics::{IterationSample, MemorySample, Summary, write_csv};
pub use policy::Policy;
pub use scheduler::{Rejections, SimResult, Traffic, simulate, simulate_with};
pub use trace::{Prefix, Request, TraceGen, TraceKind};
pub use work::{Executor, IterationWork, RowWork};

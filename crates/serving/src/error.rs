//! The one error type of a simulation run, in a file of its own so that every part of the
//! crate can name it without reaching up to the crate's top file.

use kvlab_strategies::{StrategyKind, block_pool::PoolError};
use thiserror::Error;

use crate::{allocator::AllocError, trace::TraceError};

/// Why a simulation could not run (rejected requests are counted, not errors).
#[derive(Debug, Error)]
pub enum ServingError {
    #[error("invalid simulation config: {0}")]
    InvalidConfig(&'static str),
    #[error("KV budget of {budget} bytes is smaller than {what} ({needed} bytes)")]
    BudgetTooSmall { budget: u64, needed: u64, what: &'static str },
    #[error("request {id}: {reason}")]
    InvalidRequest { id: u64, reason: &'static str },
    #[error("keep-policy `{name}` on the paged pool: {why}")]
    KeepPolicy { name: StrategyKind, why: String },
    #[error("block pool: {0}")]
    Pool(#[from] PoolError),
    #[error("allocator: {0}")]
    Alloc(#[from] AllocError),
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
    Trace(#[from] TraceError),
    #[error("cannot write CSV {path}: {source}")]
    Csv { path: String, source: csv::Error },
}

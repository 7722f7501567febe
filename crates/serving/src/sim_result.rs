//! What one run of the scheduler reports: the summary and series, and what it refused, moved
//! and copied.

use serde::Serialize;

use crate::{
    latency::Latency,
    metrics::{IterationSample, Summary},
};

/// Requests the run refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// `prompt + output > max_seq_len`.
    pub too_long: usize,
    /// Larger than the whole budget under this policy (it could never be admitted).
    pub never_fits: usize,
}

/// What preemption and sharing moved, copied or spared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Prompt tokens prefilled, recomputed tokens included (shared ones not).
    pub prefill_tokens: u64,
    /// Prompt and generated tokens prefilled again after recompute preemptions.
    pub recomputed_tokens: u64,
    /// Prompt tokens not computed because a running request of their group held them.
    pub prefix_hit_tokens: u64,
    /// Token slots copied by copy-on-write.
    pub cow_tokens: u64,
    pub swap_outs: u64,
    pub swap_ins: u64,
    /// Blocks and bytes moved between device and host, both ways.
    pub swap_blocks: u64,
    pub swap_bytes: u64,
    /// Seconds of the run: measured (executed) or modelled; `None` without a clock.
    pub elapsed_s: Option<f64>,
    /// Tokens a keep-policy evicted, blocks that released, and tokens compaction moved.
    pub evicted_tokens: u64,
    pub blocks_reclaimed: u64,
    pub compacted_tokens: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimResult {
    pub summary: Summary,
    /// One row per busy iteration, for concurrency-over-time charts.
    pub series: Vec<IterationSample>,
    pub rejections: Rejections,
    pub traffic: Traffic,
    pub latency: Latency,
    /// The most internal-fragmentation tokens any single request held at any iteration:
    /// below `block_size` for `paged`, `reservation - (prompt + output)` for `reserve-*`.
    pub max_internal_tokens_per_request: usize,
}

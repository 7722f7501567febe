//! What the simulation measures, and how it is averaged.
//!
//! Every busy iteration (one with a request running or waiting), after admission and before
//! finished requests leave, the budget is split into six disjoint parts, in bytes:
//!
//! - **token state**: KV of tokens already computed (prompt + generated so far) that one
//!   request holds;
//! - **stranded**: slots whose tokens a keep-policy evicted, in blocks still held because
//!   another slot of the block is live (paged memory frees whole blocks only);
//! - **shared**: KV blocks several requests hold (a common prefix), counted once; what sharing
//!   *saved* is not a part of the budget but the bytes the same requests would hold without
//!   it, reported beside (`sharing_saved_pct`, the vLLM paper's "blocks saved by sharing over
//!   blocks without sharing");
//! - **reserved**: memory a running request holds for tokens it *will* still generate;
//! - **internal fragmentation**: memory a running request holds that it will *never* fill
//!   (a reservation beyond `prompt + output`; the part of a last block past the final token);
//! - **external fragmentation**: free memory that cannot be used (exact rule per
//!   policy below);
//! - **free**: the rest.
//!
//! The parts always sum to the budget; the simulator checks this every iteration and fails with
//! [`crate::ServingError::AccountingMismatch`] if it ever does not. Percentages in the
//! [`Summary`] are means over busy iterations of `part / budget`.
//!
//! # External fragmentation
//!
//! Free memory is *external fragmentation* when it exists but cannot be used:
//!
//! - **contiguous** (`reserve-*`): all free bytes count as external when the head of the
//!   waiting queue is blocked *only* by fragmentation: its extent is no larger than the total
//!   free bytes, yet larger than every hole (so compaction would have admitted it). When the
//!   queue is empty, or the head needs more than all free bytes together, the free bytes are
//!   plain free: that is a capacity limit, not fragmentation.
//! - **paged**: any free block serves any request, so free blocks are never fragmented. The
//!   only external fragmentation is the tail of the budget too small to form a block,
//!   `budget_bytes mod (block_size * bytes_per_token)`, which no request can ever use.
//!
//! These definitions make the two comparable: each counts the bytes that a perfect compactor
//! (contiguous) or a smaller block (paged) would have turned into admitted work.
//!
//! The means include the ramp-up (first arrivals) and the drain (queue empty, batch shrinking);
//! the time series' `waiting` column tells the saturated stretch apart for steady-state figures.
//!
//! "Reserved" vs "internal" uses the request's true output length, which the simulator knows
//! and a real server does not: it is a post-hoc classification of the same bytes.

use std::path::Path;

use serde::Serialize;

pub use crate::budget_split::MemorySample;
use crate::{ServingError, budget_split::Snapshot, policy::Policy};

/// One row of the concurrency-over-time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IterationSample {
    /// Iteration number (idle stretches with nothing to do are skipped, so numbers may jump).
    pub iteration: u64,
    /// Requests holding KV memory and producing a token this iteration.
    pub running: usize,
    /// Requests arrived but not admitted (including preempted ones).
    pub waiting: usize,
    /// Token-state bytes (own and shared) / budget, in `[0, 1]`.
    pub utilization: f64,
    /// Stranded bytes (evicted slots in held blocks) / budget, in `[0, 1]`.
    pub stranded: f64,
    /// Paged: live tokens, blocks in use, blocks holding an evicted slot (0 otherwise).
    pub live_tokens: usize,
    pub blocks_held: usize,
    pub stranded_blocks: usize,
}

/// The flat per-run summary: one CSV row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `reserve-max`, `reserve-pow2`, `reserve-exact` or `paged`.
    pub policy: String,
    /// Tokens per block for `paged`; empty otherwise.
    pub block_size: Option<usize>,
    pub budget_bytes: u64,
    /// Requests in the trace.
    pub requests: usize,
    pub completed: usize,
    /// Requests never served: longer than `max_seq_len`, or larger than the whole budget.
    pub rejected: usize,
    /// Times a running request was evicted (paged only) to let older ones grow.
    pub preemptions: u64,
    /// Busy iterations.
    pub iterations: u64,
    /// Mean requests running per busy iteration.
    pub mean_running: f64,
    pub max_running: usize,
    /// Means over busy iterations, in percent of the budget; they sum to 100.
    pub token_state_pct: f64,
    pub shared_pct: f64,
    pub reserved_pct: f64,
    pub internal_pct: f64,
    pub external_pct: f64,
    pub free_pct: f64,
    /// Evicted slots in held blocks, in percent of the budget (mean over busy iterations).
    pub stranded_pct: f64,
    /// Tokens produced per busy iteration. Every running request produces exactly one token
    /// per iteration (prefill its first), so this equals `mean_running`: a throughput proxy in
    /// tokens per batch step.
    pub tokens_per_iteration: f64,
    /// Mean over busy iterations of the KV bytes the running requests hold (each physical
    /// block once) per running request.
    pub kv_bytes_per_request: f64,
    /// The same without sharing: every request's blocks counted in full.
    pub kv_bytes_per_request_unshared: f64,
    /// `1 - held / unshared` over the whole run, in percent: the memory sharing saved.
    pub sharing_saved_pct: f64,
}

/// Running totals, folded into a [`Summary`] at the end.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accumulator {
    sums: [u128; 7],
    /// Per-request held and unshared bytes, summed over iterations.
    per_request: [f64; 2],
    /// Held and unshared bytes, summed over iterations.
    held: [u128; 2],
    running_sum: u128,
    max_running: usize,
    iterations: u64,
    pub(crate) series: Vec<IterationSample>,
}

impl Accumulator {
    /// Adds one busy iteration: its budget split, and the bytes its running requests hold
    /// with and without sharing.
    pub(crate) fn record(
        &mut self,
        iteration: u64,
        snap: &Snapshot,
        running: usize,
        waiting: usize,
        budget: u64,
    ) {
        let mem = &snap.parts;
        for (sum, part) in self.sums.iter_mut().zip(mem.parts()) {
            *sum += u128::from(part);
        }
        let held = [snap.held_bytes, snap.unshared_bytes];
        for ((sum, per_request), bytes) in self.held.iter_mut().zip(&mut self.per_request).zip(held)
        {
            *sum += u128::from(bytes);
            *per_request += bytes as f64 / running.max(1) as f64;
        }
        self.running_sum += running as u128;
        self.max_running = self.max_running.max(running);
        self.iterations += 1;
        self.series.push(IterationSample {
            iteration,
            running,
            waiting,
            utilization: (mem.token_state + mem.shared) as f64 / budget as f64,
            stranded: mem.stranded as f64 / budget as f64,
            live_tokens: snap.live_tokens,
            blocks_held: snap.blocks_held,
            stranded_blocks: snap.stranded_blocks,
        });
    }

    /// Busy iterations recorded so far.
    pub(crate) fn iterations(&self) -> u64 {
        self.iterations
    }

    /// The summary, given what the scheduler counted.
    pub(crate) fn summary(&self, policy: Policy, budget: u64, counts: RunCounts) -> Summary {
        let n = self.iterations.max(1) as f64;
        let pct = |i: usize| self.sums[i] as f64 / n / budget as f64 * 100.0;
        let mean_running = self.running_sum as f64 / n;
        Summary {
            policy: policy.to_string(),
            block_size: policy.block_size(),
            budget_bytes: budget,
            requests: counts.requests,
            completed: counts.completed,
            rejected: counts.rejected,
            preemptions: counts.preemptions,
            iterations: self.iterations,
            mean_running,
            max_running: self.max_running,
            token_state_pct: pct(0),
            shared_pct: pct(1),
            reserved_pct: pct(2),
            internal_pct: pct(3),
            external_pct: pct(4),
            free_pct: pct(5),
            stranded_pct: pct(6),
            tokens_per_iteration: counts.tokens_produced as f64 / n,
            kv_bytes_per_request: self.per_request[0] / n,
            kv_bytes_per_request_unshared: self.per_request[1] / n,
            sharing_saved_pct: if self.held[1] == 0 {
                0.0
            } else {
                (1.0 - self.held[0] as f64 / self.held[1] as f64) * 100.0
            },
        }
    }
}

/// Counters the scheduler keeps, for [`Accumulator::summary`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunCounts {
    pub requests: usize,
    pub completed: usize,
    pub rejected: usize,
    pub preemptions: u64,
    pub tokens_produced: u64,
}

/// Writes `rows` as a CSV file with a header row (for [`Summary`] or [`IterationSample`]).
pub fn write_csv<T: Serialize>(path: impl AsRef<Path>, rows: &[T]) -> Result<(), ServingError> {
    let path = path.as_ref();
    let mut w = csv::Writer::from_path(path)
        .map_err(|source| ServingError::Csv { path: path.display().to_string(), source })?;
    for row in rows {
        w.serialize(row)
            .map_err(|source| ServingError::Csv { path: path.display().to_string(), source })?;
    }
    w.flush().map_err(|e| ServingError::Csv { path: path.display().to_string(), source: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_means_of_parts() {
        let mut acc = Accumulator::default();
        let a = MemorySample { token_state: 50, reserved: 10, free: 40, ..Default::default() };
        let b = MemorySample { token_state: 60, shared: 40, ..Default::default() };
        let snap = |parts, held_bytes, unshared_bytes| Snapshot {
            parts,
            held_bytes,
            unshared_bytes,
            ..Snapshot::default()
        };
        acc.record(0, &snap(a, 60, 60), 2, 0, 100);
        acc.record(1, &snap(b, 100, 200), 4, 1, 100);
        let counts = RunCounts { tokens_produced: 6, ..RunCounts::default() };
        let s = acc.summary(Policy::ReserveExact, 100, counts);
        assert!((s.token_state_pct - 55.0).abs() < 1e-9 && s.shared_pct == 20.0);
        assert_eq!(s.free_pct, 20.0);
        assert_eq!((s.kv_bytes_per_request, s.kv_bytes_per_request_unshared), (27.5, 40.0));
        assert!((s.sharing_saved_pct - 100.0 * 100.0 / 260.0).abs() < 1e-9);
        assert_eq!((s.mean_running, s.max_running, s.tokens_per_iteration), (3.0, 4, 3.0));
        assert_eq!(acc.series[1].utilization, 1.0);
        assert_eq!(a.total(), 100);
    }

    #[test]
    fn summary_writes_one_csv_row() {
        let dir = std::env::temp_dir().join(format!("kvlab-serving-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.csv");
        let s = Accumulator::default().summary(
            Policy::Paged { block_size: 16 },
            64,
            RunCounts::default(),
        );
        write_csv(&path, &[s.clone(), Summary { block_size: None, ..s }]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("policy,block_size,budget_bytes,requests,completed,rejected"));
        assert!(lines[1].starts_with("paged,16,64,"));
        assert!(lines[2].starts_with("paged,,64,"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(write_csv("/nonexistent/dir/x.csv", &[1u8]).is_err());
    }
}

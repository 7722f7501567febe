//! What a simulation is asked to do: the allocation policy and budget, whether prefixes are
//! shared, how a preempted request comes back, and (optionally) what an iteration costs in
//! seconds.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use kvlab_strategies::{StrategyKind, spec::StrategySpec};

use crate::policy::Policy;

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub policy: Policy,
    /// KV memory available to requests, in bytes.
    pub budget_bytes: u64,
    /// KV bytes one token costs across all layers: `2 (K and V) * layers * kv_heads *
    /// head_dim * bytes per element`, e.g. `2 * 30 * 3 * 64 * 4 = 46_080` for SmolLM2-135M
    /// in fp32.
    pub bytes_per_token: u64,
    /// The longest `prompt + output` the server accepts; `reserve-max` reserves this much.
    pub max_seq_len: usize,
    /// Requests of one prefix group share their prefix's blocks (`paged` only: a reservation
    /// is one request's extent).
    pub sharing: bool,
    /// How a preempted request comes back.
    pub preemption: Preemption,
    /// Host memory for swapped-out blocks, in bytes (`Preemption::Swap`; a request that does
    /// not fit there is recomputed instead).
    pub swap_bytes: u64,
    /// Seconds per iteration, for latencies in seconds when nothing is executed.
    pub cost: Option<CostModel>,
    /// A keep-policy per request on the paged pool (simulation only).
    pub eviction: Option<Eviction>,
}

impl SimConfig {
    /// No sharing, recompute preemption, no clock.
    pub fn new(
        policy: Policy,
        budget_bytes: u64,
        bytes_per_token: u64,
        max_seq_len: usize,
    ) -> Self {
        Self {
            policy,
            budget_bytes,
            bytes_per_token,
            max_seq_len,
            sharing: false,
            preemption: Preemption::Recompute,
            swap_bytes: 0,
            cost: None,
            eviction: None,
        }
    }
}

/// Each request keeps at most `keep_tokens` live tokens, the ones its keep-policy keeps, on the
/// paged pool; its evicted slots free a block only when the whole block is evicted. With
/// `compaction`, once a request's stranded slots add up to a block, the survivors of its last
/// block move into them, freeing that block (the moved tokens are counted: their K/V are
/// copied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eviction {
    /// The keep-policy, a registered kind; the simulator runs the ones that decide from
    /// positions alone (whose `kept` answers: `window`, `shift-window`, `sink`), having no
    /// attention to score tokens by.
    pub policy: StrategyKind,
    /// Tokens kept for good from the start of the text (`sink`'s parameter; 0 for the others).
    pub sink_tokens: usize,
    pub keep_tokens: usize,
    pub compaction: bool,
}

impl Eviction {
    /// The keep-policy as a strategy: its kind, with `keep_tokens` as its budget.
    pub fn spec(&self) -> StrategySpec {
        let takes_sinks = self.policy.entry().parameters.iter().any(|p| p.key == "sink_tokens");
        StrategySpec {
            cache_tokens: Some(self.keep_tokens),
            sink_tokens: takes_sinks.then_some(self.sink_tokens),
            ..StrategySpec::new(self.policy)
        }
    }
}

/// How a preempted request's KV comes back (vLLM's two modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preemption {
    /// Drop its blocks; prefill its prompt and generated tokens again when readmitted.
    Recompute,
    /// Copy its blocks to host memory and back when readmitted (recompute when the host pool
    /// is full).
    Swap,
}

impl fmt::Display for Preemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preemption::Recompute => "recompute",
            Preemption::Swap => "swap",
        })
    }
}

/// A preemption mode that is not one of ours.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown preemption `{0}` (expected recompute or swap)")]
pub struct UnknownPreemption(pub String);

impl FromStr for Preemption {
    type Err = UnknownPreemption;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "recompute" => Ok(Preemption::Recompute),
            "swap" => Ok(Preemption::Swap),
            other => Err(UnknownPreemption(other.to_owned())),
        }
    }
}

/// Seconds an iteration takes, from what it did: a decode step of the running batch (memory
/// bound: about constant for small batches), each prompt token prefilled or recomputed, and
/// each swap transfer (a latency per block copied, as vLLM issues one copy per block, plus
/// the bytes over the host link's bandwidth).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    pub decode_step_s: f64,
    pub prefill_token_s: f64,
    pub swap_bytes_per_s: f64,
    pub swap_block_s: f64,
}

impl CostModel {
    /// Seconds of an iteration that decoded (or not), prefilled `prefill_tokens` and moved
    /// `swap_blocks` blocks of `swap_bytes` bytes in all.
    pub(crate) fn iteration_s(
        &self,
        decoded: bool,
        prefill_tokens: u64,
        swap_blocks: u64,
        swap_bytes: u64,
    ) -> f64 {
        let decode = if decoded { self.decode_step_s } else { 0.0 };
        decode
            + prefill_tokens as f64 * self.prefill_token_s
            + swap_blocks as f64 * self.swap_block_s
            + swap_bytes as f64 / self.swap_bytes_per_s
    }

    /// Why the model cannot be used, if it cannot (each number finite, bandwidth positive).
    pub fn invalid(&self) -> Option<&'static str> {
        let times = [self.decode_step_s, self.prefill_token_s, self.swap_block_s];
        if times.iter().any(|t| !t.is_finite() || *t < 0.0) {
            Some("cost model times must be finite and >= 0")
        } else if !(self.swap_bytes_per_s.is_finite() && self.swap_bytes_per_s > 0.0) {
            Some("cost model swap bandwidth must be finite and > 0")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iteration_costs_its_parts() {
        let c = CostModel {
            decode_step_s: 0.01,
            prefill_token_s: 1e-4,
            swap_bytes_per_s: 1e9,
            swap_block_s: 1e-5,
        };
        let s = c.iteration_s(true, 100, 10, 1_000_000);
        assert!((s - (0.01 + 0.01 + 1e-4 + 1e-3)).abs() < 1e-12, "{s}");
        assert_eq!(c.iteration_s(false, 0, 0, 0), 0.0);
        assert!(c.invalid().is_none());
        assert!(CostModel { swap_bytes_per_s: 0.0, ..c }.invalid().is_some());
        assert!(CostModel { decode_step_s: f64::NAN, ..c }.invalid().is_some());
        assert_eq!("swap".parse::<Preemption>().unwrap(), Preemption::Swap);
        assert!("evict".parse::<Preemption>().is_err());
    }
}

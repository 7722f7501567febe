//! The workloads an experiment can run, the sweep axes each reads, and its CSV's axis columns.

use std::fmt;

use crate::axes::{AXES, Axis, Role};

/// The workloads, in the order an experiment runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Walkthrough,
    Memory,
    Throughput,
    Perplexity,
    /// Serving simulation: paged vs reserved-contiguous KV memory (kvlab-serving).
    Fragmentation,
    /// Passkey retrieval from haystacks of `context` tokens.
    Retrieval,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Self::Walkthrough,
        Self::Memory,
        Self::Throughput,
        Self::Perplexity,
        Self::Fragmentation,
        Self::Retrieval,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Walkthrough => "walkthrough",
            Self::Memory => "memory",
            Self::Throughput => "throughput",
            Self::Perplexity => "perplexity",
            Self::Fragmentation => "fragmentation",
            Self::Retrieval => "retrieval",
        }
    }

    /// The workload axes this workload reads (the others are not multiplied in).
    pub fn axes(self) -> &'static [&'static str] {
        match self {
            Self::Walkthrough | Self::Perplexity => &[],
            Self::Memory => &["batch", "context"],
            Self::Throughput => &["batch", "key_bucket", "attention", "context"],
            Self::Fragmentation => &[
                "policy",
                "attention",
                "budget_tokens",
                "budget_bytes",
                "trace_kind",
                "sharing",
                "prompt_tokens",
                "evict",
                "keep_tokens",
                "compaction",
                "cost",
                "preemption",
                "swap_tokens",
            ],
            Self::Retrieval => &["context"],
        }
    }

    /// Whether an axis is a column of this workload's CSV.
    pub(crate) fn has_column(self, axis: &Axis) -> bool {
        if self == Self::Fragmentation {
            // No cache strategy: the policy axis replaces it; block_size is the paged policy's.
            return match axis.role {
                Role::Model => true,
                Role::Kind => false,
                Role::Strategy => axis.key == "block_size",
                Role::Workload => self.axes().contains(&axis.key),
            };
        }
        match axis.role {
            Role::Model | Role::Kind | Role::Strategy => true,
            Role::Workload => self.axes().contains(&axis.key),
        }
    }

    /// The axis columns of this workload's CSV, in [`AXES`] order.
    pub(crate) fn axis_columns(self) -> Vec<&'static str> {
        AXES.iter().filter(|a| self.has_column(a)).map(|a| a.key).collect()
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

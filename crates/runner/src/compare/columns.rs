//! The class of each result column, decided in one place: how `compare` checks it.

/// How a column is compared. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    Identity,
    /// Time-based: `higher_is_better` for rates (tok/s), false for durations (ms, s).
    Timing {
        higher_is_better: bool,
    },
    Process,
    Tolerance,
    Exact,
}

/// The one place columns are classified.
pub fn classify(column: &str) -> ColumnClass {
    // Where and how a run ran, not what it measured: `key_bucket_used` is the backend's
    // default bucket unless swept (64 on wgpu, 0 on flex), and logits do not depend on it.
    const IDENTITY: &[&str] =
        &["experiment", "run_id", "git_commit", "backend", "device", "key_bucket_used"];
    const PROCESS: &[&str] =
        &["process_peak_bytes", "device_bytes_in_use", "device_bytes_reserved"];
    const TOLERANCE: &[&str] =
        &["mean_nll", "ppl", "ppl_delta_pct", "kl_mean", "kl_p99", "kl_max", "top1_agree_pct"];
    if IDENTITY.contains(&column) {
        ColumnClass::Identity
    } else if column.ends_with("per_s") || column.contains("per_s_") {
        ColumnClass::Timing { higher_is_better: true }
    } else if column.ends_with("_ms")
        || column.starts_with("ms_")
        || column.ends_with("_s")
        || column.contains("_s_p")
        || column.ends_with("_seconds")
        || column == "seconds"
    {
        ColumnClass::Timing { higher_is_better: false }
    } else if PROCESS.contains(&column) {
        ColumnClass::Process
    } else if TOLERANCE.contains(&column) {
        ColumnClass::Tolerance
    } else {
        ColumnClass::Exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use ColumnClass::*;
        assert_eq!(classify("decode_tok_per_s"), Timing { higher_is_better: true });
        assert_eq!(classify("model_tok_per_s"), Timing { higher_is_better: true });
        assert_eq!(classify("ms_per_token_p50"), Timing { higher_is_better: false });
        assert_eq!(classify("tokens_per_iteration"), Exact);
        assert_eq!(classify("max_internal_tokens_per_request"), Exact);
        assert_eq!(classify("model_wall_s"), Timing { higher_is_better: false });
        // Latency percentiles in seconds (measured when executed; a cost model's otherwise).
        assert_eq!(classify("ttft_s_p99"), Timing { higher_is_better: false });
        assert_eq!(classify("tpot_iter_p50"), Exact);
        assert_eq!(classify("prefill_ms"), Timing { higher_is_better: false });
        assert_eq!(classify("kv_allocated_bytes"), Exact);
        assert_eq!(classify("device_bytes_in_use"), Process);
        assert_eq!(classify("ppl"), Tolerance);
        assert_eq!(classify("kl_max"), Tolerance);
        assert_eq!(classify("process_peak_bytes"), Process);
        assert_eq!(classify("git_commit"), Identity);
        assert_eq!(classify("key_bucket_used"), Identity);
        assert_eq!(classify("first_step_ms"), Timing { higher_is_better: false });
        assert_eq!(classify("token_state_pct"), Exact);
    }
}

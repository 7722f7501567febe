//! fragmentation: the serving simulation of `kvlab-serving` — how much of a KV memory budget
//! holds token states when a request trace is served by continuous batching, with paged
//! (vLLM PagedAttention) versus reserved contiguous allocation (the vLLM paper's Orca
//! baselines).
//!
//! ```toml
//! [sweep]
//! policy = ["reserve-max", "reserve-pow2", "reserve-exact", "paged"]
//! block_size = [8, 16, 32, 64]      # multiplied in for policy = "paged" only (default 16)
//! budget_tokens = [2048, 4096]      # × the model's KV bytes per token (f32); or budget_bytes
//!
//! sharing = ["off", "on"]           # paged: requests of a prefix group share its blocks
//! preemption = ["recompute", "swap"] # how a preempted request comes back
//! swap_tokens = [16384]             # host pool for swapped blocks, in tokens of KV
//! prompt_tokens = [256, 1024]       # every synthetic prompt this long (optional)
//! evict = ["off", "window", "sink"]  # paged: each request keeps keep_tokens live tokens
//! keep_tokens = [256]
//! compaction = ["off", "on"]        # move survivors into stranded slots to free blocks
//!
//! [workload.fragmentation]
//! trace = "chat"                    # chat | long-output | system-prompt | samples | file:<path.csv>
//! requests = 200
//! seed = 0                          # default: the experiment's seed
//! max_seq_len = 2048
//! prefix_tokens = 256               # system-prompt: the shared prefix's length
//! samples = 4                       # samples: requests per prompt
//! sinks = 4                         # evict = "sink": first tokens kept for good
//!
//! [workload.fragmentation.cost]     # optional: a clock for latencies in seconds
//! decode_step_ms = 5.0
//! prefill_tok_per_s = 20000
//! swap_gb_per_s = 25
//! swap_block_us = 10
//! ```
//!
//! One row per run in `fragmentation.csv`: the trace parameters, the budget, then the columns
//! of `kvlab_serving::Summary` (percentages are means over busy iterations and sum to 100),
//! the rejections by reason, what sharing and preemption moved (prefilled, recomputed,
//! shared and copied-on-write tokens; swaps and bytes swapped), TTFT and TPOT percentiles
//! (iterations; seconds with a cost model or `execute`) and the largest per-request internal
//! waste. The per-iteration series (running, waiting, utilization) goes to
//! `fragmentation_series.csv`, at most [`SERIES_POINTS`] evenly spaced iterations per run, so
//! `runner report` can redraw concurrency over time from the CSVs alone.
//!
//! Without `execute`, nothing is timed: every column is deterministic for a given trace,
//! budget and policy, and throughput is `tokens_per_iteration` (tokens produced per batch
//! step, the mean batch size). With `execute = true` the run's model (the experiment's
//! `model` and `weights`) also runs every scheduled batch — one ragged decode step of all
//! running requests, then each admission's prefill — with its K/V at the slots the allocator
//! gave ([`kvlab_serving::execute`]), and `model_tok_per_s` is measured wall-clock
//! throughput; `model_tokens`, `model_decode_steps` and `model_prefills` are deterministic.
//!
//! Requests longer than `max_seq_len`, or larger than the whole budget under a policy, are
//! rejected and counted (`rejected_too_long`, `rejected_never_fits`); a budget too small to
//! hold anything (less than one block) is an error naming the run.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::prelude::Backend;
use kvlab_model::Model;
use kvlab_serving::config::Eviction;
use kvlab_serving::execute::ModelExecutor;
use kvlab_serving::{Percentiles, Policy, Preemption, SimConfig, simulate, simulate_with};
use kvlab_strategies::StrategyKind;

use serde::{Deserialize, Serialize};

use crate::csv_sink::CsvSink;
use crate::experiment::Experiment;
use crate::rows::Fixed;
use crate::sweep::Run;
use crate::workload::Workload;

/// One serving simulation: the trace, the budget, what the scheduler did, where the budget's
/// bytes went, and (with `execute`) what running the batches through the model measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// The trace served: a synthetic kind, or `file:<path>`.
    pub trace: String,
    pub trace_requests: usize,
    /// The synthetic trace's seed (none for a trace file).
    pub trace_seed: Option<u64>,
    pub max_seq_len: usize,
    pub bytes_per_token: u64,
    pub kv_budget_bytes: u64,
    pub kv_budget_tokens: u64,
    pub requests: usize,
    pub completed: usize,
    pub rejected: usize,
    pub rejected_too_long: usize,
    pub rejected_never_fits: usize,
    pub preemptions: u64,
    pub iterations: u64,
    pub mean_running: Fixed<4>,
    pub max_running: usize,
    pub token_state_pct: Fixed<4>,
    pub shared_pct: Fixed<4>,
    pub reserved_pct: Fixed<4>,
    pub internal_pct: Fixed<4>,
    pub external_pct: Fixed<4>,
    pub free_pct: Fixed<4>,
    pub stranded_pct: Fixed<4>,
    pub tokens_per_iteration: Fixed<4>,
    pub kv_bytes_per_request: Fixed<1>,
    pub kv_bytes_per_request_unshared: Fixed<1>,
    pub sharing_saved_pct: Fixed<4>,
    pub prefill_tokens: u64,
    pub recomputed_tokens: u64,
    pub prefix_hit_tokens: u64,
    pub cow_tokens: u64,
    pub evicted_tokens: u64,
    pub blocks_reclaimed: u64,
    pub compacted_tokens: u64,
    pub swap_outs: u64,
    pub swap_ins: u64,
    pub swap_bytes: u64,
    pub elapsed_s: Option<Fixed<4>>,
    pub ttft_iter_p50: Option<Fixed<2>>,
    pub ttft_iter_p90: Option<Fixed<2>>,
    pub ttft_iter_p99: Option<Fixed<2>>,
    pub tpot_iter_p50: Option<Fixed<4>>,
    pub tpot_iter_p90: Option<Fixed<4>>,
    pub tpot_iter_p99: Option<Fixed<4>>,
    pub ttft_s_p50: Option<Fixed<6>>,
    pub ttft_s_p90: Option<Fixed<6>>,
    pub ttft_s_p99: Option<Fixed<6>>,
    pub tpot_s_p50: Option<Fixed<6>>,
    pub tpot_s_p90: Option<Fixed<6>>,
    pub tpot_s_p99: Option<Fixed<6>>,
    pub max_internal_tokens_per_request: usize,
    pub model_tokens: Option<u64>,
    pub model_decode_steps: Option<u64>,
    pub model_prefills: Option<u64>,
    pub model_wall_s: Option<Fixed<3>>,
    pub model_swap_s: Option<Fixed<4>>,
    pub model_tok_per_s: Option<Fixed<1>>,
}
crate::metrics_row!(Metrics);

/// The side CSV of per-iteration samples.
pub(crate) const SERIES_FILE: &str = "fragmentation_series.csv";

/// The series CSV's columns: the run's identity, the serving axes that name a run in a legend
/// (every axis of the workload but the policy and budget, which come first), then one
/// iteration's sample.
pub(crate) fn series_columns() -> Vec<&'static str> {
    let identity = ["experiment", "run_id", "model", "policy", "block_size", "kv_budget_bytes"];
    let sample = [
        "iteration",
        "running",
        "waiting",
        "utilization",
        "stranded",
        "live_tokens",
        "blocks_held",
        "stranded_blocks",
    ];
    identity.into_iter().chain(series_axes()).chain(sample).collect()
}

/// The sweep axes a series row repeats.
fn series_axes() -> impl Iterator<Item = &'static str> {
    let first = ["policy", "budget_tokens", "budget_bytes"];
    Workload::Fragmentation.axes().iter().copied().filter(move |a| !first.contains(a))
}

/// Most series rows kept per run (evenly spaced iterations, the last always kept).
pub(crate) const SERIES_POINTS: usize = 400;

/// Block size of `paged` when `block_size` is not given (vLLM's default).
pub const DEFAULT_BLOCK_SIZE: usize = kvlab_serving::policy::DEFAULT_BLOCK_SIZE;

/// The run's policy (`paged` takes `block_size`, default [`DEFAULT_BLOCK_SIZE`]).
pub fn policy(run: &Run) -> Result<Policy> {
    let name = run.get("policy").map(|v| v.to_string()).unwrap_or_default();
    match name.as_str() {
        "paged" => {
            Ok(Policy::Paged { block_size: run.usize("block_size").unwrap_or(DEFAULT_BLOCK_SIZE) })
        }
        other => other.parse().map_err(|e| anyhow!("{e}")),
    }
}

/// The run's keep-policy on the paged pool (`evict` names it, `keep_tokens` is its budget,
/// `compaction`); the simulator checks that it decides from positions alone.
fn eviction(run: &Run, sinks: usize) -> Result<Option<Eviction>> {
    let policy = match run.get("evict").map(|v| v.to_string()).as_deref() {
        None | Some("off") => return Ok(None),
        Some(name) => name.parse::<StrategyKind>().map_err(|e| anyhow!("evict: {e}"))?,
    };
    let keep_tokens = run.usize("keep_tokens").context("evict needs sweep.keep_tokens")?;
    let compaction = run.get("compaction").is_some_and(|v| v.to_string() == "on");
    Ok(Some(Eviction { policy, sink_tokens: sinks, keep_tokens, compaction }))
}

/// Whether the experiment runs its schedules through the model (`execute = true`).
pub(crate) fn executes(e: &Experiment) -> bool {
    e.file.workload.fragmentation.as_ref().is_some_and(|p| p.execute)
}

/// Simulates one run, executing it on `model` when given; returns its metric columns and its
/// series rows (the part after the `experiment, run_id, model, policy, block_size,
/// kv_budget_bytes` columns).
pub fn measure<B: Backend>(
    e: &Experiment,
    run: &Run,
    model: Option<&Model<B>>,
) -> Result<(Metrics, Vec<[String; 8]>)> {
    let p = e.file.workload.fragmentation.as_ref().context("no [workload.fragmentation]")?;
    let text = |k: &str| run.get(k).map(|v| v.to_string());
    let trace = text("trace_kind");
    let requests = p
        .trace(e.seed(), trace.as_deref(), run.usize("prompt_tokens"))
        .map_err(anyhow::Error::msg)?;
    let config = crate::model::config_of(run.model()).map_err(anyhow::Error::msg)?;
    let bytes_per_token = config.kv_bytes_per_token(4) as u64;
    let budget = match (run.usize("budget_tokens"), run.usize("budget_bytes")) {
        (Some(t), _) => (t as u64).checked_mul(bytes_per_token).context("budget overflows u64")?,
        (None, Some(b)) => b as u64,
        (None, None) => anyhow::bail!("no budget_tokens or budget_bytes"),
    };
    let policy = policy(run)?;
    let preemption = match text("preemption") {
        Some(name) => name.parse::<Preemption>().map_err(|e| anyhow!("{e}"))?,
        None => Preemption::Recompute,
    };
    let swap_tokens = run.usize("swap_tokens").unwrap_or(0) as u64;
    let sim = SimConfig {
        sharing: text("sharing").as_deref() == Some("on"),
        preemption,
        swap_bytes: swap_tokens.checked_mul(bytes_per_token).context("swap_tokens overflows")?,
        cost: p.cost_model(text("cost").as_deref()).map_err(anyhow::Error::msg)?,
        eviction: eviction(run, p.sinks)?,
        ..SimConfig::new(policy, budget, bytes_per_token, p.max_seq_len)
    };
    let (r, executed) = match model {
        None => (simulate(&sim, &requests).map_err(|err| anyhow!("{err}"))?, None),
        Some(model) => {
            let slots = usize::try_from(budget / bytes_per_token).context("budget in tokens")?;
            let mut exec = ModelExecutor::new(model, slots, e.seed());
            let r = simulate_with(&sim, &requests, &mut exec).map_err(|err| anyhow!("{err}"))?;
            (r, Some(exec.measured))
        }
    };
    let s = &r.summary;
    let (x, l) = (&r.traffic, &r.latency);
    let executed = executed.as_ref();
    let pct = |p: Percentiles| [p.p50, p.p90, p.p99];
    let [ttft_iter_p50, ttft_iter_p90, ttft_iter_p99] = pct(l.ttft_iter).map(|v| v.map(Fixed));
    let [tpot_iter_p50, tpot_iter_p90, tpot_iter_p99] = pct(l.tpot_iter).map(|v| v.map(Fixed));
    let [ttft_s_p50, ttft_s_p90, ttft_s_p99] = pct(l.ttft_s).map(|v| v.map(Fixed));
    let [tpot_s_p50, tpot_s_p90, tpot_s_p99] = pct(l.tpot_s).map(|v| v.map(Fixed));
    let metrics = Metrics {
        trace: trace.clone().unwrap_or_else(|| p.trace.clone()),
        trace_requests: requests.len(),
        trace_seed: (trace.is_some() || !p.trace.starts_with("file:"))
            .then(|| p.seed.unwrap_or(e.seed())),
        max_seq_len: p.max_seq_len,
        bytes_per_token,
        kv_budget_bytes: budget,
        kv_budget_tokens: budget / bytes_per_token,
        requests: s.requests,
        completed: s.completed,
        rejected: s.rejected,
        rejected_too_long: r.rejections.too_long,
        rejected_never_fits: r.rejections.never_fits,
        preemptions: s.preemptions,
        iterations: s.iterations,
        mean_running: Fixed(s.mean_running),
        max_running: s.max_running,
        token_state_pct: Fixed(s.token_state_pct),
        shared_pct: Fixed(s.shared_pct),
        reserved_pct: Fixed(s.reserved_pct),
        internal_pct: Fixed(s.internal_pct),
        external_pct: Fixed(s.external_pct),
        free_pct: Fixed(s.free_pct),
        stranded_pct: Fixed(s.stranded_pct),
        tokens_per_iteration: Fixed(s.tokens_per_iteration),
        kv_bytes_per_request: Fixed(s.kv_bytes_per_request),
        kv_bytes_per_request_unshared: Fixed(s.kv_bytes_per_request_unshared),
        sharing_saved_pct: Fixed(s.sharing_saved_pct),
        prefill_tokens: x.prefill_tokens,
        recomputed_tokens: x.recomputed_tokens,
        prefix_hit_tokens: x.prefix_hit_tokens,
        cow_tokens: x.cow_tokens,
        evicted_tokens: x.evicted_tokens,
        blocks_reclaimed: x.blocks_reclaimed,
        compacted_tokens: x.compacted_tokens,
        swap_outs: x.swap_outs,
        swap_ins: x.swap_ins,
        swap_bytes: x.swap_bytes,
        elapsed_s: x.elapsed_s.map(Fixed),
        ttft_iter_p50,
        ttft_iter_p90,
        ttft_iter_p99,
        tpot_iter_p50,
        tpot_iter_p90,
        tpot_iter_p99,
        ttft_s_p50,
        ttft_s_p90,
        ttft_s_p99,
        tpot_s_p50,
        tpot_s_p90,
        tpot_s_p99,
        max_internal_tokens_per_request: r.max_internal_tokens_per_request,
        model_tokens: executed.map(|x| x.tokens_produced),
        model_decode_steps: executed.map(|x| x.decode_steps),
        model_prefills: executed.map(|x| x.prefills),
        model_wall_s: executed.map(|x| Fixed(x.wall.as_secs_f64())),
        model_swap_s: executed.map(|x| Fixed(x.swap_wall.as_secs_f64())),
        model_tok_per_s: executed.map(|x| Fixed(x.tokens_per_second())),
    };
    let n = r.series.len();
    let stride = n.div_ceil(SERIES_POINTS).max(1);
    let series = r
        .series
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || *i + 1 == n)
        .map(|(_, x)| {
            [
                x.iteration.to_string(),
                x.running.to_string(),
                x.waiting.to_string(),
                format!("{:.4}", x.utilization),
                format!("{:.4}", x.stranded),
                x.live_tokens.to_string(),
                x.blocks_held.to_string(),
                x.stranded_blocks.to_string(),
            ]
        })
        .collect();
    Ok((metrics, series))
}

/// Opens the series CSV (`resume` as for the run CSVs: existing rows need it).
pub(crate) fn open_series(
    dir: &Path,
    resume: bool,
    finished: &dyn Fn(&str) -> bool,
) -> Result<CsvSink> {
    let header: Vec<String> = series_columns().into_iter().map(String::from).collect();
    let path = dir.join(SERIES_FILE);
    if resume {
        crate::csv_sink::retain_runs(&path, &header, finished)?;
    }
    CsvSink::open(&path, &header, resume)
}

/// Appends one run's series rows.
pub(crate) fn append_series(
    dir: &Path,
    e: &Experiment,
    run: &Run,
    run_id: &str,
    kv_budget_bytes: u64,
    rows: &[[String; 8]],
) -> Result<()> {
    let mut sink = open_series(dir, true, &|_| true)?;
    let get = |k: &str| run.get(k).map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        let mut row = vec![
            e.name().to_string(),
            run_id.to_string(),
            run.model().to_string(),
            get("policy"),
            get("block_size"),
            kv_budget_bytes.to_string(),
        ];
        row.extend(series_axes().map(get));
        row.extend(r.iter().cloned());
        sink.append(&row)?;
    }
    Ok(())
}

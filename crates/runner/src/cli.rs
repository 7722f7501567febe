//! The command line (clap, derive).
//!
//! `runner EXPERIMENT.toml...` runs experiment files; `runner report|validate|list|...` are
//! subcommands. A positional list and subcommands share the first positional argument: one
//! naming a subcommand is the subcommand, anything else is a file (write `./report` for a file
//! named `report`). Global flags go before or after either (`runner --model M generate`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::BackendName;

const EXAMPLES: &str = "\
Examples:
  runner experiments/seed.toml                 the article's walkthrough on the toy model
  runner experiments/gqa.toml --out /tmp/res   run a sweep, write CSVs, charts and report.md
  runner experiments/gqa.toml --resume         finish an interrupted sweep
  runner experiments/*.toml --dry-run          print every run without running
  runner validate experiments/*.toml           check files (errors name file, key and value)
  runner report results/gqa                    redraw charts + report.md from the CSVs
  runner list                                  strategies, parameters, models, backends
  runner tokens experiments/quant.toml         the token ids its perplexity workload scores
  runner model-path gemma3-270m                the pinned GGUF's path (fetched on first use)
  runner compare results/baseline /tmp/res/smoke   regression check (exit 1 on a regression)
  runner headers experiments/gqa.toml         the columns of each CSV it writes (nothing run)
  runner headers --check results               committed CSVs against the writer's headers
  runner plan experiments/sink.toml --shards 4 which runs each of 4 shards holds
  runner experiments/sink.toml --shard 0/4 --out /tmp/s0   run shard 0 of that plan
  runner merge /tmp/s0 /tmp/s1 /tmp/s2 /tmp/s3 --out /tmp/res   join shards into /tmp/res/sink";

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "kvlab's benchmark runner: TOML experiments → sweeps → CSVs → charts and a report",
    after_help = EXAMPLES,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Experiment files to run, in order (e.g. experiments/gqa.toml).
    #[arg(value_name = "EXPERIMENT.toml")]
    pub experiments: Vec<PathBuf>,

    /// Run only shard I of N of each experiment's plan (0-based, as $SLURM_ARRAY_TASK_ID;
    /// see `runner plan`), e.g. `--shard 0/4 --out /shared/sweep/shard-0`. The shard's
    /// directory gets its CSVs and the plan (shard.json); `runner merge` joins the shards.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::ShardSpec::parse)]
    pub shard: Option<crate::shard::ShardSpec>,

    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Backend for every run, overriding the files' `backend` (e.g. --backend ndarray).
    /// cuda and wgpu need the cargo features of the same name (--features cuda).
    #[arg(long, global = true, value_enum, value_name = "BACKEND")]
    pub backend: Option<BackendName>,

    /// Results directory: each experiment writes <DIR>/<name>/{memory,throughput,...}.csv,
    /// charts/ and report.md (e.g. --out /tmp/results).
    #[arg(long, global = true, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,

    /// Skip runs whose run_id is already in the CSVs and append the rest (after a crash or
    /// Ctrl-C: `runner experiments/gqa.toml --resume`).
    #[arg(long, global = true)]
    pub resume: bool,

    /// Run only the runs whose parameters include KEY=VALUE (repeatable: all must hold), e.g.
    /// `--only model=seed-toy`; `compare --only` keeps the same rows.
    #[arg(long, global = true, value_name = "KEY=VALUE", value_parser = crate::sweep::parse_only)]
    pub only: Vec<(String, String)>,

    /// Print the expanded runs (workload, run_id) and exit without running.
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// No progress bars or status lines (results and errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Cache for downloaded assets (GGUF model, corpus), e.g. --cache-dir ~/.cache/kvlab
    /// (default: $KVLAB_CACHE_DIR, else $XDG_CACHE_HOME/kvlab, else ~/.cache/kvlab).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Refuse runs estimated to need more memory than this (bytes, or 512M, 8G, ...), e.g. on a
    /// shared machine. Default: MemAvailable on the CPU backends; no check on cuda/wgpu.
    #[arg(long, global = true, value_name = "SIZE", value_parser = crate::experiment::fit::parse_bytes)]
    pub max_memory: Option<u64>,

    /// A local .gguf model to use for pretrained weights instead of fetching the pinned one
    /// (e.g. --model ~/models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long, global = true, value_name = "PATH")]
    pub model: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Redraw charts and report.md from the CSVs in DIR (a results/<name> directory, or a
    /// directory of them), e.g. `runner report results/gqa`.
    Report {
        #[arg(value_name = "RESULTS_DIR")]
        dir: PathBuf,
    },
    /// Validate experiment files without running them, e.g. `runner validate experiments/*.toml`.
    Validate {
        #[arg(value_name = "EXPERIMENT.toml", required = true)]
        files: Vec<PathBuf>,
    },
    /// Compare two results directories (e.g. `runner compare results/baseline /tmp/res/smoke`):
    /// rows of the same CSV files are joined by run_id (minus backend); deterministic columns
    /// (bytes, token counts, fragmentation accounting) must match exactly, mean_nll/ppl within
    /// --ppl-tol, timings are ratios that fail only beyond --max-slowdown. Exits non-zero on
    /// a regression or a run missing on either side.
    Compare {
        #[arg(value_name = "BASELINE_DIR")]
        base: PathBuf,
        #[arg(value_name = "NEW_DIR")]
        new: PathBuf,
        /// Relative tolerance for mean_nll, ppl and ppl_delta_pct.
        #[arg(long, default_value_t = 1e-4)]
        ppl_tol: f64,
        /// Fail when a timing column (tok/s, ms, s) is more than X times slower.
        #[arg(long, value_name = "X")]
        max_slowdown: Option<f64>,
    },
    /// Print the header of every CSV an experiment writes, without running it (e.g.
    /// `runner headers experiments/gqa.toml`); with `--check DIR`, check every results
    /// directory under DIR against the writer (one line per CSV not on the current header;
    /// exits non-zero if one lags), e.g. `runner headers --check results`.
    Headers {
        #[arg(value_name = "EXPERIMENT.toml", required_unless_present = "check")]
        files: Vec<PathBuf>,
        /// A results directory (or a directory of them) to check.
        #[arg(long, value_name = "DIR", conflicts_with = "files")]
        check: Option<PathBuf>,
    },
    /// Split each experiment's runs into N shards balanced by estimated cost (tokens × model
    /// size) and print which runs each holds, e.g. `runner plan experiments/sink.toml --shards 4`.
    /// The same file and N give the same plan on any machine.
    Plan {
        #[arg(value_name = "EXPERIMENT.toml", required = true)]
        files: Vec<PathBuf>,
        /// Number of shards.
        #[arg(long, value_name = "N")]
        shards: usize,
        /// Print the plans as one JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Merge the results of `runner EXP --shard I/N --out DIR` runs into <--out>/<name>, e.g.
    /// `runner merge /shared/sweep/shard-* --out /shared/sweep/merged`. Every planned run must
    /// be present exactly once (a missing or duplicated run is an error naming it); CSV rows
    /// are written in the plan's order, then the report is drawn.
    Merge {
        #[arg(value_name = "SHARD_DIR", required = true)]
        dirs: Vec<PathBuf>,
    },
    /// List strategies (with summaries and parameters), model presets, workloads, sweep keys
    /// and the backends compiled into this binary.
    List,
    /// Greedy generation with the pretrained model, printing the continuation and tok/s, e.g.
    /// `runner generate --prompt "The capital of France is"`.
    Generate(GenerateArgs),
    /// Top-k next-token logits at every input position as JSON, e.g.
    /// `runner logits --text "Hello" --top-k 10` or `runner logits --ids 504,3458`.
    Logits(LogitsArgs),
    /// Print the path of a model's GGUF, fetching the pinned file into the cache if needed (a
    /// preset with pretrained weights, or a .gguf path), e.g. `runner model-path gemma3-270m`.
    ModelPath {
        /// A preset name or a .gguf path (named `name`: `--model` is the global override).
        #[arg(value_name = "MODEL")]
        name: String,
    },
    /// Print the token ids a perplexity experiment evaluates (comma-separated; `--json` for a
    /// JSON array), so a peer engine can score the very same tokens, e.g.
    /// `runner tokens experiments/quant.toml`. The experiment's first model tokenizes.
    Tokens {
        #[arg(value_name = "EXPERIMENT.toml")]
        file: PathBuf,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Measure memory read bandwidth (the decode roofline's denominator), e.g.
    /// `runner bandwidth --json`.
    Bandwidth {
        /// Bytes to read per pass.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Text to continue (tokenized with the model's tokenizer).
    #[arg(long, conflicts_with_all = ["ids", "ids_file"])]
    pub prompt: Option<String>,
    /// Token ids to continue, comma-separated (e.g. --ids 504,3575,282).
    #[arg(long, value_name = "IDS", conflicts_with = "ids_file")]
    pub ids: Option<String>,
    /// A file of token ids (comma or whitespace separated).
    #[arg(long, value_name = "PATH")]
    pub ids_file: Option<PathBuf>,
    /// Tokens to generate.
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    /// Rows decoded together (the prompt repeated).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repeats (decode tok/s is reported per repeat).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Untimed warm-up runs first.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Attention's implementation: `dense` (burn ops over a score tensor, the reference) or
    /// `fused` (one pass per block of query rows, on flex; other backends fall back to dense).
    #[arg(long, value_enum, default_value_t = AttentionImpl::Dense)]
    pub attention: AttentionImpl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttentionImpl {
    Dense,
    Fused,
}

#[derive(Debug, Clone, Args)]
pub struct LogitsArgs {
    /// Text to score (tokenized with the model's tokenizer).
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    pub text: Option<String>,
    /// Token ids to score, comma-separated.
    #[arg(long, value_name = "IDS")]
    pub ids: Option<String>,
    /// Logits kept per position.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
}

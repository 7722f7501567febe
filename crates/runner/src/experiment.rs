//! Experiment files: the TOML schema, loading, and validation of everything before any run.
//!
//! ```toml
//! # experiments/x.toml — the question this answers
//! [experiment]
//! name = "x"                 # results go to <out>/x/
//! question = "..."           # the question the report opens with
//! model = "seed-toy"         # preset or .gguf path (or sweep it: sweep.model)
//! backend = "flex"           # flex | ndarray | cuda | wgpu (--backend overrides)
//! seed = 0
//!
//! [strategy]                 # defaults for strategy parameters not swept
//! kind = "concat"
//! cache_tokens = 64
//!
//! [sweep]                    # arrays; see crate::sweep for the expansion order
//! strategy = ["concat", "window"]
//! batch = [1, 2]
//! context = [32, 64]
//!
//! [workload.memory]
//! [workload.throughput]
//! decode_tokens = 16
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::backend::BackendName;
use crate::sweep::{self, AXES, AxisValues, Role, Run, Value, ValueKind, Workload};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub experiment: ExperimentSection,
    #[serde(default)]
    pub strategy: toml::Table,
    #[serde(default)]
    pub sweep: toml::Table,
    #[serde(default)]
    pub workload: WorkloadSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Names the results directory: letters, digits, `-`, `_`.
    pub name: String,
    /// The question the experiment answers; `report.md` opens with it.
    pub question: String,
    /// A model preset or a `.gguf` path; `sweep.model` overrides.
    #[serde(default = "default_model")]
    pub model: String,
    /// `random` (seeded init; all presets) or `pretrained` (GGUF weights).
    #[serde(default)]
    pub weights: Weights,
    #[serde(default)]
    pub backend: Option<BackendName>,
    #[serde(default)]
    pub seed: u64,
}

fn default_model() -> String {
    "seed-toy".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    #[default]
    Random,
    Pretrained,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    pub walkthrough: Option<WalkthroughParams>,
    pub memory: Option<MemoryParams>,
    pub throughput: Option<ThroughputParams>,
    pub perplexity: Option<PerplexityParams>,
    pub fragmentation: Option<FragmentationParams>,
}

/// Serving simulation (kvlab-serving): a request trace served by continuous batching within a
/// KV budget (`sweep.budget_tokens` × the model's KV bytes per token, or `sweep.budget_bytes`),
/// under each `sweep.policy` (`reserve-max`, `reserve-pow2`, `reserve-exact`, `paged` with
/// `sweep.block_size`, default 16). See `crate::workloads::fragmentation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentationParams {
    /// `chat`, `long-output` (seeded synthetic traces) or `file:<path>` (a CSV
    /// `arrival_time,prompt_tokens,output_tokens`).
    #[serde(default = "default_trace")]
    pub trace: String,
    /// Requests generated (synthetic traces), or the first N of a file (default: all of it).
    #[serde(default)]
    pub requests: Option<usize>,
    /// The synthetic trace's seed (default: the experiment's seed).
    #[serde(default)]
    pub seed: Option<u64>,
    /// The longest `prompt + output` served; longer requests are rejected and counted.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// Also run every scheduled batch through the experiment's model and measure wall-clock
    /// tokens per second (seed-toy, or SmolLM2 on short traces: every token is computed).
    #[serde(default)]
    pub execute: bool,
}

fn default_trace() -> String {
    "chat".into()
}
fn default_max_seq_len() -> usize {
    2048
}

/// The article's walkthrough: generate from a short prompt with each swept strategy, print the
/// shapes per step, require every strategy to generate the same tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalkthroughParams {
    #[serde(default = "ten")]
    pub prompt_tokens: usize,
    #[serde(default = "four")]
    pub steps: usize,
}

fn ten() -> usize {
    10
}
fn four() -> usize {
    4
}

/// Fill the cache with `context` tokens (seeded random ids) and record its bytes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryParams {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputParams {
    /// Tokens decoded after the `context`-token prefill.
    #[serde(default = "sixteen")]
    pub decode_tokens: usize,
    /// Timed repetitions (the median is reported).
    #[serde(default = "three")]
    pub repeats: usize,
    /// Untimed repetitions first.
    #[serde(default = "one")]
    pub warmup: usize,
}

fn sixteen() -> usize {
    16
}
fn three() -> usize {
    3
}
fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PplMode {
    /// One token at a time through each swept strategy's cache (StreamingLLM's evaluation).
    #[default]
    Streaming,
    /// Full attention over independent chunks of `chunk` tokens (strategies do not apply).
    Chunked,
}

impl PplMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Streaming => "streaming",
            Self::Chunked => "chunked",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerplexityParams {
    /// `random` (seeded ids; for plumbing and determinism checks) or `shakespeare:<play>`.
    #[serde(default = "default_corpus")]
    pub corpus: String,
    /// Tokens evaluated.
    #[serde(default = "default_ppl_tokens")]
    pub tokens: usize,
    #[serde(default)]
    pub mode: PplMode,
    /// Chunk length of `chunked` mode.
    #[serde(default)]
    pub chunk: Option<usize>,
}

fn default_corpus() -> String {
    "random".into()
}
fn default_ppl_tokens() -> usize {
    128
}

/// Validation errors, one line each, every line naming the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid(pub Vec<String>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Invalid {}

/// A loaded and validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file's text (copied next to the results so `runner report` needs nothing else).
    pub source: String,
    pub file: ExperimentFile,
    pub backend: BackendName,
    pub axes: AxisValues,
}

impl Experiment {
    pub fn name(&self) -> &str {
        &self.file.experiment.name
    }

    pub fn seed(&self) -> u64 {
        self.file.experiment.seed
    }

    /// The workloads this experiment configures, in run order.
    pub fn workloads(&self) -> Vec<Workload> {
        let w = &self.file.workload;
        Workload::ALL
            .into_iter()
            .filter(|k| match k {
                Workload::Walkthrough => w.walkthrough.is_some(),
                Workload::Memory => w.memory.is_some(),
                Workload::Throughput => w.throughput.is_some(),
                Workload::Perplexity => w.perplexity.is_some(),
                Workload::Fragmentation => w.fragmentation.is_some(),
            })
            .collect()
    }

    /// Every run of one workload, in the pinned order.
    pub fn runs(&self, workload: Workload) -> Vec<Run> {
        let chunked = workload == Workload::Perplexity
            && self.file.workload.perplexity.as_ref().is_some_and(|p| p.mode == PplMode::Chunked);
        let runs = sweep::expand(&self.axes, workload);
        if !chunked {
            return runs;
        }
        // Chunked perplexity does not use a cache strategy: one run per model and head layout
        // (kv_heads and head_reduction transform the model itself, so they still apply).
        const MODEL_KEYS: [&str; 3] = ["model", "kv_heads", "head_reduction"];
        let mut seen = BTreeSet::new();
        runs.into_iter()
            .map(|mut r| {
                for (k, v) in &mut r.params {
                    if !MODEL_KEYS.contains(k) {
                        *v = None;
                    }
                }
                r
            })
            .filter(|r| seen.insert(r.label()))
            .collect()
    }

    /// Every run of every workload.
    pub fn all_runs(&self) -> Vec<Run> {
        self.workloads().into_iter().flat_map(|w| self.runs(w)).collect()
    }
}

/// Reads and validates one experiment file. `backend` (from `--backend`) overrides the file's.
pub fn load(path: &Path, backend: Option<BackendName>) -> Result<Experiment, Invalid> {
    let shown = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| Invalid(vec![format!("{shown}: cannot read: {e}")]))?;
    parse(&shown, &source, backend).map(|mut e| {
        e.path = path.to_path_buf();
        e
    })
}

/// Validates experiment text; `shown` names it in messages.
pub fn parse(
    shown: &str,
    source: &str,
    backend: Option<BackendName>,
) -> Result<Experiment, Invalid> {
    let file: ExperimentFile = toml::from_str(source)
        .map_err(|e| Invalid(vec![format!("{shown}: {}", e.to_string().trim_end())]))?;
    let mut errors = vec![];
    let mut err = |msg: String| errors.push(format!("{shown}: {msg}"));

    let ex = &file.experiment;
    if ex.name.is_empty()
        || !ex.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        err(format!(
            "experiment.name = {:?}: expected a non-empty name of letters, digits, '-' and '_' \
             (it names the results directory)",
            ex.name
        ));
    }
    if ex.question.trim().is_empty() {
        err("experiment.question: must state the question the experiment answers".into());
    }
    let backend = backend.or(ex.backend).unwrap_or(BackendName::Flex);
    if let Err(e) = backend.ensure_compiled_in() {
        err(e);
    }

    let mut values: Vec<(&'static str, Vec<Value>)> = vec![];
    // [strategy] defaults: single values.
    let mut defaults: Vec<(&'static str, Value)> = vec![];
    for (key, v) in &file.strategy {
        let axis_key = if key == "kind" { "strategy" } else { key.as_str() };
        match sweep::axis_named(axis_key).filter(|a| matches!(a.role, Role::Kind | Role::Strategy))
        {
            None => err(format!(
                "strategy.{key}: unknown key (allowed: kind, {})",
                AXES.iter()
                    .filter(|a| a.role == Role::Strategy)
                    .map(|a| a.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(axis) => match axis.kind.parse(v) {
                Ok(value) => defaults.push((axis.key, value)),
                Err(why) => err(format!("strategy.{key} = {v}: {why}")),
            },
        }
    }
    // [sweep] arrays.
    let mut swept: Vec<(&'static str, Vec<Value>)> = vec![];
    for (key, v) in &file.sweep {
        let Some(axis) = sweep::axis_named(key) else {
            err(format!(
                "sweep.{key}: unknown key (allowed: {})",
                AXES.iter().map(|a| a.key).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        let items: Vec<toml::Value> = match v {
            toml::Value::Array(a) => a.clone(),
            scalar => vec![scalar.clone()],
        };
        if items.is_empty() {
            err(format!("sweep.{key} = []: expected at least one value"));
            continue;
        }
        let mut parsed: Vec<Value> = vec![];
        for (i, item) in items.iter().enumerate() {
            match axis.kind.parse(item) {
                Ok(value) => {
                    if let Some(j) = parsed.iter().position(|p| *p == value) {
                        err(format!("sweep.{key}[{i}] = {item}: duplicate of sweep.{key}[{j}]"));
                    }
                    parsed.push(value);
                }
                Err(why) => err(format!("sweep.{key}[{i}] = {item}: {why}")),
            }
        }
        swept.push((axis.key, parsed));
    }
    for axis in AXES {
        let from_sweep = swept.iter().find(|(k, _)| *k == axis.key).map(|(_, v)| v.clone());
        let from_default =
            defaults.iter().find(|(k, _)| *k == axis.key).map(|(_, v)| vec![v.clone()]);
        let fallback = match axis.key {
            "model" => Some(vec![Value::Str(ex.model.clone())]),
            "strategy" => Some(vec![Value::Str("concat".into())]),
            "batch" => Some(vec![Value::Int(1)]),
            "policy" => Some(
                ["reserve-max", "reserve-pow2", "reserve-exact", "paged"]
                    .map(|p| Value::Str(p.into()))
                    .to_vec(),
            ),
            _ => None,
        };
        if let Some(v) = from_sweep.or(from_default).or(fallback) {
            values.push((axis.key, v));
        }
    }
    let axes = AxisValues { values };
    if let Some(Value::Str(m)) = axes.get("model").and_then(|v| v.first())
        && file.sweep.get("model").is_none()
        && ValueKind::Model.parse(&m.clone().into()).is_err()
    {
        err(format!("experiment.model = {m:?}: expected {}", ValueKind::Model.allowed()));
    }

    let mut experiment = Experiment {
        path: PathBuf::from(shown),
        source: source.to_string(),
        file: file.clone(),
        backend,
        axes,
    };
    let workloads = experiment.workloads();
    if workloads.is_empty() {
        err("no workload: add at least one of [workload.walkthrough], [workload.memory], \
             [workload.throughput], [workload.perplexity], [workload.fragmentation]"
            .into());
    }

    // Workload axes must be read by some workload; memory/throughput need a context.
    for axis in AXES.iter().filter(|a| a.role == Role::Workload) {
        let readers: Vec<&str> =
            workloads.iter().filter(|w| w.axes().contains(&axis.key)).map(|w| w.name()).collect();
        if file.sweep.contains_key(axis.key) && readers.is_empty() {
            err(format!(
                "sweep.{}: no workload of this experiment reads it (read by: {})",
                axis.key,
                Workload::ALL
                    .iter()
                    .filter(|w| w.axes().contains(&axis.key))
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if axis.key == "context" && !readers.is_empty() && experiment.axes.get("context").is_none()
        {
            err(format!("sweep.context: required by workload.{}", readers[0]));
        }
    }
    // Workload parameters.
    let w = &file.workload;
    if let Some(p) = &w.walkthrough {
        if p.prompt_tokens == 0 {
            err("workload.walkthrough.prompt_tokens = 0: expected an integer ≥ 1".into());
        }
        if p.steps == 0 {
            err("workload.walkthrough.steps = 0: expected an integer ≥ 1".into());
        }
    }
    if let Some(p) = &w.throughput {
        for (key, v) in [("decode_tokens", p.decode_tokens), ("repeats", p.repeats)] {
            if v == 0 {
                err(format!("workload.throughput.{key} = 0: expected an integer ≥ 1"));
            }
        }
    }
    if let Some(p) = &w.perplexity {
        if p.tokens < 2 {
            err(format!("workload.perplexity.tokens = {}: expected an integer ≥ 2", p.tokens));
        }
        if let Err(why) = crate::workloads::perplexity::check_corpus(&p.corpus) {
            err(format!("workload.perplexity.corpus = {:?}: {why}", p.corpus));
        }
        match (p.mode, p.chunk) {
            (PplMode::Chunked, None) => {
                err("workload.perplexity.chunk: required by mode = \"chunked\"".into())
            }
            (PplMode::Chunked, Some(c)) if c < 2 => {
                err(format!("workload.perplexity.chunk = {c}: expected an integer ≥ 2"))
            }
            (PplMode::Streaming, Some(_)) => err(
                "workload.perplexity.chunk: only read by mode = \"chunked\" (mode is streaming)"
                    .into(),
            ),
            _ => {}
        }
    }
    if let Some(p) = &w.fragmentation {
        let (tokens, bytes) =
            (experiment.axes.get("budget_tokens"), experiment.axes.get("budget_bytes"));
        if tokens.is_some() == bytes.is_some() {
            err(
                "workload.fragmentation: give the KV budget as exactly one of sweep.budget_tokens \
                 (tokens of the model's KV) or sweep.budget_bytes"
                    .into(),
            );
        }
        if p.max_seq_len == 0 {
            err("workload.fragmentation.max_seq_len = 0: expected an integer ≥ 1".into());
        }
        if p.requests == Some(0) {
            err("workload.fragmentation.requests = 0: expected an integer ≥ 1".into());
        }
        if let Err(why) = crate::workloads::fragmentation::trace(p, ex.seed) {
            err(format!("workload.fragmentation.trace = {:?}: {why}", p.trace));
        }
    }
    // Models.
    for m in experiment.axes.get("model").unwrap_or_default() {
        if let Err(why) = crate::model::check(&m.to_string(), ex.weights) {
            err(format!("model {m:?}: {why}"));
        }
    }
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }
    // Every run: a valid, buildable strategy that fits the model's positions.
    let mut errors = vec![];
    for workload in &workloads {
        for (i, run) in experiment.runs(*workload).iter().enumerate() {
            if let Err(why) = check_run(&experiment, run) {
                errors.push(format!("{shown}: run {workload}#{i} ({}): {why}", run.label()));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }
    experiment.path = PathBuf::from(shown);
    Ok(experiment)
}

fn check_run(experiment: &Experiment, run: &Run) -> Result<(), String> {
    if run.get("strategy").is_none() {
        return Ok(()); // chunked perplexity: no cache strategy
    }
    let spec = run.spec()?;
    spec.validate().map_err(|e| e.to_string())?;
    let config = crate::model::config_of(run.model())?;
    if let Some(k) = spec.kv_heads {
        kvlab_strategies::heads::check_kv_heads(config.n_heads, config.n_kv_heads, k)
            .map_err(|e| e.to_string())?;
    }
    let longest = match run.workload {
        Workload::Walkthrough => {
            experiment.file.workload.walkthrough.as_ref().map_or(0, |p| p.prompt_tokens + p.steps)
        }
        Workload::Memory => run.usize("context").unwrap_or(0),
        Workload::Throughput => {
            run.usize("context").unwrap_or(0)
                + experiment.file.workload.throughput.as_ref().map_or(0, |p| p.decode_tokens)
        }
        Workload::Perplexity => {
            experiment.file.workload.perplexity.as_ref().map_or(0, |p| p.tokens)
        }
        Workload::Fragmentation => 0, // no cache strategy; the simulation checks its own
    };
    crate::model::check_buildable(&spec, longest)?;
    // Strategies that keep positions in-cache never exceed their budget; the others need the
    // rotary table to cover the whole sequence.
    let bounded = spec.kind.parameters().contains(&"cache_tokens");
    if !bounded && longest > config.max_positions {
        return Err(format!(
            "{longest} tokens exceed the model's max_positions = {}",
            config.max_positions
        ));
    }
    Ok(())
}

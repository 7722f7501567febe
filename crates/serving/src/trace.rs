//! Request traces: seeded synthetic generators and a CSV loader.
//!
//! Time is measured in scheduler *iterations* (one decode step of the whole batch), because the
//! simulation asks only how memory is shared, not how long a step takes. A trace is a list of
//! [`Request`]s; the simulator serves them in arrival order, ties in list order.
//!
//! Requests may share a prompt prefix ([`Prefix`]): the same system prompt, or the n samples
//! of one prompt. Requests of one prefix group hold the same first `tokens` prompt tokens, so
//! a paged server can point them at the same KV blocks.

use std::{fmt, io::Read, path::Path, str::FromStr};

use kvlab_model::printable::printable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One generation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Position in the trace, from 0.
    pub id: u64,
    /// Iteration at which the request arrives and may first be admitted.
    pub arrival: u64,
    /// Prompt length in tokens (at least 1).
    pub prompt_tokens: usize,
    /// Tokens to generate, including the one produced by prefill (at least 1).
    pub output_tokens: usize,
    /// The prompt prefix it shares with other requests, if any.
    pub prefix: Option<Prefix>,
}

/// A prompt prefix shared by every request of `group`: their first `tokens` prompt tokens are
/// the same tokens (1 ≤ `tokens` ≤ the request's prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefix {
    pub group: u64,
    pub tokens: usize,
}

impl Request {
    /// A request that shares nothing.
    pub fn new(id: u64, arrival: u64, prompt_tokens: usize, output_tokens: usize) -> Self {
        Self { id, arrival, prompt_tokens, output_tokens, prefix: None }
    }

    /// The same request, sharing its first `tokens` prompt tokens with `group`.
    pub(crate) fn with_prefix(self, group: u64, tokens: usize) -> Self {
        Self { prefix: Some(Prefix { group, tokens }), ..self }
    }

    /// Tokens whose KV the request holds when it finishes: prompt + output.
    pub(crate) fn total_tokens(&self) -> usize {
        self.prompt_tokens.saturating_add(self.output_tokens)
    }
}

/// Why a trace could not be read.
#[derive(Debug, Error)]
pub enum TraceError {
    #[error("cannot read trace {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("trace CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(
        "trace header must be `arrival_time,prompt_tokens,output_tokens` (then optionally `,prefix_group,prefix_tokens`), found `{found}`"
    )]
    Header { found: String },
    #[error("trace line {line}: expected {expected} fields, found {found}")]
    FieldCount { line: u64, expected: usize, found: usize },
    #[error("trace line {line}, column {column}: invalid value `{value}` ({reason})")]
    Value { line: u64, column: &'static str, value: String, reason: &'static str },
    #[error(
        "unknown trace kind `{0}` (expected `chat`, `long-output`, `system-prompt` or `samples`)"
    )]
    UnknownKind(String),
}

/// The columns a CSV trace must have, in order.
pub const CSV_COLUMNS: [&str; 3] = ["arrival_time", "prompt_tokens", "output_tokens"];

/// The optional columns after them: a request's prefix group and how many prompt tokens it
/// shares (both empty for a request that shares nothing).
pub const CSV_PREFIX_COLUMNS: [&str; 2] = ["prefix_group", "prefix_tokens"];

/// Reads a CSV trace from a file. See [`read_csv`].
pub fn load_csv(path: impl AsRef<Path>) -> Result<Vec<Request>, TraceError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path)
        .map_err(|source| TraceError::Io { path: path.display().to_string(), source })?;
    read_csv(file)
}

/// Reads a CSV trace: a header `arrival_time,prompt_tokens,output_tokens` (optionally followed
/// by `prefix_group,prefix_tokens`), then one request per row. `arrival_time` is in iterations
/// (a non-negative number; fractions are floored), token counts are integers >= 1; a prefix is
/// both columns or neither, with `prefix_tokens` at most the prompt. A bad row is reported
/// with its 1-based line number and value.
pub fn read_csv(reader: impl Read) -> Result<Vec<Request>, TraceError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(reader);
    let header = rdr.headers()?.clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    let with_prefix =
        names.iter().copied().eq(CSV_COLUMNS.iter().chain(&CSV_PREFIX_COLUMNS).copied());
    if !with_prefix && names.iter().copied().ne(CSV_COLUMNS) {
        let found = printable(&header.iter().collect::<Vec<_>>().join(","));
        return Err(TraceError::Header { found });
    }
    let expected = names.len();
    let mut out = Vec::new();
    for (id, record) in (0u64..).zip(rdr.records()) {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != expected {
            return Err(TraceError::FieldCount { line, expected, found: record.len() });
        }
        let field = |i: usize| record.get(i).unwrap_or_default().trim();
        let bad = |column, value: &str, reason| TraceError::Value {
            line,
            column,
            value: printable(value),
            reason,
        };
        let arrival_raw = field(0);
        let arrival = match arrival_raw.parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => t.floor() as u64,
            Ok(_) => return Err(bad("arrival_time", arrival_raw, "must be finite and >= 0")),
            Err(_) => return Err(bad("arrival_time", arrival_raw, "not a number")),
        };
        let count = |i: usize, column: &'static str| match field(i).parse::<usize>() {
            Ok(0) => Err(bad(column, field(i), "must be at least 1")),
            Ok(n) => Ok(n),
            Err(_) => Err(bad(column, field(i), "not a non-negative integer")),
        };
        let prompt_tokens = count(1, "prompt_tokens")?;
        let output_tokens = count(2, "output_tokens")?;
        let mut req = Request::new(id, arrival, prompt_tokens, output_tokens);
        if with_prefix && !(field(3).is_empty() && field(4).is_empty()) {
            let group = field(3)
                .parse::<u64>()
                .map_err(|_| bad("prefix_group", field(3), "not a non-negative integer"))?;
            let tokens = count(4, "prefix_tokens")?;
            if tokens > prompt_tokens {
                return Err(bad("prefix_tokens", field(4), "longer than the prompt"));
            }
            req = req.with_prefix(group, tokens);
        }
        out.push(req);
    }
    Ok(out)
}

/// A distribution of token counts, always clamped to `[min, max]` (and to at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LengthDist {
    /// Every integer in `[min, max]` equally likely.
    Uniform { min: usize, max: usize },
    /// `exp(N(ln median, sigma^2))`, rounded: right-skewed like real prompt/answer lengths
    /// (many short, a long tail), as in ShareGPT-style chat logs.
    LogNormal { median: f64, sigma: f64, min: usize, max: usize },
}

impl LengthDist {
    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let (value, min, max) = match *self {
            LengthDist::Uniform { min, max } => {
                let (lo, hi) = (min.min(max), min.max(max));
                (rng.random_range(lo..=hi) as f64, lo, hi)
            }
            LengthDist::LogNormal { median, sigma, min, max } => {
                let z = standard_normal(rng);
                ((median.max(f64::MIN_POSITIVE).ln() + sigma * z).exp().round(), min, max)
            }
        };
        let (lo, hi) = (min.max(1), max.max(min).max(1));
        (value.clamp(lo as f64, hi as f64) as usize).clamp(lo, hi)
    }
}

/// Box–Muller: one standard normal draw from two uniforms.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// What the requests of a synthetic trace share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sharing {
    /// Nothing: every prompt is its own.
    None,
    /// Every prompt starts with the same `tokens`-token system prompt (prefix group 0),
    /// followed by its own drawn part.
    SystemPrompt { tokens: usize },
    /// Each drawn prompt is sent `n` times at once (the n samples of one prompt: a prefix
    /// group per prompt, sharing the whole prompt); each sample draws its own output length.
    Samples { n: usize },
}

/// A seeded synthetic trace: Poisson arrivals, independent prompt and output lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceGen {
    pub n_requests: usize,
    /// Mean arrivals per iteration (Poisson process: exponential gaps; a `Samples` group
    /// arrives together). `<= 0` or non-finite means every request arrives at iteration 0 (an
    /// offline batch).
    pub arrival_rate: f64,
    pub prompt: LengthDist,
    pub output: LengthDist,
    pub sharing: Sharing,
    pub seed: u64,
}

impl TraceGen {
    /// Chat-like traffic, loosely shaped after ShareGPT (the vLLM paper's main trace, whose
    /// means are ~160 prompt and ~340 output tokens): log-normal prompts (median 96, sigma
    /// 0.9, 4..=1024; mean ~142) and outputs (median 160, sigma 0.9, 1..=1024; mean ~232), one
    /// arrival per iteration on average — far more than a small budget can serve, so memory,
    /// not arrivals, limits the batch.
    pub fn chat(n_requests: usize, seed: u64) -> Self {
        Self {
            n_requests,
            arrival_rate: 1.0,
            prompt: LengthDist::LogNormal { median: 96.0, sigma: 0.9, min: 4, max: 1024 },
            output: LengthDist::LogNormal { median: 160.0, sigma: 0.9, min: 1, max: 1024 },
            sharing: Sharing::None,
            seed,
        }
    }

    /// [`TraceGen::chat`] behind one shared `tokens`-token system prompt: each prompt is the
    /// system prompt plus a chat-length user part.
    pub fn system_prompt(n_requests: usize, seed: u64, tokens: usize) -> Self {
        Self { sharing: Sharing::SystemPrompt { tokens }, ..Self::chat(n_requests, seed) }
    }

    /// [`TraceGen::chat`] with each prompt sampled `n` times (parallel sampling): the
    /// `n_requests` requests are `n_requests / n` prompts (rounded up; the last group may be
    /// cut short) of `n` requests each.
    pub fn samples(n_requests: usize, seed: u64, n: usize) -> Self {
        Self { sharing: Sharing::Samples { n }, ..Self::chat(n_requests, seed) }
    }

    /// Short prompts, long answers (summaries, code, reasoning): prompts uniform in 16..=128,
    /// outputs uniform in 512..=1536, one arrival per 50 iterations on average. Most memory is
    /// grown during decode, which is where reservation hurts and paging helps most.
    pub(crate) fn long_output(n_requests: usize, seed: u64) -> Self {
        Self {
            n_requests,
            arrival_rate: 0.02,
            prompt: LengthDist::Uniform { min: 16, max: 128 },
            output: LengthDist::Uniform { min: 512, max: 1536 },
            sharing: Sharing::None,
            seed,
        }
    }

    /// The requests, sorted by arrival; the same spec always gives the same trace.
    pub fn generate(&self) -> Vec<Request> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let poisson = self.arrival_rate.is_finite() && self.arrival_rate > 0.0;
        let group_size = match self.sharing {
            Sharing::Samples { n } => n.max(1),
            _ => 1,
        };
        let mut clock = 0.0f64;
        let mut out = Vec::with_capacity(self.n_requests);
        for group in 0u64.. {
            if out.len() >= self.n_requests {
                break;
            }
            if poisson {
                clock += -(1.0 - rng.random::<f64>()).ln() / self.arrival_rate;
            }
            let drawn = self.prompt.sample(&mut rng);
            for _ in 0..group_size.min(self.n_requests - out.len()) {
                let output_tokens = self.output.sample(&mut rng);
                let id = out.len() as u64;
                let req = match self.sharing {
                    Sharing::None => Request::new(id, clock as u64, drawn, output_tokens),
                    Sharing::SystemPrompt { tokens } => {
                        Request::new(id, clock as u64, tokens + drawn, output_tokens)
                            .with_prefix(0, tokens)
                    }
                    Sharing::Samples { .. } => Request::new(id, clock as u64, drawn, output_tokens)
                        .with_prefix(group, drawn),
                };
                out.push(req);
            }
        }
        out
    }
}

/// The named synthetic workloads, for command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceKind {
    Chat,
    LongOutput,
    /// Chat behind a shared system prompt ([`TraceGen::system_prompt`]).
    SystemPrompt,
    /// Chat prompts sampled n times each ([`TraceGen::samples`]).
    Samples,
}

/// System prompt length of `system-prompt` traces when none is named.
pub const DEFAULT_SYSTEM_PROMPT_TOKENS: usize = 256;

/// Samples per prompt of `samples` traces when none is named (the sharing issue's n = 4).
pub const DEFAULT_SAMPLES: usize = 4;

impl TraceKind {
    /// This workload's default generator ([`DEFAULT_SYSTEM_PROMPT_TOKENS`],
    /// [`DEFAULT_SAMPLES`]).
    pub fn generator(self, n_requests: usize, seed: u64) -> TraceGen {
        match self {
            TraceKind::Chat => TraceGen::chat(n_requests, seed),
            TraceKind::LongOutput => TraceGen::long_output(n_requests, seed),
            TraceKind::SystemPrompt => {
                TraceGen::system_prompt(n_requests, seed, DEFAULT_SYSTEM_PROMPT_TOKENS)
            }
            TraceKind::Samples => TraceGen::samples(n_requests, seed, DEFAULT_SAMPLES),
        }
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceKind::Chat => "chat",
            TraceKind::LongOutput => "long-output",
            TraceKind::SystemPrompt => "system-prompt",
            TraceKind::Samples => "samples",
        })
    }
}

impl FromStr for TraceKind {
    type Err = TraceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chat" => Ok(TraceKind::Chat),
            "long-output" => Ok(TraceKind::LongOutput),
            "system-prompt" => Ok(TraceKind::SystemPrompt),
            "samples" => Ok(TraceKind::Samples),
            other => Err(TraceError::UnknownKind(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_in_range() {
        for kind in
            [TraceKind::Chat, TraceKind::LongOutput, TraceKind::SystemPrompt, TraceKind::Samples]
        {
            let a = kind.generator(500, 3).generate();
            assert_eq!(a.len(), 500);
            assert_eq!(a, kind.generator(500, 3).generate());
            assert_ne!(a, kind.generator(500, 4).generate());
            assert!(a.windows(2).all(|w| w[0].arrival <= w[1].arrival));
            assert!(a.iter().all(|r| r.prompt_tokens >= 1 && r.output_tokens >= 1));
            assert!(a.iter().all(|r| r.total_tokens() <= 2048 + DEFAULT_SYSTEM_PROMPT_TOKENS));
            assert!(a.iter().all(|r| r.prefix.is_none_or(|p| p.tokens <= r.prompt_tokens)));
            assert_eq!(kind.to_string().parse::<TraceKind>().unwrap(), kind);
        }
    }

    #[test]
    fn chat_lengths_look_lognormal() {
        let reqs = TraceGen::chat(20_000, 1).generate();
        let mut prompts: Vec<usize> = reqs.iter().map(|r| r.prompt_tokens).collect();
        prompts.sort_unstable();
        let median = prompts[prompts.len() / 2] as f64;
        assert!((80.0..115.0).contains(&median), "median {median}");
        let mean = prompts.iter().sum::<usize>() as f64 / prompts.len() as f64;
        assert!(mean > median, "right-skewed: mean {mean} > median {median}");
    }

    #[test]
    fn shared_prefixes_group_as_described() {
        let sys = TraceGen::system_prompt(50, 2, 300).generate();
        assert!(
            sys.iter().all(
                |r| r.prefix == Some(Prefix { group: 0, tokens: 300 }) && r.prompt_tokens > 300
            )
        );
        let samples = TraceGen::samples(10, 2, 4).generate();
        let groups: Vec<u64> = samples.iter().map(|r| r.prefix.unwrap().group).collect();
        assert_eq!(groups, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2], "the last group is cut short");
        for g in samples.chunk_by(|a, b| a.prefix == b.prefix) {
            assert!(g.iter().all(|r| r.arrival == g[0].arrival
                && r.prompt_tokens == g[0].prompt_tokens
                && r.prefix.unwrap().tokens == r.prompt_tokens));
        }
        assert!(samples[..4].iter().any(|r| r.output_tokens != samples[0].output_tokens));
    }

    #[test]
    fn offline_batch_arrives_at_once() {
        let spec = TraceGen { arrival_rate: 0.0, ..TraceGen::chat(10, 0) };
        assert!(spec.generate().iter().all(|r| r.arrival == 0));
    }

    #[test]
    fn reads_a_csv_trace() {
        let text = "arrival_time,prompt_tokens,output_tokens\n0,10,5\n2.7, 3 ,1\n";
        let reqs = read_csv(text.as_bytes()).unwrap();
        assert_eq!(reqs[1], Request::new(1, 2, 3, 1));
        let text = "arrival_time,prompt_tokens,output_tokens,prefix_group,prefix_tokens\n\
                    0,10,5,7,4\n1,3,1,,\n";
        let reqs = read_csv(text.as_bytes()).unwrap();
        assert_eq!(reqs[0], Request::new(0, 0, 10, 5).with_prefix(7, 4));
        assert_eq!(reqs[1].prefix, None);
    }

    #[test]
    fn malformed_rows_name_line_and_value() {
        let text = "arrival_time,prompt_tokens,output_tokens\n0,10,5\n1,ten,5\n";
        let err = read_csv(text.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, TraceError::Value { line: 3, value, .. } if value == "ten"),
            "{err}"
        );
        assert!(err.to_string().contains("line 3") && err.to_string().contains("`ten`"));

        let text = "arrival_time,prompt_tokens,output_tokens\n-1,10,5\n";
        assert!(matches!(read_csv(text.as_bytes()), Err(TraceError::Value { line: 2, .. })));
        let text = "arrival_time,prompt_tokens,output_tokens\n0,10,0\n";
        assert!(matches!(read_csv(text.as_bytes()), Err(TraceError::Value { line: 2, .. })));
        let text = "arrival_time,prompt_tokens,output_tokens\n0,10\n";
        assert!(matches!(
            read_csv(text.as_bytes()),
            Err(TraceError::FieldCount { line: 2, expected: 3, found: 2 })
        ));
        let text = "arrival_time,prompt_tokens,output_tokens,prefix_group,prefix_tokens\n\
                    0,10,5,1,11\n";
        let err = read_csv(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("prefix_tokens") && err.to_string().contains("`11`"));
        let text = "arrival_time,prompt_tokens,output_tokens,prefix_group,prefix_tokens\n\
                    0,10,5,x,2\n";
        assert!(read_csv(text.as_bytes()).unwrap_err().to_string().contains("prefix_group"));
        let text = "time,prompt,output\n0,1,1\n";
        assert!(matches!(read_csv(text.as_bytes()), Err(TraceError::Header { .. })));
    }

    #[test]
    fn quoted_newlines_in_a_value_or_header_stay_on_one_line() {
        // Fuzz inputs: a quoted field holding a newline, as a value and as the whole header.
        let text = "arrival_time,prompt_tokens,output_tokens\n3,\",\n2\",1\n";
        let err = read_csv(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("`,\\n2`") && !err.contains('\n'), "{err}");
        let err = read_csv("\"\r\n\"\n".as_bytes()).unwrap_err().to_string();
        assert!(err.contains("found `\\r\\n`") && !err.contains(['\n', '\r']), "{err}");
    }

    #[test]
    fn missing_file_is_an_io_error() {
        assert!(matches!(load_csv("/nonexistent/trace.csv"), Err(TraceError::Io { .. })));
    }
}

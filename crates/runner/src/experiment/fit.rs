//! Whether each run fits in memory, decided before anything is allocated: a run whose cache
//! cannot fit would otherwise start and be killed by the kernel's OOM killer, leaving a CSV
//! with a header only.
//!
//! The estimate is of the peak: weights (the host copy and the backend's copy), the KV cache
//! the strategy allocates for the run's longest sequence, and the largest transient of one
//! forward pass (attention's scores, the MLP's activations, the logits). Attention's scores
//! follow the kernel the run uses ([`fused_kernel`]): the dense path makes the whole
//! `[batch, heads, queries, keys]` matrix (and its softmax); the fused kernel only a block of
//! scores per worker. It is compared
//! with `MemAvailable` on the CPU backends, or with `--max-memory` where given (on cuda and
//! wgpu only `--max-memory` applies: the device's limit is not known before it is opened).

use std::fmt;

use kvlab_model::fused_attention;
use kvlab_strategies::{StrategyKind, StrategySpec};

use super::validate::longest_sequence;
use super::{Experiment, Invalid, PplMode};
use crate::backend::BackendName;
use crate::sweep::{Run, Workload};

/// The memory a run may use, and where that number came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub source: &'static str,
}

impl MemoryLimit {
    /// `--max-memory` if given, else `MemAvailable` on a CPU backend; `None`: no check.
    pub fn new(max_memory: Option<u64>, cpu_backend: bool) -> Option<Self> {
        match max_memory {
            Some(bytes) => Some(Self { bytes, source: "--max-memory" }),
            None if cpu_backend => {
                mem_available().map(|bytes| Self { bytes, source: "MemAvailable in /proc/meminfo" })
            }
            None => None,
        }
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses `--max-memory`: bytes, or with a K, M, G or T suffix (powers of 1024; `GiB` too).
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(format!("'{text}' is not a size (e.g. 512M, 8G, 1073741824)")),
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * scale as f64) as u64),
        _ => Err(format!("'{text}' is not a size (e.g. 512M, 8G, 1073741824)")),
    }
}

/// A run's estimated peak memory, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Need {
    pub weights: u128,
    pub kv: u128,
    pub activations: u128,
}

impl Need {
    pub fn total(&self) -> u128 {
        self.weights + self.kv + self.activations
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes ({}: KV {}, activations {}, weights {})",
            self.total(),
            human(self.total()),
            human(self.kv),
            human(self.activations),
            human(self.weights)
        )
    }
}

/// Bytes in the largest binary unit that keeps the number ≥ 1.
fn human(bytes: u128) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", units[unit]) }
}

/// The estimate for one run, or `None` where it cannot be made (no model config).
pub(crate) fn estimate(e: &Experiment, run: &Run) -> Option<Need> {
    let config = crate::model::config_of(run.model()).ok()?;
    if run.workload == Workload::Fragmentation {
        return None; // the serving simulation's budget bounds its own cache
    }
    let spec = run.spec().ok();
    let kind = spec.as_ref().map(|s| s.kind);
    let batch = run.batch() as u128;
    let longest = longest_sequence(e, run) as u128;
    let n_kv = spec.as_ref().and_then(|s| s.kv_heads).unwrap_or(config.n_kv_heads) as u128;
    // Bits per element: f32 unless the store quantizes.
    let bits = spec.as_ref().and_then(|s| s.bits).map_or(32, u128::from).min(32);
    let held = match &spec {
        None => 0, // chunked perplexity: no cache
        Some(s) => match s.kind {
            StrategyKind::NONE => 0,
            StrategyKind::PAGED => {
                let block = s.block_size.unwrap_or(16).max(1) as u128;
                longest.div_ceil(block) * block
            }
            // The whole prompt is held until it is cut.
            _ if s.cuts_prompt() => longest,
            _ => s.cache_tokens.map_or(longest, |c| longest.min(c as u128)),
        },
    };
    let kv = 2 * held * batch * n_kv * config.head_dim as u128 * config.n_layers as u128 * bits / 8;
    // The largest forward pass: `queries` new tokens over `keys` keys.
    let (queries, keys) = match run.workload {
        _ if kind == Some(StrategyKind::NONE) => (longest, longest),
        Workload::Perplexity => {
            match e.file.workload.perplexity.as_ref().map(|p| (p.mode, p.chunk)) {
                Some((PplMode::Chunked, Some(chunk))) => (chunk as u128, chunk as u128),
                _ => (1, longest),
            }
        }
        Workload::Walkthrough => {
            let prompt = e.file.workload.walkthrough.as_ref().map_or(1, |p| p.prompt_tokens);
            (prompt as u128, prompt as u128)
        }
        _ => {
            let context = run.usize("context").unwrap_or(1) as u128;
            (context, context)
        }
    };
    let scores = if fused_kernel(e, run, spec.as_ref(), queries as usize) {
        let threads = rayon::current_num_threads(); // the fork-join pool's size
        fused_attention::scratch_floats(keys as usize, config.head_dim, threads) as u128
    } else {
        2 * batch * config.n_heads as u128 * queries * keys // scores and softmax
    };
    let hidden = batch * queries * (4 * config.hidden_size + 3 * config.intermediate_size) as u128;
    let logits = batch * queries * config.vocab_size as u128;
    // Streaming perplexity keeps the full cache's logits of every step for the KL columns.
    let recorded = match (run.workload, e.file.workload.perplexity.as_ref()) {
        (Workload::Perplexity, Some(p)) if p.mode == PplMode::Streaming && p.divergence => {
            crate::workloads::perplexity::recorded_bytes(longest as usize, config.vocab_size)
                as u128
        }
        _ => 0,
    };
    let activations = 4 * (scores + hidden + logits) + recorded;
    // The host weights and the backend's copy (a head conversion makes a third, briefly).
    let weights = 4
        * crate::model::parameters(&config)
        * if n_kv as usize != config.n_kv_heads { 3 } else { 2 };
    Some(Need { weights, kv, activations })
}

/// Whether the run attends with the fused kernel ([`Run::fused_attention`]) rather than the dense
/// path: the run asks for it (`attention = "fused"`), the backend is flex (the kernel reads
/// flex tensors only; on the others the dense path runs), and the cache does not read
/// attention's probabilities in the largest forward, of `queries` new tokens (its policy says:
/// H2O and TOVA at every step, SnapKV and PyramidKV at the prefill they cut; those forwards
/// take the dense path, which makes them).
fn fused_kernel(e: &Experiment, run: &Run, spec: Option<&StrategySpec>, queries: usize) -> bool {
    let reads_probabilities = spec.is_some_and(|s| s.observes_forward(0, queries));
    run.fused_attention() && e.backend == BackendName::Flex && !reads_probabilities
}

/// Refuses the runs (of those matching `only`) whose estimate exceeds `limit`, one line each
/// naming the run.
pub fn check(e: &Experiment, limit: MemoryLimit, only: &[(String, String)]) -> Result<(), Invalid> {
    let mut errors = vec![];
    for w in e.workloads() {
        for (i, run) in e.runs(w).iter().enumerate() {
            if !crate::sweep::id_matches(&run.id(e.backend.name()), only) {
                continue;
            }
            match estimate(e, run) {
                Some(need) if need.total() > limit.bytes as u128 => errors.push(format!(
                    "{}: run {w}#{i} ({}) needs {need} but {} bytes ({}) are available ({})",
                    e.path.display(),
                    run.label(),
                    limit.bytes,
                    human(limit.bytes as u128),
                    limit.source
                )),
                _ => {}
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes("1.5K"), Ok(1536));
        for bad in ["", "0", "-1G", "8X", "G"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_static_cache_of_the_oom_report_needs_terabytes() {
        let e = super::super::parse(
            "t.toml",
            r#"
[experiment]
name = "t"
question = "q?"
model = "smollm2-135m"
[sweep]
strategy = ["static", "window"]
cache_tokens = [256]
batch = [4000]
context = [32000]
[workload.memory]
"#,
            None,
        )
        .unwrap();
        let runs = e.runs(Workload::Memory);
        let stat = estimate(&e, &runs[0]).unwrap();
        // 2 · 32,000 · 4,000 · 3 KV heads · 64 · 30 layers · 4 bytes = 5.9 TB.
        assert_eq!(stat.kv, 5_898_240_000_000);
        let window = estimate(&e, &runs[1]).unwrap();
        assert_eq!(window.kv, stat.kv * 256 / 32_000);
        let limit = MemoryLimit { bytes: 24 << 30, source: "test" };
        let err = check(&e, limit, &[]).unwrap_err().to_string();
        assert!(
            err.contains("run memory#0 ([smollm2-135m] static batch=4000 context=32000)"),
            "{err}"
        );
        assert!(err.contains("needs ") && err.contains("25769803776 bytes"), "{err}");
    }

    /// A throughput run on flex with `attention = "fused"` holds each worker's block of scores
    /// (keys transposed, 32 rows of scores, 32 output rows) instead of the dense path's scores
    /// and softmax; on ndarray, and for a cache that reads attention (TOVA), it stays dense.
    #[test]
    fn fused_attention_holds_blocks_of_scores_not_the_score_matrix() {
        let toml = r#"
[experiment]
name = "t"
question = "q?"
model = "smollm2-135m"
[sweep]
strategy = ["concat", "tova"]
cache_tokens = [256]
attention = ["dense", "fused"]
batch = [2]
context = [1024]
[workload.throughput]
"#;
        let need = |backend| {
            let e = super::super::parse("t.toml", toml, Some(backend)).unwrap();
            let runs = e.runs(Workload::Throughput);
            let by = |strategy: &str, attention: &str| {
                let run = runs.iter().find(|r| {
                    r.get("strategy").is_some_and(|v| v.to_string() == strategy)
                        && r.get("attention").is_some_and(|v| v.to_string() == attention)
                });
                estimate(&e, run.expect("the run")).unwrap()
            };
            [by("concat", "dense"), by("concat", "fused"), by("tova", "dense"), by("tova", "fused")]
        };
        let [dense, fused, tova_dense, tova_fused] = need(BackendName::Flex);
        // SmolLM2-135M: 9 heads of 64; 2 rows of 1,024 tokens; 4-byte floats.
        let matrix = 4 * 2 * (2 * 9 * 1024 * 1024); // scores and softmax
        let threads = rayon::current_num_threads() as u128;
        let blocks = 4 * threads * (64 * 1024 + 32 * 1024 + 32 * 64);
        assert_eq!(matrix, 150_994_944);
        assert_eq!(dense.activations - fused.activations, matrix - blocks);
        assert_eq!((dense.kv, dense.weights), (fused.kv, fused.weights));
        assert_eq!(tova_dense, tova_fused, "TOVA reads the probabilities: dense");
        let [dense, fused, ..] = need(BackendName::Ndarray);
        assert_eq!(dense, fused, "the fused kernel runs on flex only");
    }
}

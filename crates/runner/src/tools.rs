//! The single-purpose commands beside the sweeps: `generate` (greedy decoding with timings),
//! `logits` (top-k logits per position as JSON), and `bandwidth` (a memory-read probe for the
//! decode roofline).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::gguf::GgufFile;
use kvlab_model::inspect::top_k_logits;
use kvlab_model::tokenizer::Tokenizer;
use kvlab_model::{Model, ModelWeights};
use kvlab_strategies::{StrategyKind, StrategySpec};
use rayon::prelude::*;
use serde::Serialize;

/// The pretrained model and its tokenizer: `--model PATH` or `KVLAB_MODEL`, else the pinned
/// SmolLM2 GGUF fetched into the cache.
pub fn load_pretrained(
    model: Option<&Path>,
    cache: Option<&Path>,
) -> Result<(ModelWeights, Tokenizer)> {
    let path = kvlab_model::assets::model_path(model, cache)?;
    let file = GgufFile::open(&path)?;
    let weights = kvlab_model::loader::weights_from_gguf(&file)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    Ok((weights, tokenizer))
}

/// Parses `1,2,3` or whitespace-separated ids.
pub fn parse_ids(text: &str) -> Result<Vec<u32>> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .with_context(|| format!("token id '{s}' is not a non-negative integer"))
        })
        .collect()
}

/// One timed greedy generation, as `runner generate --json` prints it.
#[derive(Debug, Serialize)]
pub struct GenerateReport {
    pub engine: &'static str,
    pub backend: String,
    pub batch: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Generated ids of each row of the last repeat.
    pub tokens: Vec<Vec<u32>>,
    pub prefill_s: Vec<f64>,
    /// Time of the `new_tokens - 1` decode steps after the prefill step, per repeat.
    pub decode_s: Vec<f64>,
    pub decode_tok_per_s: Vec<f64>,
}

/// Greedy decoding of `prompt` (replicated over `batch` rows) through a static cache,
/// `warmup` untimed runs then `repeat` timed ones. The device is synced inside every timing.
pub fn timed_generate<B: Backend>(
    model: &Model<B>,
    prompt: &[u32],
    new_tokens: usize,
    batch: usize,
    repeat: usize,
    warmup: usize,
    backend: String,
) -> Result<GenerateReport> {
    if prompt.is_empty() || new_tokens < 2 {
        bail!("generate needs a non-empty prompt and --new-tokens >= 2");
    }
    let device = model.device();
    let prompts = vec![prompt.to_vec(); batch];
    let spec = StrategySpec::new(StrategyKind::Static);
    let mut report = GenerateReport {
        engine: "kvlab",
        backend,
        batch,
        prompt_tokens: prompt.len(),
        new_tokens,
        tokens: Vec::new(),
        prefill_s: Vec::new(),
        decode_s: Vec::new(),
        decode_tok_per_s: Vec::new(),
    };
    for run in 0..warmup + repeat {
        let mut cache =
            spec.build::<B>(&model.config, batch, prompt.len() + new_tokens, &device)?;
        let start = Instant::now();
        let mut prefill_end = start;
        let tokens =
            generate(model, cache.as_mut(), &prompts, new_tokens, &Sampling::Greedy, |step| {
                if step.index == 0 {
                    let _ = B::sync(&device);
                    prefill_end = Instant::now();
                }
            })?;
        let _ = B::sync(&device);
        let end = Instant::now();
        if run >= warmup {
            let decode = (end - prefill_end).as_secs_f64();
            report.prefill_s.push((prefill_end - start).as_secs_f64());
            report.decode_s.push(decode);
            report.decode_tok_per_s.push((batch * (new_tokens - 1)) as f64 / decode);
            report.tokens = tokens;
        }
    }
    Ok(report)
}

/// The memory-read probe: sums a buffer much larger than the caches with every rayon thread.
#[derive(Debug, Serialize)]
pub struct Bandwidth {
    pub gb_per_s: f64,
    pub bytes: usize,
    pub threads: usize,
}

/// Median of `repeats` passes over `bytes` of f32 (each thread reads its own contiguous chunk).
pub fn bandwidth_probe(bytes: usize, repeats: usize) -> Bandwidth {
    let data: Vec<f32> = (0..bytes / 4).map(|i| (i % 7) as f32).collect();
    let threads = rayon::current_num_threads();
    let chunk = data.len().div_ceil(threads);
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            let sum: f32 = data.par_chunks(chunk).map(sum_widest_simd).sum();
            std::hint::black_box(sum);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Bandwidth { gb_per_s: bytes as f64 / times[times.len() / 2] / 1e9, bytes, threads }
}

/// [`sum_lanes`] compiled for the widest SIMD the CPU offers, chosen at run time. Why: built
/// for the x86-64 baseline (SSE2), one core cannot keep enough loads in flight, and the probe
/// read ~18% slower than torch.sum on the same buffer, which would flatter every roofline
/// fraction computed from it.
fn sum_widest_simd(values: &[f32]) -> f32 {
    macerator::Arch::new().dispatch(|| sum_lanes(values))
}

/// A sum the compiler vectorizes: 16 independent accumulators, so the loop is bound by memory,
/// not by the latency of one chain of additions.
#[inline(always)]
fn sum_lanes(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `runner logits`: top-k logits at every position, as one JSON object.
pub fn logits_json<B: Backend>(model: &Model<B>, ids: &[u32], k: usize) -> Result<String> {
    Ok(serde_json::to_string(&top_k_logits(model, ids, k)?)?)
}

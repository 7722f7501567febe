//! The single-purpose commands beside the sweeps: `generate` (greedy decoding with timings),
//! `logits` (top-k logits per position as JSON), `tokens` (the ids a perplexity experiment
//! scores, for peer engines), and `bandwidth` (a memory-read probe for the decode roofline).

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

use crate::backend::BackendName;
use crate::cli::{GenerateArgs, Global, LogitsArgs};

/// The pretrained model and its tokenizer: `--model PATH` or `KVLAB_MODEL`, else the pinned
/// SmolLM2 GGUF fetched into the cache.
pub(crate) fn load_pretrained(
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
pub(crate) struct GenerateReport {
    pub engine: &'static str,
    pub backend: String,
    /// `fused` or `dense` (see `runner generate --attention`).
    pub attention: &'static str,
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
pub(crate) fn timed_generate<B: Backend>(
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
    let spec = StrategySpec::new(StrategyKind::STATIC);
    let mut report = GenerateReport {
        engine: "kvlab",
        backend,
        attention: if model.fused_attention() { "fused" } else { "dense" },
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
pub(crate) struct Bandwidth {
    pub gb_per_s: f64,
    pub bytes: usize,
    pub threads: usize,
}

/// Median of `repeats` passes over `bytes` of f32 (each thread reads its own contiguous chunk).
pub(crate) fn bandwidth_probe(bytes: usize, repeats: usize) -> Bandwidth {
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
pub(crate) fn logits_json<B: Backend>(model: &Model<B>, ids: &[u32], k: usize) -> Result<String> {
    Ok(serde_json::to_string(&top_k_logits(model, ids, k)?)?)
}

/// The backend a single-purpose command runs on (`--backend`, default flex).
fn command_backend(g: &Global) -> Result<BackendName> {
    let b = g.backend.unwrap_or(BackendName::Flex);
    b.ensure_compiled_in().map_err(anyhow::Error::msg)?;
    Ok(b)
}

pub(crate) fn generate_command(args: &GenerateArgs, g: &Global) -> Result<()> {
    // Ids are read before the model is loaded, so a bad file costs nothing.
    let ids = match (&args.prompt, &args.ids, &args.ids_file) {
        (Some(_), _, _) => None,
        (_, Some(ids), _) => Some(parse_ids(ids).context("--ids")?),
        (_, _, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(parse_ids(&text).with_context(|| format!("--ids-file {}", path.display()))?)
        }
        _ => bail!("generate needs --prompt, --ids or --ids-file"),
    };
    let (weights, tokenizer) = load_pretrained(g.model.as_deref(), g.cache_dir.as_deref())?;
    let prompt = match (ids, &args.prompt) {
        (Some(ids), _) => ids,
        (None, text) => tokenizer.encode(text.as_deref().unwrap_or_default())?,
    };
    let backend = command_backend(g)?;
    let report = crate::with_backend!(
        backend,
        |B, device| {
            let mut model =
                crate::model::upload::<B>(&weights, &device).map_err(anyhow::Error::msg)?;
            model.set_fused_attention(args.attention == crate::cli::AttentionImpl::Fused);
            timed_generate(
                &model,
                &prompt,
                args.new_tokens,
                args.batch,
                args.repeat.max(1),
                args.warmup,
                backend.to_string(),
            )?
        },
        bail!("backend {backend} is not compiled in")
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let text = tokenizer.decode(&report.tokens[0])?;
    println!("{}{}", args.prompt.clone().unwrap_or_default(), text);
    let mut rates = report.decode_tok_per_s.clone();
    rates.sort_by(f64::total_cmp);
    eprintln!(
        "{} prompt tokens, {} new: prefill {:.3} s, decode {:.1} tok/s (median of {}, batch {}, {backend})",
        report.prompt_tokens,
        report.new_tokens,
        report.prefill_s[report.prefill_s.len() / 2],
        rates[rates.len() / 2],
        rates.len(),
        report.batch
    );
    Ok(())
}

pub(crate) fn logits_command(args: &LogitsArgs, g: &Global) -> Result<()> {
    let (weights, tokenizer) = load_pretrained(g.model.as_deref(), g.cache_dir.as_deref())?;
    let ids = match (&args.text, &args.ids) {
        (Some(text), _) => tokenizer.encode(text)?,
        (_, Some(ids)) => parse_ids(ids)?,
        _ => bail!("logits needs --text or --ids"),
    };
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= weights.config.vocab_size) {
        bail!("token id {bad} is out of range (vocab {})", weights.config.vocab_size);
    }
    let backend = command_backend(g)?;
    let json = crate::with_backend!(
        backend,
        |B, device| {
            let model = crate::model::upload::<B>(&weights, &device).map_err(anyhow::Error::msg)?;
            logits_json(&model, &ids, args.top_k)?
        },
        bail!("backend {backend} is not compiled in")
    );
    println!("{json}");
    Ok(())
}

/// `runner tokens EXP`: the ids the experiment's perplexity workload evaluates, tokenized as a
/// run would (the experiment's first model, `--model`/`--cache-dir` as for a run).
pub(crate) fn tokens_command(file: &Path, json: bool, g: &Global) -> Result<()> {
    let experiment =
        crate::experiment::load(file, g.backend).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(p) = &experiment.file.workload.perplexity else {
        bail!("{}: has no [workload.perplexity] whose tokens to print", file.display());
    };
    let model = experiment
        .axes
        .get("model")
        .and_then(|m| m.first())
        .map(|m| m.to_string())
        .unwrap_or_default();
    let config = crate::model::config_of(&model).map_err(anyhow::Error::msg)?;
    let source =
        crate::model::ModelSource { gguf: g.model.clone(), cache_dir: g.cache_dir.clone() };
    let ids = crate::workloads::corpus::corpus_tokens(
        p,
        experiment.seed(),
        &model,
        config.vocab_size,
        &source,
    )?;
    if json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        let text: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("{}", text.join(","));
    }
    Ok(())
}

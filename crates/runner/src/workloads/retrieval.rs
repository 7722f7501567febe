//! retrieval: the passkey test. For each `context` length of the sweep, a haystack of that
//! many tokens ([`super::haystack`]) with a five-digit key planted at each of `depths`,
//! `samples` keys per depth; the prompt goes through the run's cache, the answer is decoded
//! greedily and scored by exact match of its first digits.
//!
//! ```toml
//! [sweep]
//! context = [512, 1024, 2048]     # haystack lengths (prompt tokens)
//!
//! [workload.retrieval]
//! depths = [0, 25, 50, 75, 100]   # percent of the haystack before the needle
//! samples = 1                     # keys per (length, depth), seeded
//! question = "in-prompt"          # or "after": the context is prefilled first
//! haystack = "corpus"             # or "filler"
//! corpus = "shakespeare:hamlet"
//! answer_tokens = 8
//! ```
//!
//! One row per run (strategy × length) in `retrieval.csv`: accuracy, how much of the needle
//! the cache still held when it answered (for the caches whose kept set is known from
//! positions alone), and prefill throughput (prefill dominates the run's wall time). One row
//! per case in `retrieval_cases.csv`: the key, the answer and where the needle was.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::prelude::Backend;
use kvlab_model::generate::{Sampling, feed_pending, generate};
use kvlab_model::gguf::GgufFile;
use kvlab_model::tokenizer::Tokenizer;
use kvlab_strategies::StrategySpec;
use serde::{Deserialize, Serialize};

use super::RunCtx;
use super::haystack::{Case, HaystackKind, Haystacks, answer_digits};
use crate::csv_sink::CsvSink;
use crate::experiment::RetrievalParams;
use crate::model::ModelSource;
use crate::rows::{Fixed, Metrics as _};

/// One strategy at one haystack length, over every depth and sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// `in-prompt` or `after`.
    pub question: String,
    /// `corpus` or `filler`.
    pub haystack: String,
    /// The corpus the haystack was cut from (empty for the filler).
    pub corpus: String,
    pub cases: usize,
    pub correct: usize,
    pub accuracy_pct: Fixed<1>,
    /// Mean share of the needle's tokens the cache held when the first answer token was
    /// predicted (window, shift-window, sink: known from positions; empty for the others).
    pub needle_kept_pct: Option<Fixed<1>>,
    /// Prompt tokens prefilled before the first answer token, over all cases.
    pub prefill_tokens: usize,
    pub prefill_s: Fixed<3>,
    pub prefill_tok_per_s: Fixed<1>,
    pub kv_allocated_bytes: usize,
    pub kv_live_bytes: usize,
}
crate::metrics_row!(Metrics);

/// One haystack: `retrieval_cases.csv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaseRow {
    pub experiment: String,
    pub run_id: String,
    pub model: String,
    pub context: usize,
    pub depth_pct: u32,
    pub sample: usize,
    /// The needle's first and one-past-last token positions in the prompt.
    pub needle_start: usize,
    pub needle_end: usize,
    pub needle_kept_pct: Option<Fixed<1>>,
    pub key: u32,
    /// The decoded answer (newlines written as `\n`).
    pub answer: String,
    pub correct: bool,
    pub prefill_s: Fixed<3>,
}
crate::metrics_row!(CaseRow);

pub const CASES_FILE: &str = "retrieval_cases.csv";

fn cases_header() -> Vec<String> {
    CaseRow::columns().iter().map(|s| s.to_string()).collect()
}

/// Opens (or, resuming, continues) the cases CSV in `dir`, keeping the cases of the runs that
/// `finished` (those with a row in `retrieval.csv`).
pub fn open_cases(dir: &Path, resume: bool, finished: &dyn Fn(&str) -> bool) -> Result<CsvSink> {
    let path = dir.join(CASES_FILE);
    if resume {
        crate::csv_sink::retain_runs(&path, &cases_header(), finished)?;
    }
    CsvSink::open(&path, &cases_header(), resume)
}

/// The haystacks of `model`'s tokenizer: the corpus read and tokenized once per model.
pub fn haystacks(
    p: &RetrievalParams,
    model: &str,
    source: &ModelSource,
    seed: u64,
    longest: usize,
) -> Result<Haystacks> {
    let path = crate::model::gguf_path(model, source).map_err(anyhow::Error::msg)?;
    let tokenizer = Tokenizer::from_gguf(&GgufFile::open(&path)?)
        .with_context(|| format!("the tokenizer of {}", path.display()))?;
    let text = match p.haystack {
        HaystackKind::Corpus => {
            kvlab_model::corpus::corpus_spec(&p.corpus, source.cache_dir.as_deref())?
        }
        HaystackKind::Filler => String::new(),
    };
    Haystacks::new(tokenizer, p.haystack, &text, longest, seed).map_err(anyhow::Error::msg)
}

/// Runs every case of one run; returns its row and the case rows.
pub fn measure<B: Backend>(
    ctx: &RunCtx<'_, B>,
    haystacks: &Haystacks,
) -> Result<(Metrics, Vec<CaseRow>)> {
    let p = ctx.experiment.file.workload.retrieval.clone().expect("retrieval workload");
    let length = ctx.run.usize("context").context("retrieval needs sweep.context")?;
    let spec = ctx.run.spec().map_err(anyhow::Error::msg)?;
    let mut cache = ctx.cache(1, length + p.answer_tokens)?;
    let id = ctx.run.id(ctx.experiment.backend.name());
    let bar = ctx.progress.sub_bar((p.depths.len() * p.samples) as u64, "haystacks");
    let (mut rows, mut prefill, mut prefill_tokens) = (vec![], Duration::ZERO, 0);
    let mut memory = kvlab_model::KvMemory::default();
    for &depth in &p.depths {
        for sample in 0..p.samples {
            let case = haystacks.case(length, depth, sample).map_err(anyhow::Error::msg)?;
            cache.reset();
            let (answer, took, fed) = answer(ctx, cache.as_mut(), &case, &p)?;
            let memory_now = cache.memory();
            if memory_now.allocated_bytes >= memory.allocated_bytes {
                memory = memory_now;
            }
            prefill += took;
            prefill_tokens += fed;
            let text = haystacks.tokenizer().decode(&answer)?;
            // Position-ruled caches: what they hold after the prompt. Evicting caches: what they
            // held, over every layer and head, once the answer was decoded.
            let kept = needle_kept_pct(&spec, case.context.len() + case.question.len(), &case)
                .or_else(|| cache.held_share(case.needle.clone()).map(|s| 100.0 * s));
            rows.push(CaseRow {
                experiment: ctx.experiment.name().into(),
                run_id: id.clone(),
                model: ctx.run.model().into(),
                context: length,
                depth_pct: depth,
                sample,
                needle_start: case.needle.start,
                needle_end: case.needle.end,
                needle_kept_pct: kept.map(Fixed),
                key: case.key,
                answer: text.replace('\n', "\\n"),
                correct: answer_digits(&text) == case.key.to_string(),
                prefill_s: Fixed(took.as_secs_f64()),
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let correct = rows.iter().filter(|r| r.correct).count();
    let kept: Vec<f64> = rows.iter().filter_map(|r| r.needle_kept_pct.map(|k| k.0)).collect();
    let secs = prefill.as_secs_f64();
    let metrics = Metrics {
        question: p.question.name().into(),
        haystack: p.haystack.name().into(),
        corpus: match p.haystack {
            HaystackKind::Corpus => p.corpus.clone(),
            HaystackKind::Filler => String::new(),
        },
        cases: rows.len(),
        correct,
        accuracy_pct: Fixed(100.0 * correct as f64 / rows.len().max(1) as f64),
        needle_kept_pct: (!kept.is_empty())
            .then(|| Fixed(kept.iter().sum::<f64>() / kept.len() as f64)),
        prefill_tokens,
        prefill_s: Fixed(secs),
        prefill_tok_per_s: Fixed(if secs > 0.0 { prefill_tokens as f64 / secs } else { 0.0 }),
        kv_allocated_bytes: memory.allocated_bytes,
        kv_live_bytes: memory.live_bytes,
    };
    Ok((metrics, rows))
}

/// Prefills one case and decodes its answer greedily: the answer's ids, the prefill's wall
/// time (until the first answer token's logits are on the host) and the tokens it fed.
fn answer<B: Backend>(
    ctx: &RunCtx<'_, B>,
    cache: &mut dyn kvlab_model::KvCache<B>,
    case: &Case,
    p: &RetrievalParams,
) -> Result<(Vec<u32>, Duration, usize)> {
    let prompt = case.prompt();
    let start = Instant::now();
    let mut first_token_at = None;
    let fed = match p.question {
        super::haystack::QuestionMode::InPrompt => prompt.len(),
        super::haystack::QuestionMode::After => {
            feed_pending(ctx.model, cache, std::slice::from_ref(&case.context), ctx.device)?;
            super::sync::<B>(ctx.device)?;
            first_token_at = Some(start.elapsed());
            case.context.len()
        }
    };
    let out = generate(ctx.model, cache, &[prompt], p.answer_tokens, &Sampling::Greedy, |s| {
        if s.index == 0 && first_token_at.is_none() {
            first_token_at = Some(start.elapsed());
        }
    })?;
    let took = first_token_at.unwrap_or_else(|| start.elapsed());
    Ok((out.into_iter().next().unwrap_or_default(), took, fed))
}

/// The percent of the needle's tokens a cache of `spec` holds after `seen` prompt tokens, for
/// the caches whose kept set follows from positions alone (`None` where attention decides, per
/// layer and head; a cache that keeps every token holds all of it). The policy says what it
/// keeps ([`StrategySpec::kept_positions`]).
pub(crate) fn needle_kept_pct(spec: &StrategySpec, seen: usize, case: &Case) -> Option<f64> {
    let needle = &case.needle;
    let kept: Vec<Range<usize>> = spec.kept_positions(seen)?;
    let held: usize =
        kept.iter().map(|k| needle.end.min(k.end).saturating_sub(needle.start.max(k.start))).sum();
    Some(100.0 * held as f64 / needle.len().max(1) as f64)
}

/// Appends one run's case rows (before its row in `retrieval.csv`; see
/// [`crate::csv_sink::retain_runs`]).
pub fn append_cases(dir: &Path, rows: &[CaseRow]) -> Result<()> {
    let mut sink = CsvSink::open(&dir.join(CASES_FILE), &cases_header(), true)?;
    for r in rows {
        sink.append(&crate::rows::fields(r)?)?;
    }
    Ok(())
}

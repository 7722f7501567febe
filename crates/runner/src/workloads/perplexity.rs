//! perplexity: streaming (one token at a time through each strategy's cache, as StreamingLLM
//! evaluates) or chunked (full attention over independent chunks), with the delta to the
//! full-cache (`concat`) streaming run over the same tokens.
//!
//! The evaluators are `kvlab_model::perplexity`'s; this module picks the tokens, the caches and
//! the reference.

use anyhow::Result;
use burn::prelude::*;
use kvlab_model::gguf::GgufFile;
use kvlab_strategies::StrategyKind;
use serde::{Deserialize, Serialize};

use super::{RunCtx, random_prompts};
use crate::experiment::{PerplexityParams, PplMode};
use crate::rows::{Fixed, Sig6};

/// One perplexity run, and its change against the full cache over the same tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// `streaming` or `chunked`.
    pub mode: String,
    pub chunk: Option<usize>,
    pub corpus: String,
    /// Tokens predicted (the evaluated tokens but the first).
    pub tokens: usize,
    pub mean_nll: Fixed<6>,
    pub ppl: Sig6,
    pub ppl_delta_pct: Sig6,
    pub kv_allocated_bytes: Option<usize>,
    pub kv_live_bytes: Option<usize>,
}
crate::metrics_row!(Metrics);

pub use kvlab_model::perplexity::{Perplexity, chunked, streaming};

/// The evaluated token ids: the first `p.tokens` tokens of the corpus.
pub fn corpus_tokens(
    p: &PerplexityParams,
    seed: u64,
    model: &str,
    vocab: usize,
    source: &crate::model::ModelSource,
) -> Result<Vec<u32>> {
    crate::experiment::check_corpus(&p.corpus).map_err(anyhow::Error::msg)?;
    if p.corpus == "random" {
        return Ok(random_prompts(seed ^ 0x5eed_c0de, 1, p.tokens, vocab).remove(0));
    }
    let text = kvlab_model::corpus::corpus_spec(&p.corpus, source.cache_dir.as_deref())?;
    // The run's own model file: a `.gguf` model brings its tokenizer.
    let path = crate::model::gguf_path(model, source).map_err(anyhow::Error::msg)?;
    let tokenizer = kvlab_model::tokenizer::Tokenizer::from_gguf(&GgufFile::open(&path)?)?;
    if tokenizer.vocab_size() != vocab {
        anyhow::bail!(
            "corpus {}: the tokenizer of {} has {} tokens, the model {vocab}",
            p.corpus,
            path.display(),
            tokenizer.vocab_size()
        );
    }
    // Tokenize a prefix large enough for the request (a play is ~4 characters per token).
    let mut take = (p.tokens * 8).min(text.len());
    loop {
        while !text.is_char_boundary(take) {
            take += 1;
        }
        let mut ids = tokenizer.encode(&text[..take])?;
        if ids.len() > p.tokens || take == text.len() {
            // Drop the last token: a cut may have split it.
            ids.truncate(p.tokens.min(ids.len().saturating_sub(1)));
            if ids.len() < p.tokens {
                anyhow::bail!(
                    "corpus {} has only {} tokens, {} asked",
                    p.corpus,
                    ids.len(),
                    p.tokens
                );
            }
            return Ok(ids);
        }
        take = (take * 2).min(text.len());
    }
}

/// Measures one run; `reference` is the full-cache streaming perplexity of the same tokens.
pub fn measure<B: Backend>(
    ctx: &RunCtx<'_, B>,
    reference: &mut dyn FnMut(&[u32]) -> Result<f64>,
) -> Result<Metrics> {
    let p = ctx.experiment.file.workload.perplexity.clone().expect("perplexity workload");
    let (seed, vocab) = (ctx.experiment.seed(), ctx.model.config.vocab_size);
    let tokens = corpus_tokens(&p, seed, ctx.run.model(), vocab, ctx.source)?;
    let (result, mem) = match p.mode {
        PplMode::Streaming => {
            let mut cache = ctx.cache(1, tokens.len())?;
            let bar = ctx.progress.sub_bar(tokens.len() as u64 - 1, "tokens");
            let r =
                streaming(ctx.model, cache.as_mut(), &tokens, |i, _| bar.set_position(i as u64))?;
            bar.finish_and_clear();
            (r, Some(cache.memory()))
        }
        PplMode::Chunked => (chunked(ctx.model, &tokens, p.chunk.unwrap_or(512))?, None),
    };
    // A streaming full cache on the checkpoint's own heads is its own reference; a converted
    // model (kv_heads) is compared with the checkpoint it came from.
    let full = if ctx.run.get("strategy").is_some()
        && ctx.run.kind() == StrategyKind::Concat
        && ctx.run.get("kv_heads").is_none()
        && p.mode == PplMode::Streaming
    {
        result.ppl
    } else {
        reference(&tokens)?
    };
    Ok(Metrics {
        mode: p.mode.name().into(),
        chunk: p.chunk,
        corpus: p.corpus.clone(),
        tokens: result.predicted,
        mean_nll: Fixed(result.mean_nll),
        ppl: Sig6(result.ppl),
        // From the written (rounded) values, so a resumed run that reads the reference back from
        // the CSV computes the same delta.
        ppl_delta_pct: Sig6(delta_pct(Sig6(result.ppl).written(), Sig6(full).written())),
        kv_allocated_bytes: mem.map(|m| m.allocated_bytes),
        kv_live_bytes: mem.map(|m| m.live_bytes),
    })
}

/// `(ppl / reference - 1) · 100`, with -0 written as 0.
pub fn delta_pct(ppl: f64, reference: f64) -> f64 {
    let d = (ppl / reference - 1.0) * 100.0;
    if d.abs() < 5e-7 { 0.0 } else { d }
}

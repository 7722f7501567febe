//! perplexity: streaming (one token at a time through each strategy's cache, as StreamingLLM
//! evaluates) or chunked (full attention over independent chunks), with the delta to the
//! full-cache (`concat`) streaming run over the same tokens, and (streaming) the KL and top-1
//! agreement of every next-token distribution against that full cache.
//!
//! The evaluators are `kvlab_model::perplexity`'s; this module picks the tokens, the caches and
//! the reference.

use anyhow::{Context, Result};
use burn::prelude::*;
use kvlab_model::Model;
use kvlab_model::control_vector::ControlVector;
use kvlab_model::perplexity::{FullReference, streaming_against};
use kvlab_strategies::{StrategyKind, StrategySpec};
use serde::{Deserialize, Serialize};

use super::RunCtx;
use super::corpus::corpus_tokens;
use crate::experiment::{PerplexityParams, PplMode};
use crate::rows::{Fixed, Sci6, Sig6};

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
    /// KL(full ‖ this run) of the next-token distributions, nats, over the predicted tokens
    /// (streaming with `divergence`; empty otherwise).
    pub kl_mean: Option<Sci6>,
    pub kl_p99: Option<Sci6>,
    pub kl_max: Option<Sci6>,
    /// Percent of predicted tokens where this run's argmax is the full cache's.
    pub top1_agree_pct: Option<Sig6>,
    pub kv_allocated_bytes: Option<usize>,
    pub kv_live_bytes: Option<usize>,
    /// Perturbed runs (`draws`; empty without), and their perplexities' mean and standard
    /// deviation (sample, percent of the mean).
    pub draws: Option<usize>,
    pub ppl_draw_mean: Option<Sig6>,
    pub ppl_draw_sd_pct: Option<Sig6>,
}
crate::metrics_row!(Metrics);

pub use kvlab_model::perplexity::{Perplexity, chunked, streaming};

/// What the full-cache reference of one model has settled, kept across the model's runs.
#[derive(Debug, Default)]
pub struct FullCacheRun {
    /// Its streaming perplexity over the experiment's tokens.
    pub ppl: Option<f64>,
    /// Its logits at every step, `[steps][vocab]`, kept when they fit [`RECORD_LIMIT_BYTES`].
    pub logits: Option<Vec<Vec<f32>>>,
}

/// The most bytes of reference logits kept in memory (4,096 steps of SmolLM2's 49,152-token
/// vocabulary are 805 MB); beyond it every run recomputes the reference in lock step.
pub(crate) const RECORD_LIMIT_BYTES: usize = 1 << 30;

/// Bytes of the reference logits a streaming run over `tokens` keeps (0 if they do not fit).
pub(crate) fn recorded_bytes(tokens: usize, vocab: usize) -> usize {
    let bytes = tokens.saturating_sub(1) * vocab * 4;
    if bytes <= RECORD_LIMIT_BYTES { bytes } else { 0 }
}

/// Whether the run is its model's full-cache reference: a streaming `concat` on the
/// checkpoint's own heads (a converted model is compared with the checkpoint it came from).
fn is_reference<B: Backend>(ctx: &RunCtx<'_, B>, mode: PplMode) -> bool {
    ctx.run.get("strategy").is_some()
        && ctx.run.kind() == StrategyKind::CONCAT
        && ctx.run.get("kv_heads").is_none()
        && mode == PplMode::Streaming
}

/// Whether [`measure`] needs the checkpoint's own model to compute a reference.
pub(crate) fn needs_native<B: Backend>(ctx: &RunCtx<'_, B>, full: &FullCacheRun) -> bool {
    let p = params(ctx);
    if is_reference(ctx, p.mode) {
        false
    } else if p.mode == PplMode::Streaming && p.divergence {
        full.logits.is_none()
    } else {
        full.ppl.is_none()
    }
}

fn params<B: Backend>(ctx: &RunCtx<'_, B>) -> PerplexityParams {
    ctx.experiment.file.workload.perplexity.clone().expect("perplexity workload")
}

/// Measures one run against its model's full cache: `native` is the checkpoint's own model
/// where [`needs_native`] says a reference must be computed; `full` keeps what was settled.
pub fn measure<B: Backend>(
    ctx: &RunCtx<'_, B>,
    native: Option<&Model<B>>,
    full: &mut FullCacheRun,
) -> Result<Metrics> {
    let p = params(ctx);
    let (seed, vocab) = (ctx.experiment.seed(), ctx.model.config.vocab_size);
    let tokens = corpus_tokens(&p, seed, ctx.run.model(), vocab, ctx.source)?;
    let own = is_reference(ctx, p.mode);
    let native = || native.context("internal: the full-cache reference needs the native model");
    let (result, mem, divergence) = match p.mode {
        PplMode::Streaming if p.divergence => {
            let mut cache = ctx.cache(1, tokens.len())?;
            let mut record =
                (full.logits.is_none() && recorded_bytes(tokens.len(), vocab) > 0).then(Vec::new);
            let mut full_cache;
            let reference = if own {
                FullReference::Itself
            } else if let Some(logits) = &full.logits {
                FullReference::Recorded(logits)
            } else {
                let model = native()?;
                full_cache = StrategySpec::new(StrategyKind::CONCAT).build::<B>(
                    &model.config,
                    1,
                    tokens.len(),
                    ctx.device,
                )?;
                FullReference::LockStep { model, cache: full_cache.as_mut() }
            };
            let label = match reference {
                FullReference::LockStep { .. } => "tokens (with concat in lock step)",
                _ => "tokens",
            };
            let bar = ctx.progress.sub_bar(tokens.len() as u64 - 1, label);
            let compared = streaming_against(
                ctx.model,
                cache.as_mut(),
                &tokens,
                reference,
                record.as_mut(),
                |i, _| bar.set_position(i as u64),
            )?;
            bar.finish_and_clear();
            if own {
                full.ppl = Some(compared.run.ppl);
            } else if let Some(r) = compared.reference {
                full.ppl.get_or_insert(r.ppl);
            }
            if record.as_ref().is_some_and(|r| !r.is_empty()) {
                full.logits = record;
            }
            (compared.run, Some(cache.memory()), Some(compared.divergence))
        }
        PplMode::Streaming => {
            let mut cache = ctx.cache(1, tokens.len())?;
            let bar = ctx.progress.sub_bar(tokens.len() as u64 - 1, "tokens");
            let r =
                streaming(ctx.model, cache.as_mut(), &tokens, |i, _| bar.set_position(i as u64))?;
            bar.finish_and_clear();
            if own {
                full.ppl = Some(r.ppl);
            }
            (r, Some(cache.memory()), None)
        }
        PplMode::Chunked => (chunked(ctx.model, &tokens, p.chunk.unwrap_or(512))?, None, None),
    };
    let full_ppl = match full.ppl {
        Some(ppl) => ppl,
        None => {
            let ppl = full_cache_perplexity(ctx, native()?, &tokens)?;
            full.ppl = Some(ppl);
            ppl
        }
    };
    let draws = perplexity_draws(ctx, &p, &tokens)?;
    Ok(Metrics {
        mode: p.mode.name().into(),
        chunk: p.chunk,
        corpus: p.corpus.clone(),
        tokens: result.predicted,
        mean_nll: Fixed(result.mean_nll),
        ppl: Sig6(result.ppl),
        // From the written (rounded) values, so a resumed run that reads the reference back from
        // the CSV computes the same delta.
        ppl_delta_pct: Sig6(delta_pct(Sig6(result.ppl).written(), Sig6(full_ppl).written())),
        kl_mean: divergence.map(|d| Sci6(d.kl_mean)),
        kl_p99: divergence.map(|d| Sci6(d.kl_p99)),
        kl_max: divergence.map(|d| Sci6(d.kl_max)),
        top1_agree_pct: divergence.map(|d| Sig6(d.top1_agree_pct)),
        kv_allocated_bytes: mem.map(|m| m.allocated_bytes),
        kv_live_bytes: mem.map(|m| m.live_bytes),
        draws: draws.as_ref().map(|d| d.ppl.len()),
        ppl_draw_mean: draws.as_ref().map(|d| Sig6(d.mean())),
        ppl_draw_sd_pct: draws.as_ref().map(|d| Sig6(d.sd_pct())),
    })
}

/// The perplexities of one run under each perturbation draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Draws {
    /// Per draw, seeds 1.. in order.
    pub ppl: Vec<f64>,
}

impl Draws {
    pub fn mean(&self) -> f64 {
        self.ppl.iter().sum::<f64>() / self.ppl.len().max(1) as f64
    }

    /// The sample standard deviation (n - 1), as a percent of the mean (0 for one draw).
    pub fn sd_pct(&self) -> f64 {
        let n = self.ppl.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.mean();
        let var = self.ppl.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        var.sqrt() / mean * 100.0
    }
}

/// Streaming perplexity under `draws` control-vector perturbations of the model (`None`
/// without draws): each draw a fresh cache of this run's strategy.
fn perplexity_draws<B: Backend>(
    ctx: &RunCtx<'_, B>,
    p: &PerplexityParams,
    tokens: &[u32],
) -> Result<Option<Draws>> {
    if p.draws == 0 || p.mode != PplMode::Streaming {
        return Ok(None);
    }
    let c = &ctx.model.config;
    let mut ppl = Vec::with_capacity(p.draws);
    for seed in 1..=p.draws as u64 {
        let control =
            ControlVector::noise(c.n_layers, c.hidden_size, seed, p.draw_scale, ctx.device);
        let model = ctx.model.clone().with_control(Some(control));
        let mut cache = ctx.cache(1, tokens.len())?;
        let bar = ctx.progress.sub_bar(tokens.len() as u64 - 1, "tokens (perturbed draw)");
        let r = streaming(&model, cache.as_mut(), tokens, |i, _| bar.set_position(i as u64))?;
        bar.finish_and_clear();
        ppl.push(r.ppl);
    }
    Ok(Some(Draws { ppl }))
}

/// The reference of `ppl_delta_pct` without divergence: the checkpoint's own head layout with
/// a full cache (`concat`), streaming the same tokens.
fn full_cache_perplexity<B: Backend>(
    ctx: &RunCtx<'_, B>,
    native: &Model<B>,
    tokens: &[u32],
) -> Result<f64> {
    let spec = StrategySpec::new(StrategyKind::CONCAT);
    let mut cache = spec.build::<B>(&native.config, 1, tokens.len(), ctx.device)?;
    let sub = ctx.progress.sub_bar(tokens.len() as u64 - 1, "tokens (reference: concat)");
    let r = streaming(native, cache.as_mut(), tokens, |i, _| sub.set_position(i as u64))?;
    sub.finish_and_clear();
    Ok(r.ppl)
}

/// `(ppl / reference - 1) · 100`, with -0 written as 0.
pub(crate) fn delta_pct(ppl: f64, reference: f64) -> f64 {
    let d = (ppl / reference - 1.0) * 100.0;
    if d.abs() < 5e-7 { 0.0 } else { d }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_give_their_mean_and_sample_deviation_in_percent() {
        let d = Draws { ppl: vec![9.0, 10.0, 11.0] };
        assert_eq!(d.mean(), 10.0);
        // Sample variance (1 + 0 + 1) / 2 = 1: one is 10% of the mean.
        assert!((d.sd_pct() - 10.0).abs() < 1e-12, "{}", d.sd_pct());
        assert_eq!(Draws { ppl: vec![7.0] }.sd_pct(), 0.0);
    }
}

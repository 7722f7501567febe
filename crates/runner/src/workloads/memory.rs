//! memory: fill the cache with `context` tokens and record what it holds, beside the formula
//! and the process's measured heap growth.

use anyhow::Result;
use burn::prelude::Backend;
use kvlab_model::generate::feed_pending;
use kvlab_strategies::KvLayout;
use kvlab_strategies::layout::F32_BYTES;

use super::{RunCtx, random_prompts, sync};
use crate::alloc_counter;

pub const COLUMNS: &[&str] = &[
    "kv_tokens",
    "kv_allocated_bytes",
    "kv_live_bytes",
    "kv_metadata_bytes",
    "formula_bytes",
    "bytes_per_token",
    "formula_bytes_per_token",
    "process_peak_bytes",
];

pub fn measure<B: Backend>(ctx: &RunCtx<'_, B>) -> Result<Vec<String>> {
    let run = ctx.run;
    let (batch, context) = (run.batch(), run.usize("context").unwrap_or(1));
    let config = &ctx.model.config;
    let prompts = random_prompts(ctx.experiment.seed(), batch, context, config.vocab_size);
    let baseline = alloc_counter::reset_peak();
    let mut cache = ctx.cache(batch, context)?;
    let _ = feed_pending(ctx.model, cache.as_mut(), &prompts, ctx.device)?;
    sync::<B>(ctx.device)?;
    let mem = cache.memory();
    let peak = alloc_counter::peak_bytes().saturating_sub(baseline);
    drop(cache);
    let layout = KvLayout::new(config, batch);
    let formula = layout.formula_bytes(context, F32_BYTES);
    let per_token = mem.allocated_bytes as f64 / (batch * context) as f64;
    Ok(vec![
        mem.tokens.to_string(),
        mem.allocated_bytes.to_string(),
        mem.live_bytes.to_string(),
        mem.metadata_bytes.to_string(),
        formula.to_string(),
        format!("{per_token:.1}"),
        (formula / (batch * context)).to_string(),
        if alloc_counter::installed() { peak.to_string() } else { String::new() },
    ])
}

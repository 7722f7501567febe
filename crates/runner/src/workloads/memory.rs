//! memory: fill the cache with `context` tokens and record what it holds, beside the formula
//! and what was measured:
//!
//! - `process_peak_bytes`: the counting global allocator's peak heap growth while the cache was
//!   built and filled (host memory; on the CPU backends that is where tensors live). Empty when
//!   the counting allocator is not installed (library tests).
//! - `device_bytes_in_use`: on a backend with a device allocator (cuda, wgpu: cubecl's memory
//!   manager), its live bytes with the filled cache held, minus its live bytes before the cache
//!   was built, so the cache's device footprint as the allocator sees it.
//! - `device_bytes_reserved`: the device allocator's total reserved bytes (its pools: weights,
//!   cache and free pages) with the filled cache held; absolute, not a difference, since pools
//!   are kept across runs.
//!
//! Both device columns are empty on the CPU backends (flex, ndarray): they have no device
//! allocator, and the process heap is already `process_peak_bytes`.

use anyhow::Result;
use burn::prelude::Backend;
use kvlab_model::generate::feed_pending;
use kvlab_strategies::KvLayout;
use kvlab_strategies::layout::F32_BYTES;

use super::{RunCtx, random_prompts, sync};
use crate::alloc_counter;
use crate::backend::device_memory;

pub const COLUMNS: &[&str] = &[
    "kv_tokens",
    "kv_allocated_bytes",
    "kv_live_bytes",
    "kv_metadata_bytes",
    "formula_bytes",
    "bytes_per_token",
    "formula_bytes_per_token",
    "process_peak_bytes",
    "device_bytes_in_use",
    "device_bytes_reserved",
];

pub fn measure<B: Backend>(ctx: &RunCtx<'_, B>) -> Result<Vec<String>> {
    let run = ctx.run;
    let (batch, context) = (run.batch(), run.usize("context").unwrap_or(1));
    let config = &ctx.model.config;
    let prompts = random_prompts(ctx.experiment.seed(), batch, context, config.vocab_size);
    sync::<B>(ctx.device)?;
    let device_before = device_memory::<B>(ctx.device);
    let baseline = alloc_counter::reset_peak();
    let mut cache = ctx.cache(batch, context)?;
    let _ = feed_pending(ctx.model, cache.as_mut(), &prompts, ctx.device)?;
    sync::<B>(ctx.device)?;
    let mem = cache.memory();
    let peak = alloc_counter::peak_bytes().saturating_sub(baseline);
    let device_held = device_memory::<B>(ctx.device);
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
        match (device_before, device_held) {
            (Some(before), Some(held)) => held.in_use.saturating_sub(before.in_use).to_string(),
            _ => String::new(),
        },
        device_held.map(|held| held.reserved.to_string()).unwrap_or_default(),
    ])
}

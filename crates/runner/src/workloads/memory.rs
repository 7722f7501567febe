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
use serde::{Deserialize, Serialize};

use super::{RunCtx, random_prompts, sync};
use crate::alloc_counter;
use crate::backend::device_memory;
use crate::rows::Fixed;

/// One memory run: the cache's accounting beside the formula, and what was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub kv_tokens: usize,
    pub kv_allocated_bytes: usize,
    pub kv_live_bytes: usize,
    pub kv_metadata_bytes: usize,
    /// The article's formula with every layer holding the whole context.
    pub formula_bytes: usize,
    /// The formula summed over layers as the model's own cache plan holds them: a local
    /// (sliding-window) layer `min(context, W)` tokens, a global one the context
    /// (`ModelConfig::kv_bytes_planned`; equal to `formula_bytes` on a model without local
    /// layers).
    pub plan_formula_bytes: usize,
    /// Allocated bytes per token of the batch's context.
    pub bytes_per_token: Fixed<1>,
    pub formula_bytes_per_token: usize,
    /// Heap bytes the run's allocations peaked at (absent without the counting allocator).
    pub process_peak_bytes: Option<usize>,
    /// The device allocator's bytes in use held by the cache (cubecl backends only).
    pub device_bytes_in_use: Option<u64>,
    pub device_bytes_reserved: Option<u64>,
}
crate::metrics_row!(Metrics);

pub fn measure<B: Backend>(ctx: &RunCtx<'_, B>) -> Result<Metrics> {
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
    Ok(Metrics {
        kv_tokens: mem.tokens,
        kv_allocated_bytes: mem.allocated_bytes,
        kv_live_bytes: mem.live_bytes,
        kv_metadata_bytes: mem.metadata_bytes,
        formula_bytes: formula,
        plan_formula_bytes: config.kv_bytes_planned(context, batch, F32_BYTES),
        bytes_per_token: Fixed(per_token),
        formula_bytes_per_token: formula / (batch * context),
        process_peak_bytes: alloc_counter::installed().then_some(peak),
        device_bytes_in_use: match (device_before, device_held) {
            (Some(before), Some(held)) => Some(held.in_use.saturating_sub(before.in_use)),
            _ => None,
        },
        device_bytes_reserved: device_held.map(|held| held.reserved),
    })
}

//! walkthrough: the article's demonstration (sections 1 and 6). Generate from a short prompt
//! for a few steps, printing per step what the model is fed and what the cache holds, then the
//! analytic KV bytes. The runner checks every strategy generates the same tokens.

use anyhow::{Result, bail};
use burn::prelude::Backend;
use kvlab_model::generate::{argmax, feed_pending};
use kvlab_strategies::KvLayout;
use kvlab_strategies::layout::F32_BYTES;
use serde::{Deserialize, Serialize};

use super::{RunCtx, random_prompts};

/// One walkthrough run: what it generated and what its cache held at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub prompt_tokens: usize,
    pub steps: usize,
    /// The greedy tokens, space-separated: every strategy must generate the same.
    pub generated: String,
    pub kv_tokens: usize,
    pub kv_live_bytes: usize,
    pub formula_bytes: usize,
}
crate::metrics_row!(Metrics);

fn shape(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

/// Runs the walkthrough for one strategy; returns the printed lines and the row.
pub fn measure<B: Backend>(ctx: &RunCtx<'_, B>) -> Result<(Vec<String>, Metrics)> {
    let p = ctx
        .experiment
        .file
        .workload
        .walkthrough
        .clone()
        .unwrap_or(crate::experiment::WalkthroughParams { prompt_tokens: 10, steps: 4 });
    let config = &ctx.model.config;
    let batch = ctx.run.batch();
    let mut seqs = random_prompts(ctx.experiment.seed(), batch, p.prompt_tokens, config.vocab_size);
    let mut cache = ctx.cache(batch, p.prompt_tokens + p.steps)?;
    let mut out = vec![format!("== walkthrough: {} ==", ctx.run.label())];
    out.push(format!("prompt {}: {:?}", shape(&[batch, p.prompt_tokens]), seqs[0]));
    let mut generated = vec![];
    for step in 0..p.steps {
        let (logits, input) = feed_pending(ctx.model, cache.as_mut(), &seqs, ctx.device)?;
        let [b, vocab] = logits.dims();
        let host: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("logits to host: {e:?}"))?;
        let chosen: Vec<u32> = host.chunks(vocab).take(b).map(argmax).collect();
        let stored = match cache.stored_shape(0) {
            Some(s) => format!("cache k/v {} per layer", shape(&s)),
            None => format!("no cache (recomputes all {} tokens)", input[1]),
        };
        out.push(format!(
            "step {step}: input {:<8} {stored}  -> next token {}",
            shape(&input),
            chosen[0]
        ));
        for (row, &t) in seqs.iter_mut().zip(&chosen) {
            row.push(t);
        }
        generated.push(chosen[0]);
    }
    let mem = cache.memory();
    // The tokens a full cache holds after the last step: all but the last chosen one.
    let held = p.prompt_tokens + p.steps - 1;
    let layout = KvLayout::new(config, batch);
    let per_token = layout.formula_bytes(1, F32_BYTES) / batch;
    let formula = layout.formula_bytes(held, F32_BYTES);
    out.push(format!(
        "KV bytes per token = 2 · n_kv_heads {} · head_dim {} · layers {} · {F32_BYTES} bytes = \
         {per_token} bytes",
        config.n_kv_heads, config.head_dim, config.n_layers
    ));
    out.push(format!(
        "KV bytes at L = {held}: 2 · L {held} · batch {batch} · {} · {} · {} · {F32_BYTES} = \
         {formula} bytes; this cache holds {} tokens in {} live bytes",
        config.n_kv_heads, config.head_dim, config.n_layers, mem.tokens, mem.live_bytes
    ));
    out.push(format!("generated: {generated:?}"));
    let row = Metrics {
        prompt_tokens: p.prompt_tokens,
        steps: p.steps,
        generated: generated.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        kv_tokens: mem.tokens,
        kv_live_bytes: mem.live_bytes,
        formula_bytes: formula,
    };
    Ok((out, row))
}

/// Fails unless every strategy generated `reference`'s tokens.
pub(crate) fn check_same(reference: &(String, String), label: &str, generated: &str) -> Result<()> {
    if reference.1 != generated {
        bail!(
            "walkthrough: '{label}' generated [{generated}] but '{}' generated [{}]: the cache \
             changes the model's output",
            reference.0,
            reference.1
        );
    }
    Ok(())
}

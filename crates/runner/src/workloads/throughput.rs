//! throughput: prefill `context` tokens then decode `decode_tokens`, timed per step with the
//! device synced inside every timed region; the median over repeats after a warm-up.

use std::time::Instant;

use anyhow::Result;
use burn::prelude::Backend;
use kvlab_model::generate::{Sampling, generate};
use serde::{Deserialize, Serialize};

use super::{RunCtx, random_prompts, sync};
use crate::rows::Fixed;

/// One throughput run: the median prefill and decode rates of the timed repeats, the decode
/// step's percentiles over every timed step, and the very first decode step (of the first
/// repeat, warm-up or not): what a run without warm-up would pay for kernel compilation on
/// backends that compile per shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub decode_tokens: usize,
    pub repeats: usize,
    pub prefill_tok_per_s: Fixed<1>,
    pub decode_tok_per_s: Fixed<1>,
    pub ms_per_token_p50: Fixed<3>,
    pub ms_per_token_p90: Fixed<3>,
    /// Attention's key bucket in effect (the `key_bucket` axis, else the backend's default).
    pub key_bucket_used: usize,
    pub first_step_ms: Fixed<3>,
}
crate::metrics_row!(Metrics);

pub fn measure<B: Backend>(ctx: &RunCtx<'_, B>) -> Result<Metrics> {
    let p = ctx.experiment.file.workload.throughput.clone().unwrap_or(
        crate::experiment::ThroughputParams { decode_tokens: 16, repeats: 3, warmup: 1 },
    );
    let (batch, context) = (ctx.run.batch(), ctx.run.usize("context").unwrap_or(1));
    let prompts =
        random_prompts(ctx.experiment.seed(), batch, context, ctx.model.config.vocab_size);
    let mut prefill_s = vec![];
    let mut decode_s = vec![];
    let mut step_ms = vec![];
    let mut first_step_ms = None;
    for rep in 0..p.warmup + p.repeats {
        let mut cache = ctx.cache(batch, context + p.decode_tokens)?;
        sync::<B>(ctx.device)?;
        let mut marks = Vec::with_capacity(p.decode_tokens + 1);
        let start = Instant::now();
        generate(
            ctx.model,
            cache.as_mut(),
            &prompts,
            p.decode_tokens + 1,
            &Sampling::Greedy,
            |_| {
                // The logits were read to the host to choose the token; sync anyway so the mark
                // closes every queued kernel on asynchronous backends.
                let _ = B::sync(ctx.device);
                marks.push(Instant::now());
            },
        )?;
        if let Some(w) = marks.get(..2) {
            first_step_ms.get_or_insert((w[1] - w[0]).as_secs_f64() * 1e3);
        }
        if rep < p.warmup {
            continue;
        }
        prefill_s.push((marks[0] - start).as_secs_f64());
        decode_s.push((marks[marks.len() - 1] - marks[0]).as_secs_f64());
        step_ms.extend(marks.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3));
    }
    let prefill = median(&mut prefill_s);
    let decode = median(&mut decode_s);
    Ok(Metrics {
        decode_tokens: p.decode_tokens,
        repeats: p.repeats,
        prefill_tok_per_s: Fixed((batch * context) as f64 / prefill),
        decode_tok_per_s: Fixed((batch * p.decode_tokens) as f64 / decode),
        ms_per_token_p50: Fixed(percentile(&mut step_ms, 0.5)),
        ms_per_token_p90: Fixed(percentile(&mut step_ms, 0.9)),
        key_bucket_used: ctx.model.key_bucket(),
        first_step_ms: Fixed(first_step_ms.unwrap_or(f64::NAN)),
    })
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

/// Nearest-rank percentile (`q` in 0..=1) of a non-empty slice.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 0.5), 3.0);
        assert_eq!(percentile(&mut v, 0.9), 5.0);
        assert_eq!(percentile(&mut [7.0], 0.9), 7.0);
    }
}

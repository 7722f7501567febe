//! Validation of `[workload.perplexity]`: tokens, corpus, the chunk of chunked mode, and the
//! perturbation draws of streaming mode.

use super::schema::{PerplexityParams, PplMode};

/// The most perturbation draws a run may ask for: a spread needs a handful, and each draw costs a
/// whole streaming pass.
const MAX_DRAWS: usize = 100;

/// The perplexity workload's keys, each error naming the key and value.
pub(super) fn check_perplexity(p: &PerplexityParams, err: &mut impl FnMut(String)) {
    if p.tokens < 2 {
        err(format!("workload.perplexity.tokens = {}: expected an integer ≥ 2", p.tokens));
    }
    if let Err(why) = super::schema::check_corpus(&p.corpus) {
        err(format!("workload.perplexity.corpus = {:?}: {why}", p.corpus));
    }
    match (p.mode, p.chunk) {
        (PplMode::Chunked, None) => {
            err("workload.perplexity.chunk: required by mode = \"chunked\"".into())
        }
        (PplMode::Chunked, Some(c)) if c < 2 => {
            err(format!("workload.perplexity.chunk = {c}: expected an integer ≥ 2"))
        }
        (PplMode::Streaming, Some(_)) => {
            err("workload.perplexity.chunk: only read by mode = \"chunked\" (mode is streaming)"
                .into())
        }
        _ => {}
    }
    if p.draws > MAX_DRAWS {
        err(format!(
            "workload.perplexity.draws = {}: at most {MAX_DRAWS} (each draw is one more \
             streaming pass)",
            p.draws
        ));
    }
    if p.draws > 0 && p.mode != PplMode::Streaming {
        err(format!("workload.perplexity.draws = {}: only read by mode = \"streaming\"", p.draws));
    }
    if !(p.draw_scale.is_finite() && p.draw_scale > 0.0) {
        err(format!("workload.perplexity.draw_scale = {}: expected a number > 0", p.draw_scale));
    }
}

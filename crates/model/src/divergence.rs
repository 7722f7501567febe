//! How far a strategy's next-token distributions are from the full cache's, step by step:
//! KL(full ‖ strategy) and whether the two argmaxes agree (llama.cpp's `--kl-divergence`
//! statistics). Perplexity averages every token's loss; a cache that forgets the one fact a
//! token needs can keep a good perplexity and still change what the model says.
//!
//! Computed on the host in f64 from the two logit rows: a lossless cache's logits differ from
//! the full cache's in the last bits of f32, and KL of order 1e-9 must not drown in f32 rounding
//! of a 49,152-term sum.

use serde::Serialize;

/// `log softmax(logits)` in f64.
pub(crate) fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&x| x as f64 - log_sum).collect()
}

/// `KL(p ‖ q) = Σ_i p_i (log p_i − log q_i)`, in nats, from logits. Clamped at 0 (a sum of
/// rounded terms of two near-equal distributions can land a hair below).
pub(crate) fn kl_divergence(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    assert_eq!(p_logits.len(), q_logits.len(), "KL of distributions over different vocabularies");
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter().zip(&lq).map(|(&a, &b)| a.exp() * (a - b)).sum::<f64>().max(0.0)
}

/// The index of the largest logit (the first of equals, as a greedy decoder picks).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best
}

/// The summary over every predicted token of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Divergence {
    pub kl_mean: f64,
    /// The 99th percentile (nearest rank) of the per-token KL.
    pub kl_p99: f64,
    pub kl_max: f64,
    /// Percent of tokens where both runs' argmax is the same token.
    pub top1_agree_pct: f64,
    pub tokens: usize,
}

/// Per-token KL and top-1 agreement, accumulated step by step.
#[derive(Debug, Clone, Default)]
pub(crate) struct DivergenceStats {
    kl: Vec<f64>,
    agree: usize,
}

impl DivergenceStats {
    /// One step: the full cache's logits and the strategy's, over the same vocabulary.
    pub fn push(&mut self, full: &[f32], strategy: &[f32]) {
        self.kl.push(kl_divergence(full, strategy));
        self.agree += usize::from(argmax(full) == argmax(strategy));
    }

    /// A step where the strategy *is* the reference: KL 0, agreement by definition.
    pub(crate) fn push_identical(&mut self) {
        self.kl.push(0.0);
        self.agree += 1;
    }

    pub fn summary(&self) -> Divergence {
        let n = self.kl.len();
        if n == 0 {
            return Divergence {
                kl_mean: 0.0,
                kl_p99: 0.0,
                kl_max: 0.0,
                top1_agree_pct: 100.0,
                tokens: 0,
            };
        }
        let mut sorted = self.kl.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = (0.99 * n as f64).ceil() as usize;
        Divergence {
            kl_mean: self.kl.iter().sum::<f64>() / n as f64,
            kl_p99: sorted[rank.clamp(1, n) - 1],
            kl_max: sorted[n - 1],
            top1_agree_pct: 100.0 * self.agree as f64 / n as f64,
            tokens: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_of_a_three_token_vocabulary_matches_the_hand_computation() {
        // p = softmax(ln 1, ln 2, ln 1) = (1/4, 1/2, 1/4); q = softmax(0, 0, 0) = (1/3, 1/3, 1/3).
        // KL(p‖q) = 1/4 ln(3/4) + 1/2 ln(3/2) + 1/4 ln(3/4) = 1/2 ln(3/4) + 1/2 ln(3/2)
        //         = 1/2 ln(9/8).
        let p = [0.0, 2f32.ln(), 0.0];
        let q = [5.0, 5.0, 5.0]; // a shift of every logit changes nothing
        let want = 0.5 * (9.0f64 / 8.0).ln();
        assert!((kl_divergence(&p, &q) - want).abs() < 1e-7, "{}", kl_divergence(&p, &q));
        // KL is not symmetric: KL(q‖p) = 1/3 ln(4/3) + 1/3 ln(2/3) + 1/3 ln(4/3).
        let back = 2.0 / 3.0 * (4.0f64 / 3.0).ln() + 1.0 / 3.0 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence(&q, &p) - back).abs() < 1e-7);
        assert_eq!(kl_divergence(&p, &p), 0.0);
    }

    #[test]
    fn agreement_counts_equal_argmaxes_and_the_summary_ranks_kl() {
        let mut s = DivergenceStats::default();
        s.push(&[0.0, 1.0, 0.0], &[0.0, 1.0, 0.5]); // agree
        s.push(&[0.0, 1.0, 0.0], &[2.0, 1.0, 0.0]); // disagree
        s.push_identical();
        s.push(&[3.0, 3.0, 0.0], &[3.0, 3.0, 0.0]); // a tie: both pick the first
        let d = s.summary();
        assert_eq!(d.tokens, 4);
        assert_eq!(d.top1_agree_pct, 75.0);
        let worst = kl_divergence(&[0.0, 1.0, 0.0], &[2.0, 1.0, 0.0]);
        assert_eq!(d.kl_max, worst);
        assert_eq!(d.kl_p99, worst, "nearest rank: the 99th percentile of 4 values is the 4th");
        assert!(d.kl_mean > 0.0 && d.kl_mean < worst);
    }
}

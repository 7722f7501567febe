//! Per-request latency, as vLLM's serving benchmark reports it: time to first token (TTFT,
//! arrival to the end of the iteration that produced the first token) and time per output
//! token (TPOT, first token to last token over the tokens after the first), each as p50, p90
//! and p99 over the requests that finished.
//!
//! Both are kept in scheduler iterations (deterministic) and, when the run has a clock (a
//! cost model, or executed batches timed), in seconds. A preempted request keeps its first
//! token's time; the stall it suffers shows in its TPOT.

use std::collections::HashMap;

use serde::Serialize;

/// p50, p90 and p99 of a sample, by linear interpolation between order statistics (numpy's
/// default, which vLLM's benchmark uses). All `None` for an empty sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let last = values.len().checked_sub(1)?;
            let x = q * last as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            Some(values[lo] + (values[hi] - values[lo]) * (x - lo as f64))
        };
        Self { p50: at(0.5), p90: at(0.9), p99: at(0.99) }
    }
}

/// What the run measured of latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub ttft_iter: Percentiles,
    pub tpot_iter: Percentiles,
    /// Empty without a clock.
    pub ttft_s: Percentiles,
    pub tpot_s: Percentiles,
}

/// An instant on both clocks: the iteration, and seconds when the run keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Instant {
    pub iteration: u64,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    queued: Instant,
    first: Option<Instant>,
}

/// Collects each request's instants as the scheduler passes them.
#[derive(Debug, Default)]
pub(crate) struct LatencyBook {
    open: HashMap<u64, Record>,
    ttft: Vec<(f64, Option<f64>)>,
    tpot: Vec<(f64, Option<f64>)>,
}

impl LatencyBook {
    /// `id` joined the queue at the start of `at`.
    pub(crate) fn arrived(&mut self, id: u64, at: Instant) {
        self.open.insert(id, Record { queued: at, first: None });
    }

    /// `id` produced a token in the iteration that ended at `at` (the first one counts).
    pub(crate) fn produced(&mut self, id: u64, at: Instant) {
        if let Some(r) = self.open.get_mut(&id)
            && r.first.is_none()
        {
            r.first = Some(at);
            // Iterations are counted inclusively: a request admitted on arrival waits one.
            let iters = (at.iteration + 1 - r.queued.iteration) as f64;
            let secs = at.seconds.zip(r.queued.seconds).map(|(b, a)| b - a);
            self.ttft.push((iters, secs));
        }
    }

    /// `id` produced its last (`output_tokens`-th) token in the iteration that ended at `at`.
    pub(crate) fn finished(&mut self, id: u64, at: Instant, output_tokens: usize) {
        let Some(r) = self.open.remove(&id) else { return };
        let (Some(first), Some(after)) = (r.first, output_tokens.checked_sub(1)) else { return };
        if after == 0 {
            return; // one token: no time per output token
        }
        let iters = (at.iteration - first.iteration) as f64 / after as f64;
        let secs = at.seconds.zip(first.seconds).map(|(b, a)| (b - a) / after as f64);
        self.tpot.push((iters, secs));
    }

    pub(crate) fn summary(&self) -> Latency {
        let split = |v: &[(f64, Option<f64>)]| {
            let iters = Percentiles::of(v.iter().map(|x| x.0).collect());
            let secs: Option<Vec<f64>> = v.iter().map(|x| x.1).collect();
            (iters, secs.filter(|s| !s.is_empty()).map(Percentiles::of).unwrap_or_default())
        };
        let (ttft_iter, ttft_s) = split(&self.ttft);
        let (tpot_iter, tpot_s) = split(&self.tpot);
        Latency { ttft_iter, tpot_iter, ttft_s, tpot_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = [2.5, 3.7, 3.97]
        let p = Percentiles::of(vec![4.0, 1.0, 3.0, 2.0]);
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(p.p50, 2.5) && close(p.p90, 3.7) && close(p.p99, 3.97), "{p:?}");
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        assert_eq!(Percentiles::of(vec![7.0]).p99, Some(7.0));
    }

    #[test]
    fn ttft_and_tpot_from_instants() {
        let at = |iteration, s| Instant { iteration, seconds: Some(s) };
        let mut book = LatencyBook::default();
        book.arrived(1, at(10, 1.0));
        book.produced(1, at(12, 1.5)); // third iteration since queued
        book.produced(1, at(13, 1.6)); // not the first: ignored
        book.finished(1, at(16, 2.3), 5); // 4 tokens after the first over 4 iterations
        book.arrived(2, at(11, 1.2));
        book.produced(2, at(11, 1.4));
        book.finished(2, at(11, 1.4), 1); // a single token: no TPOT
        let l = book.summary();
        assert_eq!((l.ttft_iter.p50, l.tpot_iter.p50), (Some(2.0), Some(1.0)));
        assert!((l.ttft_s.p99.unwrap() - 0.497).abs() < 1e-9, "{:?}", l.ttft_s);
        assert!((l.tpot_s.p50.unwrap() - 0.2).abs() < 1e-9);
        let mut no_clock = LatencyBook::default();
        no_clock.arrived(1, Instant { iteration: 0, seconds: None });
        no_clock.produced(1, Instant { iteration: 0, seconds: None });
        assert_eq!(no_clock.summary().ttft_s, Percentiles::default());
    }
}

//! `snapkv` (Li et al., 2024, "SnapKV: LLM Knows What You are Looking for Before Generation")
//! and `pyramidkv` (Cai et al., 2024, "PyramidKV: Dynamic KV Cache Compression based on
//! Pyramidal Information Funneling").
//!
//! The prompt is prefilled whole; at its end, each KV head scores the prompt's keys by the
//! attention the last `window` prompt queries pay them (summed over those queries and the
//! group's query heads), smooths the scores with a 1-D max-pool of width `kernel` (so a kept
//! key brings its neighbours), and keeps the top `budget - window` keys plus the window itself.
//! Decoding then appends as usual: the budget bounds the prompt, as in the papers.
//!
//! PyramidKV is the same rule with per-layer budgets falling linearly from the first layer to the
//! last (lower layers attend broadly, upper ones to few tokens), summing to SnapKV's total.

use super::policy::{KeepPolicy, Scope, Shown};
use super::table::SlotTable;
use crate::entry::{CACHE_TOKENS, Entry, Holds, Param};
use crate::error::{SpecError, invalid};
use crate::spec::StrategySpec;

pub(crate) const ENTRY: Entry = Entry {
    name: "snapkv",
    summary: "cut the prompt by its last queries' pooled attention (SnapKV, 2024)",
    parameters: &PARAMETERS,
    check: window_fits,
    holds: Holds::Policy(|a| {
        let s = a.spec;
        Box::new(SnapKv::uniform(a.layers, a.budget(), s.snap_window(), s.snap_kernel()))
    }),
};

/// SnapKV's and PyramidKV's: the prompt's budget, the observation window, the pool's width.
pub(crate) const PARAMETERS: [Param; 3] = [
    CACHE_TOKENS,
    Param { key: "window", get: |s| s.window, default: Some("32"), min: 1 },
    Param { key: "kernel", get: |s| s.kernel, default: Some("5"), min: 1 },
];

/// The window leaves room to select, and the pool is centred on each key.
pub(crate) fn window_fits(spec: &StrategySpec) -> Result<(), SpecError> {
    let (w, k) = (spec.snap_window(), spec.snap_kernel());
    if let Some(c) = spec.cache_tokens
        && w >= c
    {
        return Err(invalid(
            "window",
            w,
            format!("must be in 1..cache_tokens = {c} (room is needed to select)"),
        ));
    }
    if k % 2 == 0 {
        return Err(invalid("kernel", k, "must be odd (a pool centred on each key)"));
    }
    Ok(())
}

/// PyramidKV's last layer selects `1 / PYRAMID_BETA` of the mean selected budget
/// (KVCache-Factory's `beta = 20`).
pub(crate) const PYRAMID_BETA: usize = 20;

#[derive(Debug)]
pub struct SnapKv {
    window: usize,
    kernel: usize,
    /// Per layer: the tokens a region keeps once the prompt is cut, window included.
    budgets: Vec<usize>,
    /// The prompt length below which nothing is cut (SnapKV's `cache_tokens`).
    cache_tokens: usize,
    /// Per layer: the slots each region keeps, chosen by this forward's attention.
    chosen: Vec<Option<Vec<Vec<usize>>>>,
}

impl SnapKv {
    /// SnapKV: every layer keeps `cache_tokens`.
    pub fn uniform(layers: usize, cache_tokens: usize, window: usize, kernel: usize) -> Self {
        Self::with_budgets(vec![cache_tokens; layers], cache_tokens, window, kernel)
    }

    /// PyramidKV: per-layer budgets from [`pyramid_budgets`].
    pub fn pyramid(layers: usize, cache_tokens: usize, window: usize, kernel: usize) -> Self {
        let budgets = pyramid_budgets(layers, cache_tokens, window);
        Self::with_budgets(budgets, cache_tokens, window, kernel)
    }

    fn with_budgets(
        budgets: Vec<usize>,
        cache_tokens: usize,
        window: usize,
        kernel: usize,
    ) -> Self {
        let layers = budgets.len();
        Self { window, kernel, budgets, cache_tokens, chosen: vec![None; layers] }
    }

    pub fn budgets(&self) -> &[usize] {
        &self.budgets
    }
}

/// Per-layer budgets (window included) whose selected parts `budget - window` fall linearly from
/// `2m - m/β` at the first layer to `m/β` at the last, `m = cache_tokens - window`, rounded so
/// that they sum to exactly `layers · m` (largest remainders first).
pub fn pyramid_budgets(layers: usize, cache_tokens: usize, window: usize) -> Vec<usize> {
    // Validation keeps window < cache_tokens; saturate for a policy built to be asked only.
    let m = cache_tokens.saturating_sub(window);
    if layers < 2 {
        return vec![cache_tokens; layers];
    }
    let min = (m / PYRAMID_BETA) as f64;
    let max = 2.0 * m as f64 - min;
    let ideal: Vec<f64> =
        (0..layers).map(|l| max - (max - min) * l as f64 / (layers - 1) as f64).collect();
    let mut sel: Vec<usize> = ideal.iter().map(|x| x.floor() as usize).collect();
    let mut short = layers * m - sel.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..layers).collect();
    order.sort_by(|&a, &b| (ideal[b] - ideal[b].floor()).total_cmp(&(ideal[a] - ideal[a].floor())));
    for &l in order.iter().cycle() {
        if short == 0 {
            break;
        }
        sel[l] += 1;
        short -= 1;
    }
    sel.into_iter().map(|s| s + window).collect()
}

/// `x` max-pooled with a window of `kernel` (odd) centred on each element, edges clipped (the
/// same as PyTorch's `max_pool1d` with `padding = kernel / 2`, stride 1).
pub(crate) fn max_pool(x: &[f32], kernel: usize) -> Vec<f32> {
    let half = kernel / 2;
    (0..x.len())
        .map(|i| {
            let window = &x[i.saturating_sub(half)..(i + half + 1).min(x.len())];
            window.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        })
        .collect()
}

/// The prompt indices SnapKV keeps out of `n`: the `budget - window` best pooled scores of the
/// first `n - window` keys (ties to the earlier key), ascending, then the window.
pub(crate) fn snap_select(
    scores: &[f32],
    n: usize,
    budget: usize,
    window: usize,
    kernel: usize,
) -> Vec<usize> {
    let prefix = n - window;
    let pooled = max_pool(&scores[..prefix], kernel);
    let mut order: Vec<usize> = (0..prefix).collect();
    order.sort_by(|&a, &b| pooled[b].total_cmp(&pooled[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = order.into_iter().take(budget - window).collect();
    kept.sort_unstable();
    kept.extend(prefix..n);
    kept
}

impl KeepPolicy for SnapKv {
    fn scope(&self) -> Scope {
        Scope::Prompt
    }

    /// Only the prefill (the first forward) of a prompt longer than the budget.
    fn observes(&self, seen: usize, new_tokens: usize) -> bool {
        seen == 0 && new_tokens > self.cache_tokens
    }

    fn observed_queries(&self, new_tokens: usize) -> std::ops::Range<usize> {
        new_tokens.saturating_sub(self.window)..new_tokens
    }

    fn observe(&mut self, layer: usize, shown: &Shown, table: &SlotTable) {
        let (n, budget) = (shown.keys, self.budgets[layer]);
        if n <= budget || n <= self.window {
            return;
        }
        let mut chosen = Vec::with_capacity(shown.batch * shown.kv_heads);
        for row in 0..shown.batch {
            for g in 0..shown.kv_heads {
                let region = table.region(layer, row, g);
                // The last `window` queries shown (all of them, when the cache sliced them).
                let queries = shown.queries.saturating_sub(self.window)..shown.queries;
                let scores = shown.group_sum(row, g, queries);
                let live = table.live(region);
                chosen.push(
                    snap_select(&scores, n, budget, self.window, self.kernel)
                        .into_iter()
                        .map(|j| live[j])
                        .collect(),
                );
            }
        }
        self.chosen[layer] = Some(chosen);
    }

    fn compressed(&mut self, layer: usize) -> Option<Vec<Vec<usize>>> {
        self.chosen[layer].take()
    }

    fn reset(&mut self) {
        self.chosen.iter_mut().for_each(|c| *c = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_budgets_fall_linearly_and_sum_to_snapkv_total() {
        let b = pyramid_budgets(30, 256, 32);
        assert_eq!(b.iter().sum::<usize>(), 30 * 256);
        assert!(b.windows(2).all(|w| w[0] >= w[1]), "{b:?}");
        // m = 224: the last layer selects m / 20 = 11, the first 2m - 11 = 437.
        assert_eq!((b[0], b[29]), (437 + 32, 11 + 32));
    }

    #[test]
    fn max_pool_spreads_a_peak_to_its_neighbours() {
        assert_eq!(max_pool(&[0., 0., 5., 0., 0., 1.], 3), vec![0., 5., 5., 5., 1., 1.]);
        assert_eq!(max_pool(&[2., 1.], 1), vec![2., 1.]);
    }

    #[test]
    fn snap_select_keeps_the_attended_neighbourhood_and_the_window() {
        // 10 tokens, window 2, budget 5: 3 selected from the first 8 by pooled score.
        let scores = [0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.3, 0.1];
        assert_eq!(snap_select(&scores, 10, 5, 2, 3), vec![4, 5, 6, 8, 9]);
        // Without pooling the ties after the peak go to the earliest keys.
        assert_eq!(snap_select(&scores, 10, 5, 2, 1), vec![0, 1, 5, 8, 9]);
    }
}

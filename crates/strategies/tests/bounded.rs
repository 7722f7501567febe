//! Bounded strategies against an independent reference: naive attention over exactly the
//! tokens a strategy claims to keep, at the positions it claims, at every step.
//!
//! The reference keeps every key unrotated, picks the kept tokens by rule (the last `W` for a
//! window; the first `S` plus the last `C - S` for sinks), and rotates them at the claimed
//! positions (original positions for windows, in-cache slots for sinks). It shares no code with
//! the slot stores the strategies use.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{
    AttentionMask, CacheError, KvCache, KvMemory, KvView, Model, NoCache, RotaryEncoding,
};
use kvlab_strategies::{StrategyKind, StrategySpec};

mod common;
use common::{B, append, assert_close, prompts, run, toy_model};

#[derive(Clone, Copy, Debug)]
enum Rule {
    /// The last `w` tokens at their original positions.
    Window(usize),
    /// The first `s` and the last `c - s` tokens, at positions `0..kept` in that order.
    Sink { c: usize, s: usize },
}

struct Reference {
    rule: Rule,
    batch: usize,
    /// Per layer, every key (unrotated) and value seen: `[batch, n_kv, seen, head_dim]`.
    history: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    seen: usize,
}

impl Reference {
    fn budget(&self) -> usize {
        match self.rule {
            Rule::Window(w) => w,
            Rule::Sink { c, .. } => c,
        }
    }

    /// Kept token indices (in the order given positions `start..`) once `n` tokens are seen.
    fn kept(&self, n: usize) -> (Vec<usize>, usize) {
        match self.rule {
            _ if n <= self.budget() => ((0..n).collect(), 0),
            Rule::Window(w) => ((n - w..n).collect(), n - w),
            Rule::Sink { c, s } => ((0..s).chain(n - (c - s)..n).collect(), 0),
        }
    }
}

impl KvCache<B> for Reference {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.seen..total
    }
    fn max_step_tokens(&self) -> usize {
        self.budget().saturating_sub(self.seen).max(1)
    }
    fn query_start(&self) -> Vec<usize> {
        let p = match self.rule {
            Rule::Sink { c, .. } if self.seen >= c => c - 1,
            _ => self.seen,
        };
        vec![p; self.batch]
    }
    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        _rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        append(&mut self.history[layer], k, v);
        Ok(())
    }
    fn view(
        &self,
        layer: usize,
        t: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (k, v) = self.history[layer].clone().expect("written before viewed");
        let (kept, start) = self.kept(self.seen + t);
        let idx: Vec<i64> = kept.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [kept.len()]), &k.device());
        let k = rope.apply(k.select(2, idx.clone()), &[start]);
        Ok(KvView::dense(k, v.select(2, idx), AttentionMask::CausalEnd))
    }
    fn commit(&mut self, new_tokens: usize) {
        self.seen += new_tokens;
    }
    fn reset(&mut self) {
        self.history.iter_mut().for_each(|h| *h = None);
        self.seen = 0;
    }
    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }
    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        None
    }
}

/// Every step's logits of a greedy run.
fn step_logits(
    model: &Model<B>,
    cache: &mut dyn KvCache<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> Vec<Vec<f32>> {
    run(model, cache, prompts, steps).1
}

fn spec(kind: StrategyKind, cache_tokens: usize, sink_tokens: Option<usize>) -> StrategySpec {
    StrategySpec { cache_tokens: Some(cache_tokens), sink_tokens, ..StrategySpec::new(kind) }
}

#[test]
fn past_their_budget_bounded_strategies_equal_the_reference() {
    let (batch, prompt, steps) = (2, 5, 27);
    for kv_heads in [4, 2, 1] {
        let (config, model) = toy_model(kv_heads);
        let p = prompts(batch, prompt);
        let cases = [
            (spec(StrategyKind::named("window"), 8, None), Rule::Window(8)),
            (spec(StrategyKind::named("shift-window"), 8, None), Rule::Window(8)),
            (spec(StrategyKind::named("sink"), 8, Some(2)), Rule::Sink { c: 8, s: 2 }),
            (spec(StrategyKind::named("sink"), 12, Some(4)), Rule::Sink { c: 12, s: 4 }),
            (spec(StrategyKind::named("sink"), 6, Some(1)), Rule::Sink { c: 6, s: 1 }),
        ];
        for (spec, rule) in cases {
            let mut reference =
                Reference { rule, batch, history: vec![None; config.n_layers], seen: 0 };
            let want = step_logits(&model, &mut reference, &p, steps);
            let mut cache =
                spec.build::<B>(&config, batch, prompt + steps, &Default::default()).unwrap();
            let got = step_logits(&model, cache.as_mut(), &p, steps);
            assert_close(&format!("{:?} kv_heads {kv_heads}", spec), &got, &want);
        }
    }
}

#[test]
fn a_long_prompt_is_fed_in_steps_the_window_accepts() {
    // A 20-token prompt into an 8-token window: the loop feeds 8, then one at a time.
    let (config, model) = toy_model(2);
    let p = prompts(2, 20);
    let mut reference =
        Reference { rule: Rule::Window(8), batch: 2, history: vec![None; 2], seen: 0 };
    let want = step_logits(&model, &mut reference, &p, 4);
    for kind in [StrategyKind::named("window"), StrategyKind::named("shift-window")] {
        let mut cache =
            spec(kind, 8, None).build::<B>(&config, 2, 24, &Default::default()).unwrap();
        assert_close(kind.name(), &step_logits(&model, cache.as_mut(), &p, 4), &want);
    }
}

#[test]
fn window_and_shift_window_agree_at_every_length() {
    let (config, model) = toy_model(2);
    let p = prompts(2, 3);
    let mut a = spec(StrategyKind::named("window"), 5, None)
        .build::<B>(&config, 2, 64, &Default::default())
        .unwrap();
    let mut b = spec(StrategyKind::named("shift-window"), 5, None)
        .build::<B>(&config, 2, 64, &Default::default())
        .unwrap();
    assert_close(
        "window vs shift-window",
        &step_logits(&model, a.as_mut(), &p, 40),
        &step_logits(&model, b.as_mut(), &p, 40),
    );
}

#[test]
fn while_the_sequence_fits_every_strategy_equals_recompute() {
    let (config, model) = toy_model(2);
    let (prompt, steps) = (10, 16);
    let p = prompts(2, prompt);
    let want = step_logits(&model, &mut NoCache::new(2), &p, steps);
    let budget = prompt + steps;
    let specs = [
        StrategySpec::new(StrategyKind::CONCAT),
        StrategySpec::new(StrategyKind::STATIC),
        spec(StrategyKind::named("window"), budget, None),
        spec(StrategyKind::named("shift-window"), budget, None),
        spec(StrategyKind::named("sink"), budget, Some(4)),
        StrategySpec { block_size: Some(4), ..StrategySpec::new(StrategyKind::PAGED) },
        StrategySpec { block_size: Some(16), ..StrategySpec::new(StrategyKind::PAGED) },
    ];
    for s in specs {
        let mut cache = s.build::<B>(&config, 2, budget, &Default::default()).unwrap();
        assert_close(s.kind.name(), &step_logits(&model, cache.as_mut(), &p, steps), &want);
    }
}

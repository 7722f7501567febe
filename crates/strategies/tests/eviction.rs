//! Evicting caches (H2O, TOVA, key-norm, SnapKV, PyramidKV) against an independent reference:
//! attention recomputed over exactly the tokens each paper's rule keeps, the rule applied to the
//! attention the reference itself computed, at every step.
//!
//! The reference keeps every key and value ever written, the kept *positions* per (layer, row,
//! KV head) in a plain list, and scores in maps keyed by position; it shares no code with the
//! cache's slot table, its policies or its stores. It orders its keys differently (a victim
//! leaves the list and the newcomer goes last), which attention must not notice.

use std::collections::HashMap;
use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{
    AttentionMask, CacheError, KvCache, KvMemory, KvView, ModelConfig, NoCache, RotaryEncoding,
};
use kvlab_strategies::evict::snapkv::pyramid_budgets;
use kvlab_strategies::{StrategyKind, StrategySpec};

mod common;
use common::{B, append, assert_close, prompts, run, toy_model};

#[derive(Clone, Debug)]
enum Rule {
    H2o {
        budget: usize,
        recent: usize,
    },
    Tova {
        budget: usize,
    },
    KeyNorm {
        budget: usize,
    },
    /// Cut once, when a prompt longer than `cache_tokens` is prefilled, to `budgets[layer]`.
    Snap {
        cache_tokens: usize,
        budgets: Vec<usize>,
        window: usize,
        kernel: usize,
    },
}

type Key = (usize, usize, usize, usize); // (layer, row, kv head, position)

struct Reference {
    rule: Rule,
    batch: usize,
    kv_heads: usize,
    /// Per layer, every key (rotated at its position) and value: `[batch, kv_heads, seen, d]`.
    history: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// `[layer][row][kv head]`: the kept positions, in the order attention reads them.
    kept: Vec<Vec<Vec<Vec<usize>>>>,
    /// H2O: attention accumulated per token; key-norm: its key's L2 norm.
    score: HashMap<Key, f32>,
    /// TOVA: per (layer, row), the position the last query attended least.
    least: HashMap<(usize, usize), usize>,
    /// SnapKV: per layer, the positions each (row, head) keeps after this forward.
    cut: HashMap<usize, Vec<Vec<usize>>>,
    seen: usize,
    step: usize,
}

impl Reference {
    fn new(rule: Rule, config: &ModelConfig, batch: usize) -> Self {
        let kv_heads = config.n_kv_heads;
        Self {
            rule,
            batch,
            kv_heads,
            history: vec![None; config.n_layers],
            kept: vec![vec![vec![Vec::new(); kv_heads]; batch]; config.n_layers],
            score: HashMap::new(),
            least: HashMap::new(),
            cut: HashMap::new(),
            seen: 0,
            step: 0,
        }
    }

    fn budget(&self) -> Option<usize> {
        match self.rule {
            Rule::H2o { budget, .. } | Rule::Tova { budget } | Rule::KeyNorm { budget } => {
                Some(budget)
            }
            Rule::Snap { .. } => None,
        }
    }

    /// The position leaving `(layer, row, head)` when token `p` arrives at a full cache.
    fn victim(&self, layer: usize, row: usize, head: usize, p: usize) -> usize {
        let kept = &self.kept[layer][row][head];
        let score = |q: usize| self.score.get(&(layer, row, head, q)).copied().unwrap_or(0.0);
        let pick = |candidates: Vec<usize>, key: &dyn Fn(usize) -> f32| {
            let mut best = candidates[0];
            for &q in &candidates[1..] {
                if key(q) < key(best) || (key(q) == key(best) && q < best) {
                    best = q;
                }
            }
            best
        };
        match self.rule {
            Rule::H2o { recent, .. } => {
                pick(kept.iter().copied().filter(|&q| q + recent <= p).collect(), &score)
            }
            Rule::Tova { .. } => self.least[&(layer, row)],
            Rule::KeyNorm { .. } => pick(kept.clone(), &|q| -score(q)),
            Rule::Snap { .. } => unreachable!("SnapKV never evicts while decoding"),
        }
    }
}

/// `probs[row, head, query, key]` of a `[b, h, t, s]` host buffer.
struct Probs {
    data: Vec<f32>,
    dims: [usize; 4],
}

impl Probs {
    fn at(&self, row: usize, head: usize, query: usize, key: usize) -> f32 {
        let [_, h, t, s] = self.dims;
        self.data[((row * h + head) * t + query) * s + key]
    }
}

impl KvCache<B> for Reference {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.seen..total
    }
    fn max_step_tokens(&self) -> usize {
        self.budget().map_or(usize::MAX, |c| c.saturating_sub(self.seen).max(1))
    }
    fn query_start(&self) -> Vec<usize> {
        vec![self.seen; self.batch]
    }
    fn reserve(&mut self, t: usize) -> Result<(), CacheError> {
        self.step = t;
        let p = self.seen;
        let full = self.budget().is_some_and(|c| p + t > c);
        for layer in 0..self.kept.len() {
            for row in 0..self.batch {
                for head in 0..self.kv_heads {
                    if full {
                        let out = self.victim(layer, row, head, p);
                        self.kept[layer][row][head].retain(|&q| q != out);
                    }
                    self.kept[layer][row][head].extend(p..p + t);
                }
            }
        }
        Ok(())
    }
    fn observes_attention(&self, _layer: usize) -> bool {
        match self.rule {
            Rule::H2o { .. } | Rule::Tova { .. } => true,
            Rule::KeyNorm { .. } => false,
            Rule::Snap { cache_tokens, .. } => self.seen == 0 && self.step > cache_tokens,
        }
    }
    fn observe_attention(&mut self, layer: usize, probs: Tensor<B, 4>) {
        let dims = probs.dims();
        let probs = Probs { data: probs.into_data().to_vec().unwrap(), dims };
        let [b, h, t, s] = dims;
        let rep = h / self.kv_heads;
        let group_sum = |row: usize, g: usize, queries: Range<usize>, key: usize| -> f32 {
            let mut sum = 0.0;
            for head in g * rep..(g + 1) * rep {
                for q in queries.clone() {
                    sum += probs.at(row, head, q, key);
                }
            }
            sum
        };
        match self.rule.clone() {
            Rule::H2o { .. } => {
                for row in 0..b {
                    for g in 0..self.kv_heads {
                        for (j, &q) in self.kept[layer][row][g].iter().enumerate() {
                            *self.score.entry((layer, row, g, q)).or_default() +=
                                group_sum(row, g, 0..t, j);
                        }
                    }
                }
            }
            Rule::Tova { .. } => {
                for row in 0..b {
                    let kept = &self.kept[layer][row][0];
                    let mean = |j: usize| (0..h).map(|hd| probs.at(row, hd, t - 1, j)).sum::<f32>();
                    let mut best = 0;
                    for j in 1..s {
                        let (a, z) = (mean(j), mean(best));
                        if a < z || (a == z && kept[j] < kept[best]) {
                            best = j;
                        }
                    }
                    self.least.insert((layer, row), kept[best]);
                }
            }
            Rule::KeyNorm { .. } => {}
            Rule::Snap { budgets, window, kernel, .. } => {
                let budget = budgets[layer];
                if s <= budget {
                    return;
                }
                let prefix = s - window;
                let mut cut = Vec::new();
                for row in 0..b {
                    for g in 0..self.kv_heads {
                        let raw: Vec<f32> =
                            (0..prefix).map(|j| group_sum(row, g, s - window..s, j)).collect();
                        let pooled: Vec<f32> = (0..prefix)
                            .map(|j| {
                                let lo = j.saturating_sub(kernel / 2);
                                let hi = (j + kernel / 2).min(prefix - 1);
                                raw[lo..=hi].iter().copied().fold(f32::MIN, f32::max)
                            })
                            .collect();
                        let mut order: Vec<usize> = (0..prefix).collect();
                        order.sort_by(|&x, &y| {
                            pooled[y].partial_cmp(&pooled[x]).unwrap().then(x.cmp(&y))
                        });
                        let mut keep: Vec<usize> = order[..budget - window].to_vec();
                        keep.sort();
                        keep.extend(prefix..s);
                        cut.push(keep);
                    }
                }
                self.cut.insert(layer, cut);
            }
        }
    }
    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let [b, h, t, d] = k.dims();
        if let Rule::KeyNorm { .. } = self.rule {
            let host: Vec<f32> = k.clone().into_data().to_vec().unwrap();
            for row in 0..b {
                for g in 0..h {
                    for i in 0..t {
                        let at = ((row * h + g) * t + i) * d;
                        let norm = host[at..at + d].iter().map(|x| x * x).sum::<f32>().sqrt();
                        self.score.insert((layer, row, g, self.seen + i), norm);
                    }
                }
            }
        }
        let k = rope.apply(k, &[self.seen]);
        append(&mut self.history[layer], k, v);
        Ok(())
    }
    fn view(
        &self,
        layer: usize,
        _t: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (k, v) = self.history[layer].clone().expect("written before viewed");
        let [b, h, s, d] = k.dims();
        let kept = self.kept[layer][0][0].len();
        let mut idx = Vec::with_capacity(b * h * kept);
        for row in 0..b {
            for g in 0..h {
                idx.extend(
                    self.kept[layer][row][g].iter().map(|&q| ((row * h + g) * s + q) as i64),
                );
            }
        }
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [b * h * kept]), &k.device());
        let pick = |x: Tensor<B, 4>| {
            x.reshape([b * h * s, d]).select(0, idx.clone()).reshape([b, h, kept, d])
        };
        Ok(KvView::dense(pick(k), pick(v), AttentionMask::CausalEnd))
    }
    fn commit(&mut self, new_tokens: usize) {
        for (layer, cut) in self.cut.drain() {
            for (i, keep) in cut.into_iter().enumerate() {
                self.kept[layer][i / self.kv_heads][i % self.kv_heads] = keep;
            }
        }
        self.seen += new_tokens;
    }
    fn reset(&mut self) {
        unimplemented!("the reference runs once")
    }
    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }
    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        None
    }
}

fn spec(kind: StrategyKind, cache_tokens: usize) -> StrategySpec {
    StrategySpec { cache_tokens: Some(cache_tokens), ..StrategySpec::new(kind) }
}

fn snap(kind: StrategyKind, cache_tokens: usize, window: usize, kernel: usize) -> StrategySpec {
    StrategySpec { window: Some(window), kernel: Some(kernel), ..spec(kind, cache_tokens) }
}

#[test]
fn with_room_for_every_token_each_policy_equals_recompute() {
    let (prompt, steps) = (10, 14);
    let budget = prompt + steps;
    for kv_heads in [4, 2, 1] {
        let (config, model) = toy_model(kv_heads);
        let p = prompts(2, prompt);
        let (want_tokens, want) = run(&model, &mut NoCache::new(2), &p, steps);
        let specs = [
            spec(StrategyKind::named("h2o"), budget),
            spec(StrategyKind::named("tova"), budget),
            spec(StrategyKind::named("key-norm"), budget),
            snap(StrategyKind::named("snapkv"), prompt, 4, 3),
            snap(StrategyKind::named("pyramidkv"), prompt, 4, 3),
        ];
        for s in specs {
            let mut cache = s.build::<B>(&config, 2, budget, &Default::default()).unwrap();
            let (tokens, got) = run(&model, cache.as_mut(), &p, steps);
            let what = format!("{} kv_heads {kv_heads}", s.kind);
            assert_eq!(tokens, want_tokens, "{what}: greedy tokens");
            assert_close(&what, &got, &want);
        }
    }
}

/// The cache of `spec` and the reference of `rule` decode `prompts` side by side; every step's
/// logits agree within the tolerance. Returns the cache and its logits.
fn against_reference(
    spec: &StrategySpec,
    rule: Rule,
    (config, model): (&ModelConfig, &kvlab_model::Model<B>),
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Box<dyn KvCache<B>>, Vec<Vec<f32>>) {
    let what = format!("{rule:?} kv_heads {}", config.n_kv_heads);
    let (batch, len) = (prompts.len(), prompts[0].len());
    let mut reference = Reference::new(rule, config, batch);
    let (_, want) = run(model, &mut reference, prompts, steps);
    let mut cache = spec.build::<B>(config, batch, len + steps, &Default::default()).unwrap();
    let (_, got) = run(model, cache.as_mut(), prompts, steps);
    assert_close(&what, &got, &want);
    (cache, got)
}

#[test]
fn past_their_budget_streaming_policies_equal_the_reference() {
    let (batch, prompt, steps) = (2, 5, 27);
    for kv_heads in [4, 2, 1] {
        let (config, model) = toy_model(kv_heads);
        let p = prompts(batch, prompt);
        let cases = [
            (
                StrategySpec { recent: Some(3), ..spec(StrategyKind::named("h2o"), 8) },
                Rule::H2o { budget: 8, recent: 3 },
            ),
            (spec(StrategyKind::named("h2o"), 8), Rule::H2o { budget: 8, recent: 4 }),
            (
                StrategySpec { recent: Some(0), ..spec(StrategyKind::named("h2o"), 6) },
                Rule::H2o { budget: 6, recent: 0 },
            ),
            (spec(StrategyKind::named("tova"), 8), Rule::Tova { budget: 8 }),
            (spec(StrategyKind::named("tova"), 3), Rule::Tova { budget: 3 }),
            (spec(StrategyKind::named("key-norm"), 8), Rule::KeyNorm { budget: 8 }),
        ];
        for (s, rule) in cases {
            let what = format!("{rule:?} kv_heads {kv_heads}");
            let (_, got) = against_reference(&s, rule, (&config, &model), &p, steps);
            // And the rule bit: a full window of the same budget reads different logits.
            let mut window = spec(StrategyKind::named("window"), s.cache_tokens.unwrap())
                .build::<B>(&config, batch, prompt + steps, &Default::default())
                .unwrap();
            let (_, window_logits) = run(&model, window.as_mut(), &p, steps);
            let differs = window_logits
                .iter()
                .zip(&got)
                .any(|(a, b)| a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-3));
            assert!(differs, "{what}: evicts exactly as a window would");
        }
    }
}

#[test]
fn past_their_budget_prompt_policies_equal_the_reference() {
    let (batch, prompt, steps) = (2, 20, 8);
    for kv_heads in [4, 2, 1] {
        let (config, model) = toy_model(kv_heads);
        let p = prompts(batch, prompt);
        let layers = config.n_layers;
        let cases = [
            (snap(StrategyKind::named("snapkv"), 8, 3, 3), vec![8; layers], 3, 3),
            (snap(StrategyKind::named("snapkv"), 12, 4, 1), vec![12; layers], 4, 1),
            (snap(StrategyKind::named("pyramidkv"), 8, 3, 3), pyramid_budgets(layers, 8, 3), 3, 3),
        ];
        for (s, budgets, window, kernel) in cases {
            let cache_tokens = s.cache_tokens.unwrap();
            let rule = Rule::Snap { cache_tokens, budgets, window, kernel };
            let what = format!("{rule:?} kv_heads {kv_heads}");
            let (cache, _) = against_reference(&s, rule, (&config, &model), &p, steps);
            let kept = cache.memory().tokens;
            assert!(kept < prompt + steps, "{what}: the prompt was cut ({kept} tokens kept)");
            // What it holds, by position: part of the prompt, all of the observation window and
            // of the decoded tokens.
            let share = |r: Range<usize>| cache.held_share(r).unwrap();
            assert!(share(0..prompt) > 0.0 && share(0..prompt) < 1.0, "{what}");
            assert_eq!(share(prompt - window..prompt + steps - 1), 1.0, "{what}");
        }
    }
}

#[test]
fn a_long_prompt_fills_the_budget_then_streams_one_token_at_a_time() {
    let (config, model) = toy_model(2);
    let p = prompts(2, 20);
    let mut reference = Reference::new(Rule::H2o { budget: 8, recent: 4 }, &config, 2);
    let (_, want) = run(&model, &mut reference, &p, 4);
    let mut cache = spec(StrategyKind::named("h2o"), 8)
        .build::<B>(&config, 2, 24, &Default::default())
        .unwrap();
    assert_eq!(cache.max_step_tokens(), 8);
    let (_, got) = run(&model, cache.as_mut(), &p, 4);
    assert_close("h2o, a 20-token prompt into 8 slots", &got, &want);
    assert_eq!(cache.max_step_tokens(), 1);
}

#[test]
fn policies_compose_with_quantized_stores_and_converted_heads() {
    // With room for every token, an int8 evicting cache reads what the int8 static cache reads:
    // the per-head slot store quantizes each head vector exactly as the static store does.
    let (prompt, steps) = (6, 10);
    for kv_heads in [4, 1] {
        let (config, model) = toy_model(kv_heads);
        let p = prompts(2, prompt);
        for bits in [8, 4] {
            let quant = |s: StrategySpec| StrategySpec { bits: Some(bits), ..s };
            let mut reference = quant(StrategySpec::new(StrategyKind::STATIC))
                .build::<B>(&config, 2, prompt + steps, &Default::default())
                .unwrap();
            let (_, want) = run(&model, reference.as_mut(), &p, steps);
            for kind in [
                StrategyKind::named("h2o"),
                StrategyKind::named("tova"),
                StrategyKind::named("key-norm"),
            ] {
                let mut cache = quant(spec(kind, prompt + steps))
                    .build::<B>(&config, 2, prompt + steps, &Default::default())
                    .unwrap();
                let (_, got) = run(&model, cache.as_mut(), &p, steps);
                assert_close(&format!("{kind} int{bits} kv_heads {kv_heads}"), &got, &want);
            }
            // Past the budget, bits still apply: the int4 cache differs from the f32 one.
            let mut f32_cache = spec(StrategyKind::named("h2o"), 6)
                .build::<B>(&config, 2, prompt + steps, &Default::default())
                .unwrap();
            let mut q_cache = quant(spec(StrategyKind::named("h2o"), 6))
                .build::<B>(&config, 2, prompt + steps, &Default::default())
                .unwrap();
            let (_, a) = run(&model, f32_cache.as_mut(), &p, steps);
            let (_, b) = run(&model, q_cache.as_mut(), &p, steps);
            assert!(a != b, "int{bits} h2o reads the f32 values");
        }
    }
}

#[test]
fn memory_is_the_store_plus_positions_plus_scores() {
    let (config, model) = toy_model(2);
    let (b, c) = (2, 8);
    let (l, h, d) = (config.n_layers, config.n_kv_heads, config.head_dim);
    let per_token = 2 * l * b * h * d * 4; // K and V, f32, every layer and row
    let p = prompts(b, 5);
    for (kind, score_bytes) in [
        (StrategyKind::named("h2o"), l * b * h * c * 4),
        (StrategyKind::named("key-norm"), l * b * h * c * 4),
        (StrategyKind::named("tova"), l * b * 4),
    ] {
        let mut cache = spec(kind, c).build::<B>(&config, b, 64, &Default::default()).unwrap();
        // One step: the 5 prompt tokens are fed; the chosen token is not.
        run(&model, cache.as_mut(), &p, 1);
        let m = cache.memory();
        assert_eq!(m.allocated_bytes, per_token * c, "{kind}: allocated");
        assert_eq!((m.tokens, m.live_bytes), (5, per_token * 5), "{kind}: live");
        assert_eq!(m.metadata_bytes, l * b * h * c * 4 + score_bytes, "{kind}: metadata");
        run(&model, cache.as_mut(), &prompts(b, 30), 1);
        assert_eq!(cache.memory().tokens, c, "{kind}: never more than the budget");
    }
    // Over int8 codes (per-token groups of 32: a byte a value, an f32 scale and zero per group),
    // live bytes are the kept tokens' codes, as the static cache counts them.
    let int8 = StrategySpec { bits: Some(8), ..spec(StrategyKind::named("h2o"), c) };
    let mut cache = int8.build::<B>(&config, b, 64, &Default::default()).unwrap();
    run(&model, cache.as_mut(), &p, 1);
    let m = cache.memory();
    assert_eq!((m.allocated_bytes, m.live_bytes), (per_token / 4 * c, per_token / 4 * 5), "int8");
    // SnapKV holds the whole sequence's slots (the prompt is prefilled whole), and keeps its
    // budget of the prompt once cut.
    let mut cache = snap(StrategyKind::named("snapkv"), 8, 2, 3)
        .build::<B>(&config, b, 40, &Default::default())
        .unwrap();
    run(&model, cache.as_mut(), &prompts(b, 30), 1);
    let m = cache.memory();
    assert_eq!((m.allocated_bytes, m.tokens, m.live_bytes), (per_token * 40, 8, per_token * 8));
}

#[test]
fn bad_parameters_name_the_key() {
    let err = |s: StrategySpec| s.validate().unwrap_err().to_string();
    assert!(
        err(StrategySpec { recent: Some(8), ..spec(StrategyKind::named("h2o"), 8) })
            .starts_with("recent = 8")
    );
    assert!(err(snap(StrategyKind::named("snapkv"), 8, 8, 3)).starts_with("window = 8"));
    assert!(err(snap(StrategyKind::named("pyramidkv"), 8, 2, 4)).starts_with("kernel = 4"));
    assert!(
        err(StrategySpec::new(StrategyKind::named("tova"))).starts_with("cache_tokens = missing")
    );
}

//! The keep-policies' rules on crafted attention, and the bookkeeping under 10^5 random steps.
//!
//! No model here: the slot table and the policies are host code, driven through the same
//! `place` / `apply_cuts` the cache calls, with attention made up to show each rule.

use kvlab_strategies::evict::policy::{KeepPolicy, Scope, Shown};
use kvlab_strategies::evict::snapkv::pyramid_budgets;
use kvlab_strategies::evict::table::SlotTable;
use kvlab_strategies::evict::{
    H2o, KeyNorm, ShiftWindow, Sink, SnapKv, Tova, Window, apply_cuts, place,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One row, one head: attention of `queries` queries over `weights.len()` keys, each query's
/// row the normalized `weights`.
fn shown(weights: &[f32], queries: usize) -> Shown {
    let total: f32 = weights.iter().sum();
    let row: Vec<f32> = weights.iter().map(|w| w / total).collect();
    Shown {
        data: row.repeat(queries),
        batch: 1,
        heads: 1,
        kv_heads: 1,
        queries,
        keys: weights.len(),
    }
}

fn sorted(p: &[usize]) -> Vec<usize> {
    let mut p = p.to_vec();
    p.sort_unstable();
    p
}

/// Positions held by region 0, in slot order.
fn positions(table: &SlotTable) -> Vec<usize> {
    let mut p: Vec<usize> = table.live(0).iter().map(|&s| table.pos(0, s)).collect();
    p.sort();
    p
}

#[test]
fn a_key_with_high_accumulated_attention_survives_h2o() {
    let (cap, recent) = (4, 1);
    let mut table = SlotTable::new(1, 1, 1, cap);
    let mut h2o = H2o::new(recent, 1, cap);
    place(&mut table, &mut h2o, 0, cap).unwrap();
    for p in cap..40 {
        // Every query gives position 1 most of its attention, the rest a little each.
        let weights: Vec<f32> =
            table.live(0).iter().map(|&s| if table.pos(0, s) == 1 { 8.0 } else { 1.0 }).collect();
        h2o.observe(0, &shown(&weights, 1), &table);
        place(&mut table, &mut h2o, p, 1).unwrap();
        assert!(positions(&table).contains(&1), "the heavy hitter left at step {p}");
        assert!(positions(&table).contains(&p), "the newest token is kept");
    }
}

#[test]
fn h2o_evicts_the_lightest_token_outside_the_recent_window() {
    let mut table = SlotTable::new(1, 1, 1, 5);
    let mut h2o = H2o::new(2, 1, 5);
    place(&mut table, &mut h2o, 0, 5).unwrap();
    // Positions 0..5 accumulate 5, 1, 4, 3 (and 9 for the recent 4): 1 is the lightest.
    h2o.observe(0, &shown(&[5.0, 1.0, 4.0, 3.0, 9.0], 1), &table);
    place(&mut table, &mut h2o, 5, 1).unwrap();
    assert_eq!(positions(&table), [0, 2, 3, 4, 5]);
    // Now the lightest is 5 (new, score 0) but it is recent; so is 4. Next lightest: 3.
    place(&mut table, &mut h2o, 6, 1).unwrap();
    assert_eq!(positions(&table), [0, 2, 4, 5, 6]);
}

#[test]
fn the_least_attended_token_leaves_tova() {
    let mut table = SlotTable::new(1, 1, 1, 4);
    let mut tova = Tova::new(1, 1);
    place(&mut table, &mut tova, 0, 4).unwrap();
    // The last query attends least to position 2; earlier queries do not count.
    let data = [
        [0.01, 0.01, 0.97, 0.01], // query 0
        [0.4, 0.3, 0.05, 0.25],   // query 1, the last
    ]
    .concat();
    let two_queries = Shown { data, batch: 1, heads: 1, kv_heads: 1, queries: 2, keys: 4 };
    tova.observe(0, &two_queries, &table);
    place(&mut table, &mut tova, 4, 1).unwrap();
    assert_eq!(positions(&table), [0, 1, 3, 4]);
    // TOVA may evict the newest token itself.
    // Keys are shown in slot order: position 4 took position 2's slot.
    let newest_least: Vec<f32> =
        table.live(0).iter().map(|&s| if table.pos(0, s) == 4 { 0.1 } else { 1.0 }).collect();
    tova.observe(0, &shown(&newest_least, 1), &table);
    place(&mut table, &mut tova, 5, 1).unwrap();
    assert!(!positions(&table).contains(&4), "{:?}", positions(&table));
}

#[test]
fn tova_averages_attention_over_heads() {
    let mut table = SlotTable::new(1, 1, 2, 3);
    let mut tova = Tova::new(1, 1);
    place(&mut table, &mut tova, 0, 3).unwrap();
    // Head 0 ignores key 0, head 1 ignores key 2 but attends key 0 strongly: mean least is 2.
    let data = vec![0.0, 0.5, 0.5, 0.9, 0.1, 0.0];
    let shown = Shown { data, batch: 1, heads: 2, kv_heads: 2, queries: 1, keys: 3 };
    tova.observe(0, &shown, &table);
    place(&mut table, &mut tova, 3, 1).unwrap();
    for head in 0..2 {
        let held: Vec<usize> = table.live(head).iter().map(|&s| table.pos(head, s)).collect();
        assert!(!held.contains(&2) && held.contains(&3), "head {head}: {held:?}");
    }
}

#[test]
fn key_norm_evicts_the_largest_key() {
    let mut table = SlotTable::new(1, 1, 1, 3);
    let mut knorm = KeyNorm::new(1, 3);
    for (s, n) in place(&mut table, &mut knorm, 0, 3).unwrap()[0].iter().zip([1.0, 7.0, 2.0]) {
        knorm.key_norm(0, *s, n);
    }
    place(&mut table, &mut knorm, 3, 1).unwrap();
    assert_eq!(positions(&table), [0, 2, 3]);
}

#[test]
fn snapkv_keeps_the_needle_its_window_attends_to() {
    // A 40-token prompt; the window's queries look at a needle at positions 20..23 (peak 21).
    let (n, budget, window) = (40, 10, 4);
    let mut table = SlotTable::new(1, 1, 1, 64);
    let mut snap = SnapKv::uniform(1, budget, window, 3);
    place(&mut table, &mut snap, 0, n).unwrap();
    let weights: Vec<f32> = (0..n)
        .map(|j| match j {
            21 => 50.0,
            20 | 22 => 5.0,
            _ => 1.0 + (j % 3) as f32 * 0.1,
        })
        .collect();
    let mut attention = shown(&weights, n);
    attention.queries = n;
    assert!(snap.observes(0, n));
    snap.observe(0, &attention, &table);
    apply_cuts(&mut table, &mut snap);
    let kept = positions(&table);
    assert_eq!(kept.len(), budget);
    for q in [20, 21, 22, 36, 37, 38, 39] {
        assert!(kept.contains(&q), "{q} not kept: {kept:?}");
    }
    // Decoding then appends.
    place(&mut table, &mut snap, n, 1).unwrap();
    assert_eq!(table.kept(0), budget + 1);
}

/// The rule a random episode runs, and what its invariants need.
enum Rule {
    H2o {
        recent: usize,
    },
    Tova,
    KeyNorm,
    /// The last `cache_tokens`, kept in a ring (`roll: false`) or rolled.
    Window {
        roll: bool,
    },
    Sink {
        sinks: usize,
    },
    /// Per-layer budgets and the observation window.
    Snap {
        budgets: Vec<usize>,
        window: usize,
    },
}

fn random_policy(
    rng: &mut ChaCha8Rng,
    table: &SlotTable,
    budget: usize,
) -> (Box<dyn KeepPolicy>, Rule) {
    let (layers, regions, cap) = (table.layers, table.regions(), table.capacity);
    let window = rng.random_range(1..budget);
    match rng.random_range(0..8) {
        0 => {
            let recent = rng.random_range(0..budget);
            (Box::new(H2o::new(recent, regions, cap)), Rule::H2o { recent })
        }
        1 => (Box::new(Tova::new(layers, table.batch)), Rule::Tova),
        2 => (Box::new(KeyNorm::new(regions, cap)), Rule::KeyNorm),
        3 => (Box::new(Window), Rule::Window { roll: false }),
        4 => (Box::new(ShiftWindow), Rule::Window { roll: true }),
        5 => {
            let sinks = rng.random_range(1..budget);
            (Box::new(Sink::new(sinks)), Rule::Sink { sinks })
        }
        6 => {
            let budgets = vec![budget; layers];
            (Box::new(SnapKv::uniform(layers, budget, window, 3)), Rule::Snap { budgets, window })
        }
        _ => {
            let budgets = pyramid_budgets(layers, budget, window);
            (Box::new(SnapKv::pyramid(layers, budget, window, 1)), Rule::Snap { budgets, window })
        }
    }
}

/// Random attention of `queries` queries per head over `keys` keys, each row summing to 1.
fn random_attention(
    rng: &mut ChaCha8Rng,
    batch: usize,
    kv_heads: usize,
    queries: usize,
    keys: usize,
) -> Shown {
    let heads = kv_heads * rng.random_range(1..3);
    let mut data = Vec::with_capacity(batch * heads * queries * keys);
    for _ in 0..batch * heads * queries {
        let w: Vec<f32> = (0..keys).map(|_| rng.random_range(0.0..1.0f32)).collect();
        let sum: f32 = w.iter().sum();
        data.extend(w.into_iter().map(|x| x / sum));
    }
    Shown { data, batch, heads, kv_heads, queries, keys }
}

#[test]
fn bookkeeping_holds_its_invariants_over_a_hundred_thousand_random_steps() {
    const MAX_SEQ: usize = 48;
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let mut steps = 0;
    while steps < 100_000 {
        let (layers, batch, heads) =
            (rng.random_range(1..4), rng.random_range(1..3), rng.random_range(1..4));
        let budget = rng.random_range(2..12);
        let probe = SlotTable::new(layers, batch, heads, budget);
        let (mut policy, rule) = random_policy(&mut rng, &probe, budget);
        let prompt_scope = policy.scope() == Scope::Prompt;
        let cap = if prompt_scope { MAX_SEQ } else { budget };
        let mut table = SlotTable::new(layers, batch, heads, cap);
        // Per region and slot: the position last written there, and its key's norm.
        let mut written = vec![vec![usize::MAX; cap]; table.regions()];
        let mut norms = vec![vec![0.0f32; cap]; table.regions()];
        let mut seen = 0;
        loop {
            let t = match (prompt_scope, seen) {
                (true, 0) => rng.random_range(1..=MAX_SEQ / 2),
                (true, _) => rng.random_range(1..3),
                (false, s) if s < cap => rng.random_range(1..=cap - s),
                _ => 1,
            };
            if seen + t > MAX_SEQ {
                break;
            }
            let full = !prompt_scope && seen >= cap;
            let largest: Vec<f32> = (0..table.regions())
                .map(|r| table.live(r).iter().map(|&s| norms[r][s]).fold(f32::MIN, f32::max))
                .collect();
            let placed = place(&mut table, policy.as_mut(), seen, t).unwrap();
            if full && matches!(rule, Rule::Window { roll: true }) {
                // A roll moves every slot's token one place toward the front.
                written.iter_mut().for_each(|w| w.rotate_left(1));
            }
            for (region, slots) in placed.iter().enumerate() {
                for (i, &s) in slots.iter().enumerate() {
                    if full && matches!(rule, Rule::KeyNorm) {
                        assert_eq!(
                            norms[region][s], largest[region],
                            "key-norm evicts the largest"
                        );
                    }
                    written[region][s] = seen + i;
                    norms[region][s] = rng.random_range(0.0..10.0f32);
                    policy.key_norm(region, s, norms[region][s]);
                }
            }
            if policy.observes(seen, t) {
                for layer in 0..layers {
                    let shown = random_attention(&mut rng, batch, heads, t, table.kept(layer));
                    policy.observe(layer, &shown, &table);
                }
            }
            apply_cuts(&mut table, policy.as_mut());
            let first_step = seen == 0;
            seen += t;
            steps += 1;

            table.check().unwrap();
            for (region, written) in written.iter().enumerate() {
                let (layer, row, _) = table.coords(region);
                let held: Vec<usize> =
                    table.live(region).iter().map(|&s| table.pos(region, s)).collect();
                for &s in table.live(region) {
                    assert_eq!(
                        table.pos(region, s),
                        written[s],
                        "a kept token is where it was written"
                    );
                }
                match &rule {
                    _ if !prompt_scope => {
                        assert_eq!(
                            held.len(),
                            seen.min(cap),
                            "the budget, and every token until full"
                        )
                    }
                    Rule::Snap { budgets, window } if first_step => {
                        let want = if seen > budget { seen.min(budgets[layer]) } else { seen };
                        assert_eq!(held.len(), want, "a cut prompt keeps its layer's budget");
                        if seen > budget {
                            for q in seen - window..seen {
                                assert!(held.contains(&q), "the observation window is kept");
                            }
                        }
                    }
                    _ => {}
                }
                match rule {
                    Rule::H2o { recent } => {
                        for q in seen.saturating_sub(recent)..seen {
                            assert!(held.contains(&q), "h2o keeps its {recent} newest");
                        }
                    }
                    Rule::Tova => {
                        // One decision per layer: every head of a row holds the same slots.
                        let first = table.live(table.region(layer, row, 0));
                        assert_eq!(table.live(region), first);
                    }
                    Rule::Window { roll } => {
                        let want: Vec<usize> = (seen - seen.min(cap)..seen).collect();
                        assert_eq!(sorted(&held), want, "a window keeps the last {cap}");
                        if roll {
                            assert_eq!(held, want, "a rolled window is in slot order");
                        }
                    }
                    Rule::Sink { sinks } => {
                        let recent = seen - seen.min(cap - sinks.min(seen));
                        let want: Vec<usize> =
                            (0..sinks.min(seen)).chain(recent.max(sinks.min(seen))..seen).collect();
                        assert_eq!(held, want, "sinks, then the newest, read oldest first");
                    }
                    _ => {}
                }
            }
        }
    }
}

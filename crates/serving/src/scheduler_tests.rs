//! Tests of [`crate::simulate`]: accounting, the vLLM result, bad input, determinism.

use kvlab_strategies::StrategyKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    CostModel, Policy, Preemption, Request, ServingError, SimConfig, TraceGen, config::Eviction,
    simulate, trace::LengthDist,
};

/// SmolLM2-135M fp32: 2 (K, V) * 30 layers * 3 KV heads * 64 dims * 4 bytes.
const SMOL_FP32: u64 = 2 * 30 * 3 * 64 * 4;

fn config(policy: Policy, budget_tokens: u64) -> SimConfig {
    SimConfig::new(policy, budget_tokens * SMOL_FP32, SMOL_FP32, 2048)
}

fn kind(name: &str) -> StrategyKind {
    StrategyKind::named(name)
}

fn req(id: u64, arrival: u64, prompt: usize, output: usize) -> Request {
    Request::new(id, arrival, prompt, output)
}

/// Wide, uneven lengths and bursts: the hardest case for both books and allocators.
fn mixed_trace(n: usize, seed: u64) -> Vec<Request> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = 0;
    (0..n as u64)
        .map(|id| {
            t += rng.random_range(0..4);
            let prompt = rng.random_range(1..=900);
            let output = rng.random_range(1..=(2000 - prompt).min(1100));
            req(id, t, prompt, output)
        })
        .collect()
}

#[test]
fn books_balance_every_iteration_for_every_policy() {
    let trace = mixed_trace(3000, 1);
    // An odd byte budget and odd bytes per token, so block and token remainders exist.
    for policy in Policy::standard_set() {
        let cfg = SimConfig::new(policy, 3 * 6000 + 7, 3, 2048);
        // `simulate` fails with AccountingMismatch if any iteration's parts miss the budget.
        let r = simulate(&cfg, &trace).unwrap_or_else(|e| panic!("{policy:?}: {e}"));
        let s = &r.summary;
        let sum = s.token_state_pct + s.reserved_pct + s.internal_pct + s.external_pct + s.free_pct;
        assert!((sum - 100.0).abs() < 1e-9, "{policy:?}: parts sum to {sum}%");
        assert_eq!(s.completed + s.rejected, s.requests, "{policy:?}");
        assert_eq!(s.iterations as usize, r.series.len());
        assert!(r.series.iter().all(|p| p.running >= 1 && p.utilization <= 1.0));
        if policy == Policy::ReserveExact {
            assert!(s.external_pct > 0.0, "first fit over uneven sizes must fragment");
        }
    }
}

#[test]
fn paged_waste_per_request_is_under_one_block() {
    let trace = mixed_trace(1500, 2);
    for block_size in [1, 8, 16, 32, 64] {
        let r = simulate(&config(Policy::Paged { block_size }, 5000), &trace).unwrap();
        assert!(r.max_internal_tokens_per_request < block_size, "block {block_size}: {r:?}");
        assert!(r.summary.preemptions > 0, "the budget should be tight enough to preempt");
        assert_eq!(r.summary.completed, trace.len());
    }
    let r = simulate(&config(Policy::ReserveMax, 5000), &trace).unwrap();
    assert!(r.max_internal_tokens_per_request > 1000);
    assert_eq!(r.summary.preemptions, 0, "reservations never need preemption");
}

#[test]
fn paging_holds_more_token_state_than_reserving() {
    let trace = TraceGen::chat(2000, 7).generate();
    let run = |policy| simulate(&config(policy, 2048), &trace).unwrap().summary;
    let max = run(Policy::ReserveMax);
    let pow2 = run(Policy::ReservePow2);
    let exact = run(Policy::ReserveExact);
    let paged = run(Policy::Paged { block_size: 16 });
    // At 2048 tokens one chat request is ~12% of memory, so the memory a preempted or
    // head-of-line request waits for keeps paged just under 90%; see the 8192 run below.
    assert!(max.token_state_pct < 20.0, "reserve-max {max:?}");
    assert!(paged.token_state_pct > 85.0, "paged {paged:?}");
    assert!(max.token_state_pct < pow2.token_state_pct);
    assert!(pow2.token_state_pct < paged.token_state_pct);
    assert!(exact.token_state_pct < paged.token_state_pct);
    assert!(paged.mean_running > 3.0 * max.mean_running);
    assert!(paged.iterations < max.iterations, "more concurrency finishes sooner");

    let big = |policy| simulate(&config(policy, 8192), &trace).unwrap().summary;
    let (max, paged) = (big(Policy::ReserveMax), big(Policy::Paged { block_size: 16 }));
    assert!(max.token_state_pct < 20.0, "reserve-max {max:?}");
    assert!(paged.token_state_pct > 90.0, "paged {paged:?}");
}

#[test]
fn head_of_line_blocking_and_exact_timeline() {
    // 10 token slots. A takes 7; B (7) must wait; C (3) would fit but may not skip B.
    let cfg = SimConfig::new(Policy::ReserveExact, 10, 1, 10);
    let trace = [req(0, 0, 4, 3), req(1, 0, 4, 3), req(2, 0, 2, 1)];
    let r = simulate(&cfg, &trace).unwrap();
    let running: Vec<usize> = r.series.iter().map(|p| p.running).collect();
    assert_eq!(running, vec![1, 1, 1, 2, 1, 1]);
    assert_eq!((r.summary.completed, r.summary.iterations, r.summary.max_running), (3, 6, 2));
    // First tokens at iterations 0 (A), 3 (B, C): waits of 1, 4, 4 iterations; A and B then
    // take one iteration per token; C has one token only.
    let l = r.latency;
    assert_eq!((l.ttft_iter.p50, l.ttft_iter.p90), (Some(4.0), Some(4.0)));
    assert_eq!((l.tpot_iter.p50, l.tpot_iter.p99), (Some(1.0), Some(1.0)));
    assert_eq!((l.ttft_s.p50, r.traffic.elapsed_s), (None, None), "no clock");

    // With a clock: a decode step costs 1 s, a prompt token 0.1 s. Iterations end at 0.4
    // (A's 4-token prefill), 1.4, 2.4, 3.0 (B and C prefilled: 6 tokens), 4.0, 5.0.
    let cost = CostModel {
        decode_step_s: 1.0,
        prefill_token_s: 0.1,
        swap_bytes_per_s: 1.0,
        swap_block_s: 0.0,
    };
    let r = simulate(&SimConfig { cost: Some(cost), ..cfg }, &trace).unwrap();
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
    assert!(close(r.traffic.elapsed_s, 5.0));
    let l = r.latency;
    assert!(close(l.ttft_s.p50, 3.0) && close(Some(l.ttft_s.p99.unwrap()), 3.0), "{l:?}");
    assert!(close(l.tpot_s.p50, 1.0) && close(l.tpot_s.p99, 1.0), "{l:?}");
}

#[test]
fn preemption_evicts_the_latest_and_recomputes() {
    // 4 blocks of 2 tokens; two requests that each grow to 6 tokens cannot both finish.
    let cfg = SimConfig::new(Policy::Paged { block_size: 2 }, 8, 1, 8);
    let trace = [req(0, 0, 2, 4), req(1, 0, 2, 4)];
    let r = simulate(&cfg, &trace).unwrap();
    assert!(r.summary.preemptions >= 1);
    assert!(r.traffic.recomputed_tokens >= 3, "the victim's prompt and output are prefilled again");
    assert_eq!(r.summary.completed, 2);
}

#[test]
fn bad_input_is_reported_not_panicked() {
    let trace = [req(0, 0, 10, 10)];
    let err = simulate(&config(Policy::ReserveMax, 1000), &trace).unwrap_err();
    assert!(matches!(err, ServingError::BudgetTooSmall { .. }), "{err}");
    let tiny =
        SimConfig { budget_bytes: 8 * SMOL_FP32, ..config(Policy::Paged { block_size: 16 }, 0) };
    assert!(matches!(simulate(&tiny, &trace), Err(ServingError::BudgetTooSmall { .. })));
    let zero = SimConfig { bytes_per_token: 0, ..config(Policy::ReserveExact, 100) };
    assert!(matches!(simulate(&zero, &trace), Err(ServingError::InvalidConfig(_))));
    let empty_out = [req(0, 0, 10, 0)];
    assert!(matches!(
        simulate(&config(Policy::ReserveExact, 100), &empty_out),
        Err(ServingError::InvalidRequest { id: 0, .. })
    ));

    // Too long for max_seq_len, and too large for the budget: rejected and counted.
    let trace = [req(0, 0, 2000, 100), req(1, 0, 50, 60), req(2, 5, 10, 10), req(3, 0, 90, 90)];
    for policy in Policy::standard_set().into_iter().skip(1) {
        let r = simulate(&config(policy, 128), &trace).unwrap();
        assert_eq!(r.rejections.too_long, 1, "{policy:?}");
        assert_eq!(r.rejections.never_fits, 1, "{policy:?}: 180 tokens never fit 128");
        assert_eq!((r.summary.completed, r.summary.rejected), (2, 2), "{policy:?}");
    }
    assert_eq!(simulate(&config(Policy::ReserveExact, 100), &[]).unwrap().summary.iterations, 0);
}

#[test]
fn idle_gaps_are_skipped() {
    let trace = [req(0, 0, 1, 2), req(1, 1_000_000_000, 1, 2)];
    let r = simulate(&config(Policy::Paged { block_size: 16 }, 64), &trace).unwrap();
    let iterations: Vec<u64> = r.series.iter().map(|p| p.iteration).collect();
    assert_eq!(iterations, vec![0, 1, 1_000_000_000, 1_000_000_001]);
}

#[test]
fn same_seed_same_result() {
    let spec = TraceGen {
        output: LengthDist::LogNormal { median: 300.0, sigma: 1.0, min: 1, max: 1500 },
        ..TraceGen::long_output(400, 9)
    };
    for policy in [Policy::ReservePow2, Policy::Paged { block_size: 32 }] {
        let a = simulate(&config(policy, 4096), &spec.generate()).unwrap();
        let b = simulate(&config(policy, 4096), &spec.generate()).unwrap();
        assert_eq!(a, b);
    }
}

/// A shared system prompt under paging: the prefix is held once, every request computes only
/// its own part, the books still balance, and more requests fit. Reservations cannot share.
#[test]
fn a_shared_system_prompt_is_stored_once() {
    let trace = TraceGen::system_prompt(300, 3, 512).generate();
    let paged = Policy::Paged { block_size: 16 };
    let run =
        |policy, sharing| simulate(&SimConfig { sharing, ..config(policy, 8192) }, &trace).unwrap();
    let (alone, shared) = (run(paged, false), run(paged, true));
    assert_eq!((alone.summary.completed, shared.summary.completed), (300, 300));
    assert_eq!((alone.summary.shared_pct, alone.summary.sharing_saved_pct), (0.0, 0.0));
    assert!(shared.summary.shared_pct > 0.0, "{:?}", shared.summary);
    assert!(shared.summary.sharing_saved_pct > 30.0, "{:?}", shared.summary);
    assert!(shared.summary.mean_running > 1.3 * alone.summary.mean_running);
    assert!(
        shared.summary.kv_bytes_per_request < 0.8 * shared.summary.kv_bytes_per_request_unshared
    );
    // Nearly every request finds a running member of the group: 511 of its 512 prefix tokens
    // (the prefix is 32 full blocks, so no copy-on-write) are not computed again.
    assert!(shared.traffic.prefix_hit_tokens >= 290 * 496, "{:?}", shared.traffic);
    assert!(shared.traffic.prefill_tokens < alone.traffic.prefill_tokens / 2);
    let pct = |s: &crate::Summary| {
        s.token_state_pct
            + s.shared_pct
            + s.reserved_pct
            + s.internal_pct
            + s.external_pct
            + s.free_pct
    };
    assert!((pct(&shared.summary) - 100.0).abs() < 1e-9);
    let reserved = run(Policy::ReserveExact, true);
    assert_eq!(reserved, run(Policy::ReserveExact, false), "no sharing without blocks");
}

/// n = 4 samples of each prompt: the whole prompt is shared but its last token, and the
/// partly filled block it ends in is copied on the sample's first write.
#[test]
fn parallel_samples_share_their_prompt_and_copy_on_write() {
    let trace = TraceGen::samples(400, 5, 4).generate();
    let cfg = SimConfig { sharing: true, ..config(Policy::Paged { block_size: 16 }, 8192) };
    let r = simulate(&cfg, &trace).unwrap();
    assert_eq!(r.summary.completed, 400);
    assert!(r.traffic.cow_tokens > 0, "prompts end mid-block: copies happen");
    assert!(r.summary.sharing_saved_pct > 5.0, "{:?}", r.summary);
    // Each copy moves fewer tokens than a block.
    assert!(r.traffic.cow_tokens < 16 * r.traffic.prefix_hit_tokens.div_ceil(16));
}

/// Under a tight budget, swapping keeps every generated token: nothing is recomputed while
/// the host pool has room, and the blocks moved out all come back. Without host memory it
/// falls back to recomputing.
#[test]
fn swap_preemption_moves_blocks_instead_of_recomputing() {
    let trace = TraceGen::chat(300, 7).generate();
    let tight = config(Policy::Paged { block_size: 16 }, 2048);
    let recompute = simulate(&tight, &trace).unwrap();
    let swap = SimConfig { preemption: Preemption::Swap, swap_bytes: 1 << 40, ..tight };
    let swapped = simulate(&swap, &trace).unwrap();
    assert!(recompute.summary.preemptions > 0 && recompute.traffic.recomputed_tokens > 0);
    assert!(swapped.summary.preemptions > 0);
    assert_eq!(swapped.traffic.recomputed_tokens, 0);
    assert_eq!(swapped.traffic.swap_outs, swapped.summary.preemptions);
    assert_eq!(swapped.traffic.swap_ins, swapped.traffic.swap_outs);
    assert_eq!(swapped.traffic.swap_bytes, swapped.traffic.swap_blocks * 16 * SMOL_FP32);
    assert_eq!(swapped.summary.completed, 300);
    assert!(swapped.traffic.prefill_tokens < recompute.traffic.prefill_tokens);
    let no_host = simulate(&SimConfig { swap_bytes: 0, ..swap }, &trace).unwrap();
    assert_eq!(no_host, recompute, "swap without host memory is recompute");
}

/// Random traffic over the paged memory: admissions with and without a donor, growth,
/// swap-out and swap-in, evictions and compactions, frees; after every operation the pools'
/// books check (every block free exactly when unreferenced, counts equal holders, no wholly
/// evicted block held), and the budget split sums to the budget. 100,000 operations.
#[test]
fn property_share_copy_swap_free_keep_the_books() {
    use crate::memory::{Donor, Growth, Holding, KvMemory, Lease};
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (bs, budget, host) = (4usize, 4 * 64 + 3, 4 * 24);
    let mut m = KvMemory::new(Policy::Paged { block_size: bs }, budget, 1, 4096, host).unwrap();
    // (lease, tokens held, tokens it will hold at the end, prefix group, evicted from)
    let mut live: Vec<(Lease, usize, usize, u64, bool)> = Vec::new();
    let mut out = Vec::new();
    let (mut forks, mut cows, mut swaps, mut full) = (0, 0, 0, 0);
    let (mut evictions, mut reclaimed, mut compacted, mut stranded_seen) = (0, 0, 0, 0);
    for step in 0..100_000 {
        match rng.random_range(0..10) {
            0..=2 => {
                let group = rng.random_range(0..3);
                let context = rng.random_range(2..40);
                let total = context + rng.random_range(0..20);
                let donor = live
                    .iter()
                    .find(|l| l.3 == group && !l.4 && rng.random_bool(0.7))
                    .map(|l| Donor { lease: l.0, tokens: l.1.min(context - 1).min(12) });
                let r = Request::new(step, 0, context, total - context + 1);
                match m.try_admit(&r, context, donor).unwrap() {
                    Some(a) => {
                        forks += usize::from(a.shared_tokens > 0);
                        cows += usize::from(a.copy.is_some());
                        live.push((a.lease, context, total, group, false));
                    }
                    None => full += 1,
                }
            }
            3..=5 if !live.is_empty() => {
                let i = rng.random_range(0..live.len());
                if live[i].1 < live[i].2 {
                    match m.grow(live[i].0).unwrap() {
                        Growth::Grown(_) => live[i].1 += 1,
                        Growth::NeedsMemory => full += 1,
                    }
                }
            }
            6 if !live.is_empty() => {
                let l = live.swap_remove(rng.random_range(0..live.len()));
                match m.swap_out(l.0).unwrap() {
                    Some(sw) => {
                        swaps += 1;
                        out.push((sw, l));
                    }
                    None => live.push(l),
                }
            }
            7 if !out.is_empty() => {
                let (sw, l) = out.swap_remove(rng.random_range(0..out.len()));
                match m.swap_in(sw, l.1 + 1).unwrap() {
                    Some(lease) => live.push((lease, l.1 + 1, l.2.max(l.1 + 1), l.3, false)),
                    None => out.push((sw, l)),
                }
            }
            8 if !live.is_empty() => {
                // Evict a few live tokens of one request, then maybe compact it.
                let i = rng.random_range(0..live.len());
                let alive = m.live_indices(live[i].0).unwrap();
                for _ in 0..rng.random_range(1..6).min(alive.len()) {
                    let k = alive[rng.random_range(0..alive.len())];
                    if let Ok(released) = m.evict(live[i].0, k) {
                        evictions += 1;
                        reclaimed += usize::from(released);
                    }
                }
                live[i].4 = true;
                if rng.random_bool(0.3) {
                    compacted += m.compact(live[i].0).unwrap().len();
                }
            }
            _ if !live.is_empty() => {
                m.release(live.swap_remove(rng.random_range(0..live.len())).0).unwrap();
            }
            _ => {}
        }
        m.check().unwrap_or_else(|e| panic!("step {step}: {e}"));
        let held = live.iter().map(|l| Holding { lease: l.0, context: l.1, total: l.2 });
        let snap = m.sample(held, None).unwrap();
        assert_eq!(snap.parts.total(), u128::from(budget), "step {step}: {:?}", snap.parts);
        assert!(snap.held_bytes <= snap.unshared_bytes);
        stranded_seen += usize::from(snap.parts.stranded > 0);
        let host_used: usize = out.iter().map(|o| o.0.blocks).sum();
        assert_eq!(snap.swapped_bytes, (host_used * bs) as u64);
    }
    assert!(
        forks > 1000 && cows > 100 && swaps > 1000 && full > 1000,
        "{forks} {cows} {swaps} {full}"
    );
    assert!(
        evictions > 10_000 && reclaimed > 100 && compacted > 100 && stranded_seen > 10_000,
        "{evictions} {reclaimed} {compacted} {stranded_seen}"
    );
    for (lease, ..) in live {
        m.release(lease).unwrap();
    }
    for (sw, l) in out {
        let lease = m.swap_in(sw, l.1 + 1).unwrap().unwrap();
        m.release(lease).unwrap();
    }
    m.check().unwrap();
    let snap = m.sample([], None).unwrap();
    assert_eq!((snap.parts.free, snap.swapped_bytes), (4 * 64, 0), "every count back to zero");
}

/// Each request keeps its newest `keep_tokens` (window) or those plus 4 sinks: no request holds
/// more live tokens, a window strands less than a block per request (its evictions run front
/// to back), sinks strand the rest of their first block, compaction moves tokens to give the
/// stranded slots back, and the budget still balances every iteration.
#[test]
fn keep_policies_on_the_paged_pool_strand_and_compaction_reclaims() {
    // All at once: memory, not arrivals, limits how many run.
    let trace = TraceGen { arrival_rate: 0.0, ..TraceGen::long_output(120, 4) }.generate();
    let paged = config(Policy::Paged { block_size: 16 }, 8192);
    let run = |policy, sink_tokens, compaction| {
        let eviction = Some(Eviction { policy, sink_tokens, keep_tokens: 256, compaction });
        simulate(&SimConfig { eviction, ..paged }, &trace).unwrap()
    };
    let full = simulate(&paged, &trace).unwrap();
    let window = run(kind("window"), 0, false);
    let sink = run(kind("sink"), 4, false);
    let sink_compact = run(kind("sink"), 4, true);
    for r in [&window, &sink, &sink_compact] {
        assert_eq!(r.summary.completed, 120);
        assert!(r.series.iter().all(|p| p.live_tokens <= 256 * p.running), "over the budget");
        assert!(r.traffic.evicted_tokens > 0);
        assert!(
            r.summary.mean_running > 2.0 * full.summary.mean_running,
            "{} vs {}",
            r.summary.mean_running,
            full.summary.mean_running
        );
    }
    // Without compaction, blocks come back only when wholly evicted; with it, by moving.
    assert!(window.traffic.blocks_reclaimed > 0 && sink.traffic.blocks_reclaimed > 0);
    // Window: at most one stranded block per request (the one it is emptying).
    assert!(window.series.iter().all(|p| p.stranded_blocks <= p.running));
    // Sinks keep 4 slots of their first block and strand its other 12 for good.
    assert!(sink.summary.stranded_pct > window.summary.stranded_pct, "{:?}", sink.summary);
    assert_eq!(window.traffic.compacted_tokens, 0);
    assert!(sink_compact.traffic.compacted_tokens > 0);
    assert!(sink_compact.summary.stranded_pct < sink.summary.stranded_pct);
    let too_small =
        Eviction { policy: kind("sink"), sink_tokens: 8, keep_tokens: 8, compaction: false };
    let bad = SimConfig { eviction: Some(too_small), ..paged };
    let refused = simulate(&bad, &trace).unwrap_err().to_string();
    assert!(refused.contains("sink_tokens"), "{refused}");
    // A policy that needs attention scores has none to read in the simulator.
    let h2o = Eviction { policy: kind("h2o"), ..too_small };
    let refused = simulate(&SimConfig { eviction: Some(h2o), ..paged }, &trace).unwrap_err();
    assert!(refused.to_string().contains("`h2o`"), "{refused}");
    let window_only = Eviction { policy: kind("window"), ..too_small };
    let reserved = SimConfig { policy: Policy::ReserveExact, eviction: Some(window_only), ..paged };
    assert!(matches!(simulate(&reserved, &trace), Err(ServingError::InvalidConfig(_))));
}

/// The budget identity — every byte a token state (own or shared), reserved, internal or
/// external fragmentation, stranded or free — holds at every iteration (`simulate` fails
/// otherwise) for every policy, with sharing, swap, and keep-policies with and without
/// compaction; the means sum to 100%.
#[test]
fn the_budget_identity_holds_for_every_mode() {
    let traces = [
        TraceGen::system_prompt(150, 8, 200).generate(),
        TraceGen::samples(150, 8, 3).generate(),
        TraceGen::long_output(60, 8).generate(),
    ];
    let mut modes = vec![];
    for policy in Policy::standard_set() {
        modes.push(SimConfig::new(policy, 3 * 6000 + 7, 3, 2560));
    }
    for block_size in [1, 16, 64] {
        let paged = SimConfig::new(Policy::Paged { block_size }, 3 * 6000 + 7, 3, 2560);
        modes.push(SimConfig { sharing: true, ..paged });
        modes.push(SimConfig { preemption: Preemption::Swap, swap_bytes: 3 * 4000, ..paged });
        for (policy, sink_tokens) in [("window", 0), ("shift-window", 0), ("sink", 4)] {
            let policy = kind(policy);
            for compaction in [false, true] {
                let eviction = Some(Eviction { policy, sink_tokens, keep_tokens: 100, compaction });
                modes.push(SimConfig { eviction, ..paged });
            }
        }
    }
    for cfg in &modes {
        for trace in &traces {
            let r = simulate(cfg, trace).unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
            let s = &r.summary;
            let sum = s.token_state_pct
                + s.shared_pct
                + s.reserved_pct
                + s.internal_pct
                + s.external_pct
                + s.free_pct
                + s.stranded_pct;
            assert!((sum - 100.0).abs() < 1e-9, "{cfg:?}: {sum}");
            assert_eq!(s.completed + s.rejected, s.requests);
        }
    }
}

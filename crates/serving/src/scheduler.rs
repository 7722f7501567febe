//! The continuous-batching scheduler: FCFS admission, one token per running request per
//! iteration, preemption when paged memory runs out (as vLLM does: recompute, or swap to host
//! memory), prefix sharing between requests of a prefix group.
//!
//! One iteration, in order:
//!
//! 1. requests whose arrival is due join the back of the waiting queue;
//! 2. **decode**: every running request, oldest admission first, stores one more token. If the
//!    pool is out of blocks, the *latest admitted* running request is preempted (its blocks
//!    freed, or first copied to the host pool under `swap`; its progress kept; it goes back to
//!    the *front* of the queue), repeatedly, until the growth fits or the request itself was
//!    the latest;
//! 3. **admit**: unless step 2 preempted (vLLM's V1 scheduler also admits nothing in a step
//!    that preempted, so the freed blocks wait for the victim), admit from the queue head
//!    while memory allows, stopping at the first request that does not fit (head-of-line, no
//!    skipping). Prefill stores the prompt (plus, after a recompute preemption, the tokens
//!    already generated) and produces one token; with sharing, a request whose prefix group
//!    has a running member shares that member's prefix blocks and prefills only the rest (at
//!    least its last prompt token, whose logits it needs: vLLM's rule); a swapped-out request
//!    gets fresh blocks, its KV copied back, and decodes;
//! 4. **sample** the memory split ([`crate::metrics`]) and check it sums to the budget;
//! 5. the iteration's seconds: measured by the [`Executor`], or from the [`CostModel`];
//! 6. requests that have produced all their output tokens finish and free their memory.
//!
//! An [`Executor`] given to [`simulate_with`] sees each iteration's work as it is scheduled
//! (who was preempted, who decodes, who is prefilled, where each one's tokens are stored) and
//! can run it through a real model; [`simulate`] runs none.
//!
//! Iterations with nothing running and nothing waiting are skipped (the clock jumps to the
//! next arrival) and not sampled, so averages describe the busy server.
//!
//! # Termination
//!
//! Requests longer than `max_seq_len`, or that would not fit the budget even alone, are
//! rejected before the run. Every other request fits alone, and the oldest running request is
//! never preempted while younger ones run, so every busy iteration produces at least one token.
//! The run therefore ends within `sum(output_tokens)` busy iterations; exceeding that bound is
//! reported as [`ServingError::NoProgress`] instead of looping.

use std::collections::VecDeque;

use kvlab_strategies::block_pool::Moved;

use serde::Serialize;

use crate::{
    ServingError,
    config::{Eviction, KeepRule, Preemption, SimConfig},
    latency::{Instant, Latency, LatencyBook},
    memory::{Donor, Growth, Holding, KvMemory, Lease, Swapped},
    metrics::{Accumulator, IterationSample, RunCounts, Summary},
    trace::Request,
    work::{Executor, IterationWork, RowWork},
};

/// Requests the run refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// `prompt + output > max_seq_len`.
    pub too_long: usize,
    /// Larger than the whole budget under this policy (it could never be admitted).
    pub never_fits: usize,
}

/// What preemption and sharing moved, copied or spared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Prompt tokens prefilled, recomputed tokens included (shared ones not).
    pub prefill_tokens: u64,
    /// Prompt and generated tokens prefilled again after recompute preemptions.
    pub recomputed_tokens: u64,
    /// Prompt tokens not computed because a running request of their group held them.
    pub prefix_hit_tokens: u64,
    /// Token slots copied by copy-on-write.
    pub cow_tokens: u64,
    pub swap_outs: u64,
    pub swap_ins: u64,
    /// Blocks and bytes moved between device and host, both ways.
    pub swap_blocks: u64,
    pub swap_bytes: u64,
    /// Seconds of the run: measured (executed) or modelled; `None` without a clock.
    pub elapsed_s: Option<f64>,
    /// Tokens a keep-policy evicted, blocks that released, and tokens compaction moved.
    pub evicted_tokens: u64,
    pub blocks_reclaimed: u64,
    pub compacted_tokens: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimResult {
    pub summary: Summary,
    /// One row per busy iteration, for concurrency-over-time charts.
    pub series: Vec<IterationSample>,
    pub rejections: Rejections,
    pub traffic: Traffic,
    pub latency: Latency,
    /// The most internal-fragmentation tokens any single request held at any iteration:
    /// below `block_size` for `paged`, `reservation - (prompt + output)` for `reserve-*`.
    pub max_internal_tokens_per_request: usize,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    req: Request,
    /// Tokens generated before a preemption (0 for a fresh request).
    generated: usize,
    /// Its KV in the host pool, when it was swapped out.
    swapped: Option<Swapped>,
}

#[derive(Debug, Clone)]
struct Running {
    req: Request,
    generated: usize,
    lease: Lease,
    /// Under a keep-policy: the logical slots of its live tokens, oldest first.
    ages: VecDeque<usize>,
}

impl Running {
    /// Token slots it holds: prompt + generated (the last one's K/V is written when it is fed).
    fn held(&self) -> usize {
        self.req.prompt_tokens + self.generated
    }

    fn holding(&self) -> Holding {
        Holding { lease: self.lease, context: self.held(), total: self.req.total_tokens() }
    }
}

/// Serves `requests` under `config` and reports what memory did (nothing is executed, and no
/// per-iteration work is built).
pub fn simulate(config: &SimConfig, requests: &[Request]) -> Result<SimResult, ServingError> {
    serve(config, requests, None)
}

/// [`simulate`], handing every busy iteration's work to `exec` before the next one starts;
/// its measured seconds are the run's clock.
pub fn simulate_with(
    config: &SimConfig,
    requests: &[Request],
    exec: &mut dyn Executor,
) -> Result<SimResult, ServingError> {
    serve(config, requests, Some(exec))
}

/// The scheduler loop.
///
/// Requests are served in arrival order (ties in slice order). Errors: an invalid config or a
/// budget that no request could ever fit ([`ServingError::BudgetTooSmall`]), a request with
/// zero prompt or output tokens or a prefix longer than its prompt, and internal
/// inconsistencies (never expected). Requests that are too long or too large for the budget
/// are *rejected and counted*, not errors.
fn serve(
    config: &SimConfig,
    requests: &[Request],
    mut exec: Option<&mut dyn Executor>,
) -> Result<SimResult, ServingError> {
    if let Some(why) = config.cost.as_ref().and_then(|c| c.invalid()) {
        return Err(ServingError::InvalidConfig(why));
    }
    if let Some(why) =
        config.eviction.and_then(|ev| eviction_unsupported(config, &ev, exec.is_some()))
    {
        return Err(ServingError::InvalidConfig(why));
    }
    let swap_bytes = match config.preemption {
        Preemption::Swap => config.swap_bytes,
        Preemption::Recompute => 0,
    };
    let mut memory = KvMemory::new(
        config.policy,
        config.budget_bytes,
        config.bytes_per_token,
        config.max_seq_len,
        swap_bytes,
    )?;
    let sharing = config.sharing && config.policy.block_size().is_some();
    let mut rejections = Rejections::default();
    let mut pending: Vec<Request> = Vec::with_capacity(requests.len());
    for req in requests {
        if req.prompt_tokens == 0 || req.output_tokens == 0 {
            return Err(ServingError::InvalidRequest {
                id: req.id,
                reason: "prompt and output need at least one token each",
            });
        }
        if req.prefix.is_some_and(|p| p.tokens == 0 || p.tokens > req.prompt_tokens) {
            return Err(ServingError::InvalidRequest {
                id: req.id,
                reason: "a shared prefix needs 1 to prompt_tokens tokens",
            });
        }
        if req.total_tokens() > config.max_seq_len {
            rejections.too_long += 1;
        } else if !memory.ever_fits(req) {
            rejections.never_fits += 1;
        } else {
            pending.push(*req);
        }
    }
    pending.sort_by_key(|r| r.arrival); // stable: ties keep slice order
    let max_busy: u64 = pending.iter().map(|r| r.output_tokens as u64).sum::<u64>() + 1;
    let mut pending: VecDeque<Request> = pending.into();

    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    let mut acc = Accumulator::default();
    let mut counts = RunCounts { requests: requests.len(), ..RunCounts::default() };
    let mut traffic = Traffic::default();
    let mut latency = LatencyBook::default();
    let mut max_internal = 0usize;
    let mut iteration = 0u64;
    let clocked = exec.is_some() || config.cost.is_some();
    let mut clock = 0.0f64;
    let block_bytes = memory.block_bytes();

    loop {
        if waiting.is_empty() && running.is_empty() {
            match pending.front() {
                None => break,
                Some(next) => iteration = iteration.max(next.arrival),
            }
        }
        let now = Instant { iteration, seconds: clocked.then_some(clock) };
        while let Some(req) = pending.front().copied().filter(|r| r.arrival <= iteration) {
            pending.pop_front();
            latency.arrived(req.id, now);
            waiting.push_back(Waiting { req, generated: 0, swapped: None });
        }
        if acc.iterations() >= max_busy {
            return Err(ServingError::NoProgress { iterations: acc.iterations() });
        }
        let mut work = IterationWork::default();
        let (mut prefill_now, mut swap_blocks_now) = (0u64, 0u64);

        // Decode, oldest first; preempt the latest admitted when the pool is dry.
        let mut preempted_now = false;
        let mut i = 0;
        while i < running.len() {
            match memory.grow(running[i].lease)? {
                Growth::Grown(copy) => {
                    if let Some(copy) = copy {
                        traffic.cow_tokens += copy.from.len() as u64;
                        work.copies.push(copy);
                    }
                    running[i].generated += 1;
                    if let Some(ev) = &config.eviction {
                        let (used, _) = memory.used_and_live(running[i].lease)?;
                        running[i].ages.push_back(used - 1);
                        keep(ev, &mut running[i], &mut memory, &mut traffic)?;
                    }
                    i += 1;
                }
                Growth::NeedsMemory => {
                    let victim = running.pop().ok_or(ServingError::LeaseMismatch)?;
                    // Its K/V: every held slot but the last (that token is not fed yet).
                    let stored = victim.held() - 1;
                    let slots = match exec {
                        Some(_) => memory.slots(victim.lease, stored)?,
                        None => Vec::new(),
                    };
                    let swapped = match config.preemption {
                        Preemption::Swap => memory.swap_out(victim.lease)?,
                        Preemption::Recompute => None,
                    };
                    match swapped {
                        Some(sw) => {
                            traffic.swap_outs += 1;
                            swap_blocks_now += sw.blocks as u64;
                            work.swapped_out.push(RowWork::new(&victim.req, slots));
                        }
                        None => {
                            memory.release(victim.lease)?;
                            work.preempted.push(victim.req.id);
                        }
                    }
                    waiting.push_front(Waiting {
                        req: victim.req,
                        generated: victim.generated,
                        swapped,
                    });
                    counts.preemptions += 1;
                    preempted_now = true;
                }
            }
        }

        // Admit FCFS while the head fits (vLLM skips admission in a step that preempted).
        let decoders = running.len();
        if !preempted_now {
            while let Some(w) = waiting.front().copied() {
                let context = w.req.prompt_tokens + w.generated + 1;
                let row = if let Some(sw) = w.swapped {
                    let Some(lease) = memory.swap_in(sw, context)? else { break };
                    traffic.swap_ins += 1;
                    swap_blocks_now += sw.blocks as u64;
                    prefill_now += 1;
                    (lease, RowWork { swapped_in: true, ..RowWork::new(&w.req, Vec::new()) })
                } else {
                    let donor = if sharing { donor_for(&running, &w.req, context) } else { None };
                    let Some(adm) = memory.try_admit(&w.req, context, donor)? else { break };
                    let fed = (context - 1) as u64;
                    let computed = fed - adm.shared_tokens as u64;
                    prefill_now += computed;
                    traffic.prefix_hit_tokens += adm.shared_tokens as u64;
                    if w.generated > 0 {
                        traffic.recomputed_tokens += fed;
                    }
                    if let Some(c) = &adm.copy {
                        traffic.cow_tokens += c.from.len() as u64;
                    }
                    let base = RowWork::new(&w.req, Vec::new());
                    (adm.lease, RowWork { shared: adm.shared_tokens, copy: adm.copy, ..base })
                };
                waiting.pop_front();
                let (lease, mut row) = row;
                if exec.is_some() {
                    row.slots = memory.slots(lease, context)?;
                    work.prefill.push(row);
                }
                let mut r = Running {
                    req: w.req,
                    generated: w.generated + 1,
                    lease,
                    ages: VecDeque::new(),
                };
                if let Some(ev) = &config.eviction {
                    r.ages = (0..context).collect();
                    keep(ev, &mut r, &mut memory, &mut traffic)?;
                }
                running.push(r);
            }
        }
        if running.is_empty() && !waiting.is_empty() {
            // Unreachable after the up-front filter; reject rather than wait forever.
            waiting.pop_front();
            rejections.never_fits += 1;
            continue;
        }

        let snap =
            memory.sample(running.iter().map(Running::holding), waiting.front().map(|w| &w.req))?;
        if snap.parts.total() != u128::from(config.budget_bytes) {
            return Err(ServingError::AccountingMismatch {
                iteration,
                accounted: snap.parts.total(),
                budget: config.budget_bytes,
            });
        }
        max_internal = max_internal.max(snap.max_internal_tokens);
        counts.tokens_produced += running.len() as u64;
        acc.record(iteration, &snap, running.len(), waiting.len(), config.budget_bytes);
        traffic.prefill_tokens += prefill_now;
        traffic.swap_blocks += swap_blocks_now;
        traffic.swap_bytes += swap_blocks_now * block_bytes;

        let seconds = match exec.as_deref_mut() {
            Some(exec) => {
                for r in &running[..decoders] {
                    work.decode.push(RowWork {
                        slots: memory.slots(r.lease, r.held())?,
                        ..RowWork::new(&r.req, Vec::new())
                    });
                }
                work.finished = running
                    .iter()
                    .filter(|r| r.generated >= r.req.output_tokens)
                    .map(|r| r.req.id)
                    .collect();
                Some(exec.iteration(&work).map_err(ServingError::Execution)?)
            }
            None => config.cost.map(|c| {
                c.iteration_s(
                    decoders > 0,
                    prefill_now,
                    swap_blocks_now,
                    swap_blocks_now * block_bytes,
                )
            }),
        };
        clock += seconds.unwrap_or(0.0);
        let end = Instant { iteration, seconds: clocked.then_some(clock) };
        for r in &running {
            latency.produced(r.req.id, end);
        }

        let mut still = Vec::with_capacity(running.len());
        for r in running.drain(..) {
            if r.generated >= r.req.output_tokens {
                memory.release(r.lease)?;
                latency.finished(r.req.id, end, r.req.output_tokens);
                counts.completed += 1;
            } else {
                still.push(r);
            }
        }
        running = still;
        iteration += 1;
    }

    counts.rejected = rejections.too_long + rejections.never_fits;
    traffic.elapsed_s = clocked.then_some(clock);
    let summary = acc.summary(config.policy, config.budget_bytes, counts);
    Ok(SimResult {
        summary,
        series: std::mem::take(&mut acc.series),
        rejections,
        traffic,
        latency: latency.summary(),
        max_internal_tokens_per_request: max_internal,
    })
}

/// Why a keep-policy cannot run with the rest of `config`, if it cannot.
fn eviction_unsupported(config: &SimConfig, ev: &Eviction, executed: bool) -> Option<&'static str> {
    let sinks = match ev.rule {
        KeepRule::Sink { tokens } => tokens,
        KeepRule::Window => 0,
    };
    if config.policy.block_size().is_none() {
        Some("a keep-policy evicts from paged memory only (a reservation keeps its extent)")
    } else if ev.keep_tokens <= sinks {
        Some("a keep-policy needs keep_tokens above its sink tokens")
    } else if config.sharing || config.preemption == Preemption::Swap {
        Some("a keep-policy runs without sharing and with recompute preemption")
    } else if executed {
        Some("a keep-policy on the paged pool is simulated only (not executed)")
    } else {
        None
    }
}

/// Evicts `r`'s tokens by `ev.rule` until it keeps `ev.keep_tokens`, then compacts when asked.
fn keep(
    ev: &Eviction,
    r: &mut Running,
    memory: &mut KvMemory,
    traffic: &mut Traffic,
) -> Result<(), ServingError> {
    while r.ages.len() > ev.keep_tokens {
        let at = match ev.rule {
            KeepRule::Window => 0,
            KeepRule::Sink { tokens } => tokens,
        };
        let victim = r.ages.remove(at).ok_or(ServingError::Internal("no token to evict"))?;
        traffic.blocks_reclaimed += u64::from(memory.evict(r.lease, victim)?);
        traffic.evicted_tokens += 1;
    }
    // Compact once a whole block's worth is stranded: then it frees a block the request will
    // not need again at once (a window strands less than a block, and is never compacted).
    if ev.compaction && memory.stranded(r.lease)? >= memory.block_tokens() {
        let moves: Vec<Moved> = memory.compact(r.lease)?;
        for m in &moves {
            let at = r.ages.iter().position(|&k| k == m.from);
            let slot = at.and_then(|i| r.ages.get_mut(i)).ok_or(ServingError::Internal(
                "compaction moved a token the request does not hold",
            ))?;
            *slot = m.to;
        }
        traffic.compacted_tokens += moves.len() as u64;
    }
    Ok(())
}

/// The running request `req` can share its prefix with: the oldest one of its prefix group,
/// sharing the prefix but at least one token less than `req` feeds (it computes the logits of
/// its last prompt token itself). `None` when there is none or nothing to share.
fn donor_for(running: &[Running], req: &Request, context: usize) -> Option<Donor> {
    let prefix = req.prefix?;
    let (donor, theirs) = running
        .iter()
        .find_map(|r| r.req.prefix.filter(|p| p.group == prefix.group).map(|p| (r, p.tokens)))?;
    let tokens = prefix.tokens.min(theirs).min(context.saturating_sub(2));
    (tokens > 0).then_some(Donor { lease: donor.lease, tokens })
}

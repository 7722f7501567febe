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

pub use crate::sim_result::{Rejections, SimResult, Traffic};
use crate::{
    ServingError,
    config::{Preemption, SimConfig},
    in_flight::LiveToken,
    in_flight::{Running, Waiting},
    keep_policy::PagedKeep,
    latency::{Instant, LatencyBook},
    memory::{Donor, Growth, KvMemory, Lease, Swapped},
    metrics::{Accumulator, RunCounts},
    trace::Request,
    work::{Executor, IterationWork, RowWork},
};

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
fn serve<'a>(
    config: &'a SimConfig,
    requests: &[Request],
    exec: Option<&'a mut dyn Executor>,
) -> Result<SimResult, ServingError> {
    let mut server = Server::new(config, requests, exec)?;
    while server.next_busy_iteration() {
        server.arrivals();
        if server.acc.iterations() >= server.max_busy {
            return Err(ServingError::NoProgress { iterations: server.acc.iterations() });
        }
        let mut step = Step::default();
        server.decode(&mut step)?;
        // vLLM skips admission in a step that preempted.
        if !step.preempted {
            server.admit(&mut step)?;
        }
        if server.running.is_empty() && !server.waiting.is_empty() {
            // Unreachable after the up-front filter; reject rather than wait forever.
            server.waiting.pop_front();
            server.rejections.never_fits += 1;
            continue;
        }
        server.sample(&step)?;
        let end = server.run(&mut step)?;
        server.finish(end)?;
        server.iteration += 1;
    }
    Ok(server.result())
}

/// What one iteration did so far: its work for the executor and what it costs.
#[derive(Default)]
struct Step {
    work: IterationWork,
    /// Prompt tokens prefilled (recomputed ones included) and blocks swapped, either way.
    prefill_tokens: u64,
    swap_blocks: u64,
    /// Whether decode preempted someone (then nothing is admitted).
    preempted: bool,
    /// Running requests that decode this iteration (those admitted before it).
    decoders: usize,
}

/// The scheduler's state between iterations.
struct Server<'a> {
    config: &'a SimConfig,
    exec: Option<&'a mut dyn Executor>,
    memory: KvMemory,
    sharing: bool,
    /// Accepted requests not arrived yet, in arrival order.
    pending: VecDeque<Request>,
    waiting: VecDeque<Waiting>,
    running: Vec<Running>,
    rejections: Rejections,
    /// Busy iterations after which the run cannot be making progress.
    max_busy: u64,
    acc: Accumulator,
    counts: RunCounts,
    traffic: Traffic,
    latency: LatencyBook,
    max_internal: usize,
    iteration: u64,
    /// Whether iterations take seconds (measured or modelled), and the seconds so far.
    clocked: bool,
    clock: f64,
    block_bytes: u64,
    /// The keep-policy each request's tokens are evicted by, if any.
    keep: Option<PagedKeep>,
}

impl<'a> Server<'a> {
    /// Checks `config` and `requests`, and sets aside those too long or too large to serve.
    fn new(
        config: &'a SimConfig,
        requests: &[Request],
        exec: Option<&'a mut dyn Executor>,
    ) -> Result<Self, ServingError> {
        if let Some(why) = config.cost.as_ref().and_then(|c| c.invalid()) {
            return Err(ServingError::InvalidConfig(why));
        }
        let keep = match &config.eviction {
            Some(ev) => Some(PagedKeep::new(config, ev, exec.is_some())?),
            None => None,
        };
        let swap_bytes = match config.preemption {
            Preemption::Swap => config.swap_bytes,
            Preemption::Recompute => 0,
        };
        let memory = KvMemory::new(
            config.policy,
            config.budget_bytes,
            config.bytes_per_token,
            config.max_seq_len,
            swap_bytes,
        )?;
        let mut rejections = Rejections::default();
        let mut pending: Vec<Request> = Vec::with_capacity(requests.len());
        for req in requests {
            check_request(req)?;
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
        Ok(Server {
            config,
            clocked: exec.is_some() || config.cost.is_some(),
            exec,
            sharing: config.sharing && config.policy.block_size().is_some(),
            block_bytes: memory.block_bytes(),
            keep,
            memory,
            pending: pending.into(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            rejections,
            max_busy,
            acc: Accumulator::default(),
            counts: RunCounts { requests: requests.len(), ..RunCounts::default() },
            traffic: Traffic::default(),
            latency: LatencyBook::default(),
            max_internal: 0,
            iteration: 0,
            clock: 0.0,
        })
    }

    fn now(&self) -> Instant {
        Instant { iteration: self.iteration, seconds: self.clocked.then_some(self.clock) }
    }

    /// Skips idle iterations to the next arrival; false once nothing is left to serve.
    fn next_busy_iteration(&mut self) -> bool {
        if self.waiting.is_empty() && self.running.is_empty() {
            match self.pending.front() {
                None => return false,
                Some(next) => self.iteration = self.iteration.max(next.arrival),
            }
        }
        true
    }

    /// Requests whose arrival is due join the back of the queue.
    fn arrivals(&mut self) {
        let now = self.now();
        while let Some(req) = self.pending.front().copied().filter(|r| r.arrival <= self.iteration)
        {
            self.pending.pop_front();
            self.latency.arrived(req.id, now);
            self.waiting.push_back(Waiting { req, generated: 0, swapped: None });
        }
    }

    /// Decode, oldest first; preempt the latest admitted when the pool is dry.
    fn decode(&mut self, step: &mut Step) -> Result<(), ServingError> {
        let mut i = 0;
        while i < self.running.len() {
            match self.memory.grow(self.running[i].lease)? {
                Growth::Grown(copy) => {
                    if let Some(copy) = copy {
                        self.traffic.cow_tokens += copy.from.len() as u64;
                        step.work.copies.push(copy);
                    }
                    let r = &mut self.running[i];
                    r.generated += 1;
                    if let Some(keep) = &self.keep {
                        let (used, _) = self.memory.used_and_live(r.lease)?;
                        r.live.push_back(LiveToken { position: r.held() - 1, slot: used - 1 });
                        keep.keep(r, &mut self.memory, &mut self.traffic)?;
                    }
                    i += 1;
                }
                Growth::NeedsMemory => self.preempt_latest(step)?,
            }
        }
        step.decoders = self.running.len();
        Ok(())
    }

    /// Preempts the latest admitted running request: swapped out or freed, back to the front.
    fn preempt_latest(&mut self, step: &mut Step) -> Result<(), ServingError> {
        let victim = self.running.pop().ok_or(ServingError::LeaseMismatch)?;
        // Its K/V: every held slot but the last (that token is not fed yet).
        let stored = victim.held() - 1;
        let slots = match self.exec {
            Some(_) => self.memory.slots(victim.lease, stored)?,
            None => Vec::new(),
        };
        let swapped = match self.config.preemption {
            Preemption::Swap => self.memory.swap_out(victim.lease)?,
            Preemption::Recompute => None,
        };
        match swapped {
            Some(sw) => {
                self.traffic.swap_outs += 1;
                step.swap_blocks += sw.blocks as u64;
                step.work.swapped_out.push(RowWork::new(&victim.req, slots));
            }
            None => {
                self.memory.release(victim.lease)?;
                step.work.preempted.push(victim.req.id);
            }
        }
        self.waiting.push_front(Waiting { req: victim.req, generated: victim.generated, swapped });
        self.counts.preemptions += 1;
        step.preempted = true;
        Ok(())
    }

    /// Admits FCFS while the head of the queue fits.
    fn admit(&mut self, step: &mut Step) -> Result<(), ServingError> {
        while let Some(w) = self.waiting.front().copied() {
            let context = w.req.prompt_tokens + w.generated + 1;
            let row = match w.swapped {
                Some(sw) => self.swap_in(&w, sw, context, step)?,
                None => self.prefill(&w, context, step)?,
            };
            let Some((lease, mut row)) = row else { break };
            self.waiting.pop_front();
            if self.exec.is_some() {
                row.slots = self.memory.slots(lease, context)?;
                step.work.prefill.push(row);
            }
            let mut r =
                Running { req: w.req, generated: w.generated + 1, lease, live: VecDeque::new() };
            if let Some(keep) = &self.keep {
                // Freshly prefilled: token p at slot p.
                r.live = (0..context).map(|p| LiveToken { position: p, slot: p }).collect();
                keep.keep(&mut r, &mut self.memory, &mut self.traffic)?;
            }
            self.running.push(r);
        }
        Ok(())
    }

    /// A swapped-out request gets fresh blocks and its KV copied back; `None` if none fit.
    fn swap_in(
        &mut self,
        w: &Waiting,
        sw: Swapped,
        context: usize,
        step: &mut Step,
    ) -> Result<Option<(Lease, RowWork)>, ServingError> {
        let Some(lease) = self.memory.swap_in(sw, context)? else { return Ok(None) };
        self.traffic.swap_ins += 1;
        step.swap_blocks += sw.blocks as u64;
        step.prefill_tokens += 1;
        Ok(Some((lease, RowWork { swapped_in: true, ..RowWork::new(&w.req, Vec::new()) })))
    }

    /// A fresh or recomputed request is admitted, sharing a donor's prefix when it can, and
    /// prefills the rest; `None` if it does not fit.
    fn prefill(
        &mut self,
        w: &Waiting,
        context: usize,
        step: &mut Step,
    ) -> Result<Option<(Lease, RowWork)>, ServingError> {
        let donor = if self.sharing { donor_for(&self.running, &w.req, context) } else { None };
        let Some(adm) = self.memory.try_admit(&w.req, context, donor)? else { return Ok(None) };
        let fed = (context - 1) as u64;
        let computed = fed - adm.shared_tokens as u64;
        step.prefill_tokens += computed;
        self.traffic.prefix_hit_tokens += adm.shared_tokens as u64;
        if w.generated > 0 {
            self.traffic.recomputed_tokens += fed;
        }
        if let Some(c) = &adm.copy {
            self.traffic.cow_tokens += c.from.len() as u64;
        }
        let base = RowWork::new(&w.req, Vec::new());
        Ok(Some((adm.lease, RowWork { shared: adm.shared_tokens, copy: adm.copy, ..base })))
    }

    /// Samples the memory split, checks it sums to the budget, and counts the iteration.
    fn sample(&mut self, step: &Step) -> Result<(), ServingError> {
        let budget = self.config.budget_bytes;
        let head = self.waiting.front().map(|w| &w.req);
        let snap = self.memory.sample(self.running.iter().map(Running::holding), head)?;
        if snap.parts.total() != u128::from(budget) {
            return Err(ServingError::AccountingMismatch {
                iteration: self.iteration,
                accounted: snap.parts.total(),
                budget,
            });
        }
        self.max_internal = self.max_internal.max(snap.max_internal_tokens);
        self.counts.tokens_produced += self.running.len() as u64;
        self.acc.record(self.iteration, &snap, self.running.len(), self.waiting.len(), budget);
        self.traffic.prefill_tokens += step.prefill_tokens;
        self.traffic.swap_blocks += step.swap_blocks;
        self.traffic.swap_bytes += step.swap_blocks * self.block_bytes;
        Ok(())
    }

    /// The iteration's seconds, measured by the executor or from the cost model; returns
    /// the instant it ends, at which every running request produced a token.
    fn run(&mut self, step: &mut Step) -> Result<Instant, ServingError> {
        let seconds = match self.exec.as_deref_mut() {
            Some(exec) => {
                for r in &self.running[..step.decoders] {
                    step.work.decode.push(RowWork {
                        slots: self.memory.slots(r.lease, r.held())?,
                        ..RowWork::new(&r.req, Vec::new())
                    });
                }
                step.work.finished = self
                    .running
                    .iter()
                    .filter(|r| r.generated >= r.req.output_tokens)
                    .map(|r| r.req.id)
                    .collect();
                Some(exec.iteration(&step.work).map_err(ServingError::Execution)?)
            }
            None => self.config.cost.map(|c| {
                c.iteration_s(
                    step.decoders > 0,
                    step.prefill_tokens,
                    step.swap_blocks,
                    step.swap_blocks * self.block_bytes,
                )
            }),
        };
        self.clock += seconds.unwrap_or(0.0);
        let end = self.now();
        for r in &self.running {
            self.latency.produced(r.req.id, end);
        }
        Ok(end)
    }

    /// Requests that produced all their output tokens finish and free their memory.
    fn finish(&mut self, end: Instant) -> Result<(), ServingError> {
        let mut still = Vec::with_capacity(self.running.len());
        for r in self.running.drain(..) {
            if r.generated >= r.req.output_tokens {
                self.memory.release(r.lease)?;
                self.latency.finished(r.req.id, end, r.req.output_tokens);
                self.counts.completed += 1;
            } else {
                still.push(r);
            }
        }
        self.running = still;
        Ok(())
    }

    fn result(mut self) -> SimResult {
        self.counts.rejected = self.rejections.too_long + self.rejections.never_fits;
        self.traffic.elapsed_s = self.clocked.then_some(self.clock);
        let summary = self.acc.summary(self.config.policy, self.config.budget_bytes, self.counts);
        SimResult {
            summary,
            series: std::mem::take(&mut self.acc.series),
            rejections: self.rejections,
            traffic: self.traffic,
            latency: self.latency.summary(),
            max_internal_tokens_per_request: self.max_internal,
        }
    }
}

/// A request with no prompt or output token, or a shared prefix outside its prompt, is an
/// error (not a rejection: the trace itself is wrong).
fn check_request(req: &Request) -> Result<(), ServingError> {
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

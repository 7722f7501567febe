//! The continuous-batching scheduler: FCFS admission, one token per running request per
//! iteration, recompute preemption when paged memory runs out (as vLLM does).
//!
//! One iteration, in order:
//!
//! 1. requests whose arrival is due join the back of the waiting queue;
//! 2. **decode**: every running request, oldest admission first, stores one more token. If the
//!    pool is out of blocks, the *latest admitted* running request is preempted (its blocks
//!    freed, its progress kept, and it goes back to the *front* of the queue), repeatedly,
//!    until the growth fits or the request itself was the latest;
//! 3. **admit**: unless step 2 preempted (vLLM's V1 scheduler also admits nothing in a step
//!    that preempted, so the freed blocks wait for the victim), admit from the queue head
//!    while memory allows, stopping at the first request that does not fit (head-of-line, no
//!    skipping). Prefill stores the prompt (plus, after a preemption, the tokens already
//!    generated: recompute) and produces one token;
//! 4. **sample** the memory split ([`crate::metrics`]) and check it sums to the budget;
//! 5. requests that have produced all their output tokens finish and free their memory.
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

use serde::{Deserialize, Serialize};

use crate::{
    ServingError,
    memory::{Growth, Holding, KvMemory, Lease},
    metrics::{Accumulator, IterationSample, RunCounts, Summary},
    policy::Policy,
    trace::Request,
};

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimConfig {
    pub policy: Policy,
    /// KV memory available to requests, in bytes.
    pub budget_bytes: u64,
    /// KV bytes one token costs across all layers: `2 (K and V) * layers * kv_heads *
    /// head_dim * bytes per element`, e.g. `2 * 30 * 3 * 64 * 4 = 46_080` for SmolLM2-135M
    /// in fp32.
    pub bytes_per_token: u64,
    /// The longest `prompt + output` the server accepts; `reserve-max` reserves this much.
    pub max_seq_len: usize,
}

/// Requests the run refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// `prompt + output > max_seq_len`.
    pub too_long: usize,
    /// Larger than the whole budget under this policy (it could never be admitted).
    pub never_fits: usize,
}

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimResult {
    pub summary: Summary,
    /// One row per busy iteration, for concurrency-over-time charts.
    pub series: Vec<IterationSample>,
    pub rejections: Rejections,
    /// Prompt and generated tokens prefilled again after preemptions (work lost to them).
    pub recomputed_tokens: u64,
    /// The most internal-fragmentation tokens any single request held at any iteration:
    /// below `block_size` for `paged`, `reservation - (prompt + output)` for `reserve-*`.
    pub max_internal_tokens_per_request: usize,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    req: Request,
    /// Tokens generated before a preemption (0 for a fresh request).
    generated: usize,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    req: Request,
    generated: usize,
    lease: Lease,
}

impl Running {
    fn holding(&self) -> Holding {
        Holding {
            lease: self.lease,
            context: self.req.prompt_tokens + self.generated,
            total: self.req.total_tokens(),
        }
    }
}

/// One request's part of an iteration: where its KV lives after the iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWork {
    pub id: u64,
    /// Slots of the tokens it holds after this iteration, in token order (see
    /// `KvMemory::slots`), the slot reserved for the token this iteration produces included.
    pub slots: Vec<usize>,
    /// Prompt tokens (the request's, for generating its input ids).
    pub prompt_tokens: usize,
}

/// What one busy iteration did, in the order it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IterationWork {
    /// Preempted: their memory is gone; they come back through `prefill` (recompute).
    pub preempted: Vec<u64>,
    /// Running requests that store one more token, as one batch.
    pub decode: Vec<RowWork>,
    /// Admitted this iteration: prompt (plus tokens generated before a preemption) stored,
    /// first token produced.
    pub prefill: Vec<RowWork>,
    /// Done after this iteration: their memory is returned.
    pub finished: Vec<u64>,
}

/// Runs the scheduled work, one iteration at a time (a model, or nothing).
pub trait Executor {
    fn iteration(&mut self, work: &IterationWork) -> Result<(), String>;
}

/// Serves `requests` under `config` and reports what memory did (nothing is executed, and no
/// per-iteration work is built).
pub fn simulate(config: &SimConfig, requests: &[Request]) -> Result<SimResult, ServingError> {
    serve(config, requests, None)
}

/// [`simulate`], handing every busy iteration's work to `exec` before the next one starts.
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
/// zero prompt or output tokens, and internal inconsistencies (never expected). Requests that
/// are too long or too large for the budget are *rejected and counted*, not errors.
fn serve(
    config: &SimConfig,
    requests: &[Request],
    mut exec: Option<&mut dyn Executor>,
) -> Result<SimResult, ServingError> {
    let mut memory = KvMemory::new(
        config.policy,
        config.budget_bytes,
        config.bytes_per_token,
        config.max_seq_len,
    )?;
    let mut rejections = Rejections::default();
    let mut pending: Vec<Request> = Vec::with_capacity(requests.len());
    for req in requests {
        if req.prompt_tokens == 0 || req.output_tokens == 0 {
            return Err(ServingError::InvalidRequest {
                id: req.id,
                reason: "prompt and output need at least one token each",
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
    let (mut recomputed_tokens, mut max_internal) = (0u64, 0usize);
    let mut iteration = 0u64;

    loop {
        if waiting.is_empty() && running.is_empty() {
            match pending.front() {
                None => break,
                Some(next) => iteration = iteration.max(next.arrival),
            }
        }
        while let Some(req) = pending.front().copied().filter(|r| r.arrival <= iteration) {
            pending.pop_front();
            waiting.push_back(Waiting { req, generated: 0 });
        }
        if acc.iterations() >= max_busy {
            return Err(ServingError::NoProgress { iterations: acc.iterations() });
        }

        // Decode, oldest first; preempt the latest admitted when the pool is dry.
        let mut preempted_now = false;
        let mut work = IterationWork::default();
        let mut i = 0;
        while i < running.len() {
            match memory.grow(running[i].lease)? {
                Growth::Grown => {
                    running[i].generated += 1;
                    i += 1;
                }
                Growth::NeedsMemory => {
                    let victim = running.pop().ok_or(ServingError::LeaseMismatch)?;
                    memory.release(victim.lease)?;
                    waiting.push_front(Waiting { req: victim.req, generated: victim.generated });
                    if exec.is_some() {
                        work.preempted.push(victim.req.id);
                    }
                    counts.preemptions += 1;
                    preempted_now = true;
                }
            }
        }

        // Admit FCFS while the head fits (vLLM skips admission in a step that preempted).
        if !preempted_now {
            while let Some(w) = waiting.front().copied() {
                let context = w.req.prompt_tokens + w.generated + 1;
                let Some(lease) = memory.try_admit(&w.req, context)? else { break };
                waiting.pop_front();
                recomputed_tokens += if w.generated > 0 { (context - 1) as u64 } else { 0 };
                if exec.is_some() {
                    work.prefill.push(row_work(&memory, &w.req, lease, context)?);
                }
                running.push(Running { req: w.req, generated: w.generated + 1, lease });
            }
        }
        if running.is_empty() && !waiting.is_empty() {
            // Unreachable after the up-front filter; reject rather than wait forever.
            waiting.pop_front();
            rejections.never_fits += 1;
            continue;
        }

        let (sample, internal) =
            memory.sample(running.iter().map(Running::holding), waiting.front().map(|w| &w.req))?;
        if sample.total() != u128::from(config.budget_bytes) {
            return Err(ServingError::AccountingMismatch {
                iteration,
                accounted: sample.total(),
                budget: config.budget_bytes,
            });
        }
        max_internal = max_internal.max(internal);
        counts.tokens_produced += running.len() as u64;
        acc.record(iteration, &sample, running.len(), waiting.len(), config.budget_bytes);

        if let Some(exec) = exec.as_deref_mut() {
            // Decoders: the running requests not admitted this iteration (admitted last).
            let decoders = running.len() - work.prefill.len();
            for r in &running[..decoders] {
                let held = r.req.prompt_tokens + r.generated;
                work.decode.push(row_work(&memory, &r.req, r.lease, held)?);
            }
            work.finished = running
                .iter()
                .filter(|r| r.generated >= r.req.output_tokens)
                .map(|r| r.req.id)
                .collect();
            exec.iteration(&work).map_err(ServingError::Execution)?;
        }

        let mut still = Vec::with_capacity(running.len());
        for r in running.drain(..) {
            if r.generated >= r.req.output_tokens {
                memory.release(r.lease)?;
                counts.completed += 1;
            } else {
                still.push(r);
            }
        }
        running = still;
        iteration += 1;
    }

    counts.rejected = rejections.too_long + rejections.never_fits;
    let summary = acc.summary(config.policy, config.budget_bytes, counts);
    Ok(SimResult {
        summary,
        series: std::mem::take(&mut acc.series),
        rejections,
        recomputed_tokens,
        max_internal_tokens_per_request: max_internal,
    })
}

fn row_work(
    memory: &KvMemory,
    req: &Request,
    lease: Lease,
    held: usize,
) -> Result<RowWork, ServingError> {
    Ok(RowWork { id: req.id, slots: memory.slots(lease, held)?, prompt_tokens: req.prompt_tokens })
}

//! What one busy iteration asks of an executor: who was preempted or swapped, who decodes,
//! who is admitted, which slots to copy first. The scheduler builds it only when an
//! [`Executor`] runs the schedule.

use crate::{memory::SlotCopy, trace::Request};

/// One request's part of an iteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWork {
    pub id: u64,
    /// Decode and admission: the slots of the tokens it holds after this iteration, in token
    /// order (see `KvMemory::slots`), the slot reserved for the token this iteration produces
    /// included. Swap-out: the slots whose K/V go to the host.
    pub slots: Vec<usize>,
    /// Prompt tokens (the request's, for generating its input ids).
    pub prompt_tokens: usize,
    /// Its shared prefix group and length, if any (for generating the same prefix ids).
    pub prefix: Option<crate::trace::Prefix>,
    /// Admission: leading tokens whose K/V another request of its group already stored.
    pub shared: usize,
    /// Admission: the copy-on-write to carry out before its prefill.
    pub copy: Option<SlotCopy>,
    /// Admission: its K/V come back from the host into the first slots; it then decodes.
    pub swapped_in: bool,
}

impl RowWork {
    pub(crate) fn new(req: &Request, slots: Vec<usize>) -> Self {
        Self {
            id: req.id,
            slots,
            prompt_tokens: req.prompt_tokens,
            prefix: req.prefix,
            shared: 0,
            copy: None,
            swapped_in: false,
        }
    }
}

/// What one busy iteration did, in the order it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IterationWork {
    /// Preempted for recompute: their memory is gone; they come back through `prefill`.
    pub preempted: Vec<u64>,
    /// Preempted and swapped out: copy these slots' K/V to the host before anything else.
    pub swapped_out: Vec<RowWork>,
    /// Copies-on-write of growing requests, before the decode step.
    pub copies: Vec<SlotCopy>,
    /// Running requests that store one more token, as one batch.
    pub decode: Vec<RowWork>,
    /// Admitted this iteration, in order: prompt (less any shared prefix; plus tokens
    /// generated before a recompute preemption) stored and first token produced, or K/V
    /// swapped back in and one token decoded.
    pub prefill: Vec<RowWork>,
    /// Done after this iteration: their memory is returned.
    pub finished: Vec<u64>,
}

/// Runs the scheduled work, one iteration at a time (a model, or nothing).
pub trait Executor {
    /// Carries out one iteration; returns the seconds it took (the run's clock).
    fn iteration(&mut self, work: &IterationWork) -> Result<f64, String>;
}

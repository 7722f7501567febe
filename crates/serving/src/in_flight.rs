//! The scheduler's requests in flight: those waiting for admission (fresh, preempted or
//! swapped out) and those running.

use std::collections::VecDeque;

use crate::{
    memory::{Holding, Lease, Swapped},
    trace::Request,
};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub req: Request,
    /// Tokens generated before a preemption (0 for a fresh request).
    pub generated: usize,
    /// Its KV in the host pool, when it was swapped out.
    pub swapped: Option<Swapped>,
}

#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub req: Request,
    pub generated: usize,
    pub lease: Lease,
    /// Under a keep-policy: its live tokens, oldest first.
    pub live: VecDeque<LiveToken>,
}

/// A token a request holds under a keep-policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveToken {
    /// Its position in the text.
    pub position: usize,
    /// The logical slot its K/V occupies.
    pub slot: usize,
}

impl Running {
    /// Token slots it holds: prompt + generated (the last one's K/V is written when it is fed).
    pub(crate) fn held(&self) -> usize {
        self.req.prompt_tokens + self.generated
    }

    pub(crate) fn holding(&self) -> Holding {
        Holding { lease: self.lease, context: self.held(), total: self.req.total_tokens() }
    }
}

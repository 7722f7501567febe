//! A keep-policy on the paged pool: which configs it runs with, and the eviction (and
//! compaction) of one running request's tokens down to what it keeps. What a request keeps is
//! the strategies crate's keep-policy's own answer ([`KeepPolicy::kept`]), not a rule restated
//! here.

use std::ops::Range;

use kvlab_strategies::{
    StrategyKind, block_pool::Moved, evict::policy::KeepPolicy, spec::StrategySpec,
};

use crate::{
    ServingError,
    config::{Eviction, Preemption, SimConfig},
    in_flight::Running,
    memory::KvMemory,
    sim_result::Traffic,
};

/// The keep-policies the simulator runs: those that decide from positions alone (it has no
/// attention or keys to score tokens by).
pub fn simulated_keep_policies() -> impl Iterator<Item = StrategyKind> {
    StrategyKind::all().filter(|&kind| {
        let spec = StrategySpec { cache_tokens: Some(1), ..StrategySpec::new(kind) };
        spec.probe_policy().is_some_and(|p| p.kept(2, 1).is_some())
    })
}

/// `ev`'s keep-policy, built and checked (its parameters, and that it decides from positions).
pub fn keep_policy(ev: &Eviction) -> Result<Box<dyn KeepPolicy>, ServingError> {
    let why = |why: String| ServingError::KeepPolicy { name: ev.policy, why };
    let spec = ev.spec();
    spec.validate().map_err(|e| why(e.to_string()))?;
    match spec.probe_policy() {
        Some(policy) if policy.kept(ev.keep_tokens + 1, ev.keep_tokens).is_some() => Ok(policy),
        Some(_) => Err(why(
            "decides by attention or keys, which the simulator does not have (it runs the \
             keep-policies that decide from positions alone)"
                .into(),
        )),
        None => Err(why("is not a keep-policy".into())),
    }
}

/// A keep-policy built for the simulator: it answers which positions a request keeps.
pub(crate) struct PagedKeep {
    policy: Box<dyn KeepPolicy>,
    keep_tokens: usize,
    compaction: bool,
}

impl PagedKeep {
    /// Builds `ev`'s policy, or says why it cannot run with the rest of `config`.
    pub(crate) fn new(
        config: &SimConfig,
        ev: &Eviction,
        executed: bool,
    ) -> Result<Self, ServingError> {
        let unsupported = if config.policy.block_size().is_none() {
            Some("a keep-policy evicts from paged memory only (a reservation keeps its extent)")
        } else if config.sharing || config.preemption == Preemption::Swap {
            Some("a keep-policy runs without sharing and with recompute preemption")
        } else if executed {
            Some("a keep-policy on the paged pool is simulated only (not executed)")
        } else {
            None
        };
        if let Some(why) = unsupported {
            return Err(ServingError::InvalidConfig(why));
        }
        let policy = keep_policy(ev)?;
        Ok(Self { policy, keep_tokens: ev.keep_tokens, compaction: ev.compaction })
    }

    /// Evicts every token of `r` its policy no longer keeps, then compacts when asked.
    pub(crate) fn keep(
        &self,
        r: &mut Running,
        memory: &mut KvMemory,
        traffic: &mut Traffic,
    ) -> Result<(), ServingError> {
        let seen = r.held();
        let kept: Vec<Range<usize>> = self
            .policy
            .kept(seen, self.keep_tokens)
            .ok_or(ServingError::Internal("the keep-policy stopped answering what it keeps"))?;
        let mut evicted = Vec::new();
        r.live.retain(|t| {
            let keeps = kept.iter().any(|k| k.contains(&t.position));
            if !keeps {
                evicted.push(t.slot);
            }
            keeps
        });
        for slot in evicted {
            traffic.blocks_reclaimed += u64::from(memory.evict(r.lease, slot)?);
            traffic.evicted_tokens += 1;
        }
        // Compact once a whole block's worth is stranded: then it frees a block the request
        // will not need again at once (a window strands less than a block, and is never
        // compacted).
        if self.compaction && memory.stranded(r.lease)? >= memory.block_tokens() {
            let moves: Vec<Moved> = memory.compact(r.lease)?;
            for m in &moves {
                let token = r.live.iter_mut().find(|t| t.slot == m.from).ok_or(
                    ServingError::Internal("compaction moved a token the request does not hold"),
                )?;
                token.slot = m.to;
            }
            traffic.compacted_tokens += moves.len() as u64;
        }
        Ok(())
    }
}

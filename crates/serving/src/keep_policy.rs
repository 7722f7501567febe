//! A keep-policy on the paged pool: which configs it runs with, and the eviction (and
//! compaction) of one running request's tokens down to what it keeps.

use kvlab_strategies::block_pool::Moved;

use crate::{
    ServingError,
    config::{Eviction, KeepRule, Preemption, SimConfig},
    in_flight::Running,
    memory::KvMemory,
    sim_result::Traffic,
};

/// Why a keep-policy cannot run with the rest of `config`, if it cannot.
pub(crate) fn eviction_unsupported(
    config: &SimConfig,
    ev: &Eviction,
    executed: bool,
) -> Option<&'static str> {
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
pub(crate) fn keep(
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

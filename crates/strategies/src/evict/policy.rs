//! A keep-policy: the rule an evicting cache asks which token leaves. The cache owns the slots
//! and the bookkeeping ([`SlotTable`]); a policy sees attention or keys where it asks, and
//! answers two questions — which slot a new token replaces once a region is full
//! ([`KeepPolicy::victim`]), or which tokens a prompt keeps once prefilled
//! ([`KeepPolicy::compressed`]). A policy overrides what its paper needs, nothing more.

use std::ops::Range;

use super::discipline::Discipline;
use super::table::SlotTable;

/// When a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// At most `cache_tokens` per region at every step; one token leaves per new token once
    /// full (H2O, TOVA, key-norm).
    EveryStep,
    /// The prompt is prefilled whole, then cut to the budget once; decoding appends
    /// (SnapKV, PyramidKV).
    Prompt,
}

pub trait KeepPolicy: Send + std::fmt::Debug {
    fn scope(&self) -> Scope {
        Scope::EveryStep
    }

    /// How the cache lays out, rotates and evicts this policy's slots.
    fn discipline(&self) -> Discipline {
        Discipline::default()
    }

    /// Whether the forward that carries `new_tokens` tokens after `seen` must show attention.
    fn observes(&self, _seen: usize, _new_tokens: usize) -> bool {
        false
    }

    /// Which of a forward's `new_tokens` queries the policy reads (the others never leave the
    /// device: a 4,096-token prefill's full attention is 600 MB per layer for SmolLM2).
    fn observed_queries(&self, new_tokens: usize) -> Range<usize> {
        0..new_tokens
    }

    /// Whether written keys' L2 norms must be reported ([`KeepPolicy::key_norm`]).
    fn reads_key_norms(&self) -> bool {
        false
    }

    /// This forward's attention in `layer`, over the keys of each region's live list.
    fn observe(&mut self, _layer: usize, _shown: &Shown, _table: &SlotTable) {}

    /// A new token is about to occupy `slot` of `region` (whatever was known of the old one goes).
    fn entered(&mut self, _region: usize, _slot: usize) {}

    /// The L2 norm of the key just written at `slot` of `region`.
    fn key_norm(&mut self, _region: usize, _slot: usize, _norm: f32) {}

    /// `region` is full and the token at position `p` arrives: the live slot it replaces.
    fn victim(&mut self, region: usize, table: &SlotTable, _p: usize) -> usize {
        table.oldest(region)
    }

    /// At the end of a forward: per region of `layer`, the slots to keep (in attention's
    /// order), if this forward cut the layer.
    fn compressed(&mut self, _layer: usize) -> Option<Vec<Vec<usize>>> {
        None
    }

    /// The positions a region holds after `seen` tokens with a budget of `budget`, where they
    /// follow from positions alone (window, sink); `None` where attention or keys decide.
    /// Serving's simulator and the retrieval workload ask this instead of restating the rule.
    fn kept(&self, _seen: usize, _budget: usize) -> Option<Vec<Range<usize>>> {
        None
    }

    /// Bytes of the policy's own state (scores, norms) for a table of this shape.
    fn metadata_bytes(&self, _table: &SlotTable) -> usize {
        0
    }

    fn reset(&mut self) {}
}

/// One layer's attention probabilities on the host.
///
/// # Shapes
/// - data: `[batch, heads, queries, keys]`; query head `g * (heads / kv_heads) + r` belongs to
///   KV head `g`
#[derive(Debug, Clone)]
pub struct Shown {
    pub data: Vec<f32>,
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub queries: usize,
    pub keys: usize,
}

impl Shown {
    fn row_of(&self, row: usize, head: usize, query: usize) -> &[f32] {
        let at = ((row * self.heads + head) * self.queries + query) * self.keys;
        &self.data[at..at + self.keys]
    }

    /// Per key: the probabilities of KV head `g`'s query heads over `queries`, summed.
    pub fn group_sum(&self, row: usize, g: usize, queries: Range<usize>) -> Vec<f32> {
        let rep = self.heads / self.kv_heads;
        let mut out = vec![0.0f32; self.keys];
        for head in g * rep..(g + 1) * rep {
            for q in queries.clone() {
                out.iter_mut().zip(self.row_of(row, head, q)).for_each(|(o, &p)| *o += p);
            }
        }
        out
    }

    /// Per key: query `q`'s probability averaged over every head.
    pub(crate) fn head_mean(&self, row: usize, q: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.keys];
        for head in 0..self.heads {
            out.iter_mut().zip(self.row_of(row, head, q)).for_each(|(o, &p)| *o += p);
        }
        out.iter_mut().for_each(|o| *o /= self.heads as f32);
        out
    }
}

/// The live slot of `region` with the smallest `score`, ties to the oldest token; `None` when
/// no slot passes `eligible`.
pub fn lowest(
    table: &SlotTable,
    region: usize,
    score: impl Fn(usize) -> f32,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    table.live(region).iter().copied().filter(|&s| eligible(s)).min_by(|&a, &b| {
        score(a).total_cmp(&score(b)).then(table.pos(region, a).cmp(&table.pos(region, b)))
    })
}

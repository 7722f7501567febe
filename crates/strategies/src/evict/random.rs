//! `random` — once a region is full, a uniformly random live token leaves: the baseline that
//! eviction papers set beside their scores (a score is only worth its cost if it beats this).
//! Per KV head, and reproducible: the victim is a hash of the region and the arriving position,
//! so the same run evicts the same tokens and the policy keeps no state.
//!
//! This file is the README's worked example ("Add your own strategy"): a keep-policy is its rule
//! and its registry entry, plus its name in `keep_policies!` (evict/mod.rs).

use super::policy::KeepPolicy;
use super::table::SlotTable;
use crate::entry::{CACHE_TOKENS, Entry, Holds, no_check};

pub(crate) const ENTRY: Entry = Entry {
    name: "random",
    summary: "evict a random token per KV head, seeded by position (the papers' baseline)",
    parameters: &[CACHE_TOKENS],
    check: no_check,
    holds: Holds::Policy(|_| Box::new(Random)),
};

#[derive(Debug)]
pub struct Random;

impl KeepPolicy for Random {
    // Per-head regions, keys rotated at their text positions, the victim's slot replaced: the
    // default discipline. Nothing is observed, so attention stays on the fused path.
    fn victim(&mut self, region: usize, table: &SlotTable, p: usize) -> usize {
        let live = table.live(region);
        live[(mix(region as u64, p as u64) % live.len() as u64) as usize]
    }
}

/// SplitMix64's output function over both inputs: consecutive positions give unrelated values.
fn mix(region: u64, position: u64) -> u64 {
    let mut z = position.wrapping_add(region.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victims_spread_over_the_region_and_repeat() {
        let mut table = SlotTable::new(1, 1, 1, 8);
        (0..8).for_each(|p| table.append(0, p, p));
        let victims: Vec<usize> = (8..40).map(|p| Random.victim(0, &table, p)).collect();
        let distinct = victims.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct >= 6, "32 draws over 8 slots hit {distinct}: {victims:?}");
        assert_eq!(victims, (8..40).map(|p| Random.victim(0, &table, p)).collect::<Vec<_>>());
    }
}

//! KV memory allocation policies: how much memory a request takes, and when.
//!
//! The three `reserve-*` policies are the vLLM paper's baselines (its "Orca (Max)", "Orca
//! (Pow2)" and "Orca (Oracle)"): a request gets one contiguous extent at admission, sized for
//! every token it might ever hold, and keeps it until it finishes. `paged` is PagedAttention:
//! fixed-size blocks taken one at a time as the sequence grows.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Block size `paged` gets when none is named (vLLM's default).
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// The block sizes the benchmark sweeps.
pub const SWEPT_BLOCK_SIZES: [usize; 4] = [8, 16, 32, 64];

/// How a request's KV memory is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Policy {
    /// Reserve `max_seq_len` tokens per request: what a system must do when it cannot know the
    /// output length.
    ReserveMax,
    /// Reserve the next power of two of `prompt + output` tokens (capped at `max_seq_len`): a
    /// buddy-style size class with a good length predictor.
    ReservePow2,
    /// Reserve exactly `prompt + output` tokens: an oracle that knows the output length. Its
    /// only waste is external fragmentation and not-yet-written reservation.
    ReserveExact,
    /// Take `block_size`-token blocks on demand from a shared pool.
    Paged { block_size: usize },
}

/// A policy name that is not one of ours.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "unknown policy `{0}` (expected reserve-max, reserve-pow2, reserve-exact, paged or paged-<block size>)"
)]
pub struct UnknownPolicy(pub String);

impl Policy {
    /// Every contiguous baseline, then `paged` at each swept block size.
    pub fn standard_set() -> Vec<Policy> {
        let mut all = vec![Policy::ReserveMax, Policy::ReservePow2, Policy::ReserveExact];
        all.extend(SWEPT_BLOCK_SIZES.map(|block_size| Policy::Paged { block_size }));
        all
    }

    /// The block size, for `paged` only.
    pub fn block_size(&self) -> Option<usize> {
        match *self {
            Policy::Paged { block_size } => Some(block_size),
            _ => None,
        }
    }

    /// A name that tells paged block sizes apart, for chart legends: `paged-16`.
    pub fn label(&self) -> String {
        match self {
            Policy::Paged { block_size } => format!("paged-{block_size}"),
            other => other.to_string(),
        }
    }

    /// Tokens a contiguous policy reserves for a request that will hold `total_tokens`
    /// (`prompt + output`, at most `max_seq_len`); `None` for `paged`, which reserves nothing.
    pub(crate) fn reservation_tokens(
        &self,
        total_tokens: usize,
        max_seq_len: usize,
    ) -> Option<usize> {
        match *self {
            Policy::ReserveMax => Some(max_seq_len.max(total_tokens)),
            Policy::ReservePow2 => {
                let pow2 = total_tokens.checked_next_power_of_two().unwrap_or(usize::MAX);
                Some(pow2.min(max_seq_len).max(total_tokens))
            }
            Policy::ReserveExact => Some(total_tokens),
            Policy::Paged { .. } => None,
        }
    }
}

/// `reserve-max`, `reserve-pow2`, `reserve-exact`, `paged` (any block size).
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::ReserveMax => "reserve-max",
            Policy::ReservePow2 => "reserve-pow2",
            Policy::ReserveExact => "reserve-exact",
            Policy::Paged { .. } => "paged",
        })
    }
}

/// Accepts the display names; `paged` means block size [`DEFAULT_BLOCK_SIZE`], and
/// `paged-<n>` (the [`Policy::label`]) names the block size.
impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reserve-max" => Ok(Policy::ReserveMax),
            "reserve-pow2" => Ok(Policy::ReservePow2),
            "reserve-exact" => Ok(Policy::ReserveExact),
            "paged" => Ok(Policy::Paged { block_size: DEFAULT_BLOCK_SIZE }),
            other => other
                .strip_prefix("paged-")
                .and_then(|n| n.parse().ok())
                .filter(|&n: &usize| n > 0)
                .map(|block_size| Policy::Paged { block_size })
                .ok_or_else(|| UnknownPolicy(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Policy::standard_set() {
            assert_eq!(p.label().parse::<Policy>().unwrap(), p);
        }
        assert_eq!("paged".parse::<Policy>().unwrap(), Policy::Paged { block_size: 16 });
        assert_eq!(Policy::Paged { block_size: 32 }.to_string(), "paged");
        for bad in ["paged-0", "paged-x", "reserve", ""] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reservations() {
        assert_eq!(Policy::ReserveMax.reservation_tokens(100, 2048), Some(2048));
        assert_eq!(Policy::ReservePow2.reservation_tokens(100, 2048), Some(128));
        assert_eq!(Policy::ReservePow2.reservation_tokens(128, 2048), Some(128));
        assert_eq!(Policy::ReservePow2.reservation_tokens(1100, 2000), Some(2000));
        assert_eq!(Policy::ReserveExact.reservation_tokens(100, 2048), Some(100));
        assert_eq!(Policy::Paged { block_size: 16 }.reservation_tokens(100, 2048), None);
    }
}

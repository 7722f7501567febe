//! A registry entry: one strategy kind's name, its line for `runner list`, the parameters it
//! reads with their checks, and what it holds. Each kind's file defines its `ENTRY`;
//! [`crate::registry`] lists them.

use crate::error::{SpecError, invalid};
use crate::evict::policy::KeepPolicy;
use crate::spec::StrategySpec;

/// One strategy kind.
#[derive(Debug)]
pub struct Entry {
    /// The name experiments and CSVs use.
    pub name: &'static str,
    /// One line for `runner list`.
    pub summary: &'static str,
    /// The parameters this kind reads; the others do not apply to it.
    pub parameters: &'static [Param],
    /// What the parameters' own checks cannot see: one value against another.
    pub check: fn(&StrategySpec) -> Result<(), SpecError>,
    pub holds: Holds,
}

/// What a kind keeps its K/V in.
#[derive(Debug, Clone, Copy)]
pub enum Holds {
    /// Nothing: the sequence is recomputed every step.
    Nothing,
    /// Tensors grown by concatenation.
    Concat,
    /// `max_seq` slots per sequence.
    Static,
    /// A block pool and block tables.
    Paged,
    /// An evicting cache whose [`KeepPolicy`] this builds.
    Policy(fn(&PolicyArgs) -> Box<dyn KeepPolicy>),
}

/// What a policy is built for.
#[derive(Debug, Clone, Copy)]
pub struct PolicyArgs<'a> {
    pub spec: &'a StrategySpec,
    pub layers: usize,
    pub batch: usize,
    pub kv_heads: usize,
}

impl PolicyArgs<'_> {
    /// The token budget, `cache_tokens`.
    pub fn budget(&self) -> usize {
        self.spec.cache_tokens.unwrap_or(0)
    }

    /// Per-head regions over every layer: `layers × batch × kv_heads`.
    pub fn regions(&self) -> usize {
        self.layers * self.batch * self.kv_heads
    }
}

/// A parameter a kind reads: every one is a count of tokens or a width.
#[derive(Debug)]
pub struct Param {
    pub key: &'static str,
    /// The value in a spec.
    pub get: fn(&StrategySpec) -> Option<usize>,
    /// What an absent value means, for `runner list` (`None`: the parameter is required).
    pub default: Option<&'static str>,
    /// The least value allowed.
    pub min: usize,
}

impl Param {
    /// Refuses a missing required value or one below `min`, naming the key.
    pub fn check(&self, spec: &StrategySpec) -> Result<(), SpecError> {
        match ((self.get)(spec), self.default) {
            (None, None) => {
                Err(invalid(self.key, "missing", format!("required by '{}'", spec.kind)))
            }
            (Some(v), _) if v < self.min => {
                Err(invalid(self.key, v, format!("must be > {}", self.min - 1)))
            }
            _ => Ok(()),
        }
    }
}

/// `cache_tokens`: the token budget of the windows and keep-policies.
pub(crate) const CACHE_TOKENS: Param =
    Param { key: "cache_tokens", get: |s| s.cache_tokens, default: None, min: 1 };

/// A kind's check with nothing to compare.
pub(crate) fn no_check(_spec: &StrategySpec) -> Result<(), SpecError> {
    Ok(())
}

//! The registry: every strategy kind's [`Entry`], and the kinds by name. Everything that names kinds reads
//! it: [`crate::StrategyKind`] (and so `runner list`, experiment validation, error messages,
//! sweeps and benches), [`crate::StrategySpec::build`], and the conformance suite
//! (`tests/conformance.rs`), which runs every entry.
//!
//! A keep-policy is one file under `evict/` (the policy and its `ENTRY`) plus one line in the
//! `keep_policies!` list of [`crate::evict`]; a cache of its own (none, concat, static, paged)
//! is an entry here and an arm of [`Holds`]. Entries live in [`crate::entry`]'s type, below this
//! list in the import order, so the files that define them never import the list.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::entry::{Entry, Holds};
use crate::error::SpecError;
use crate::kind::StrategyKind;

/// The caches of their own, then the keep-policies of [`crate::evict`].
const CACHES: [&Entry; 4] =
    [&crate::none::ENTRY, &crate::concat::ENTRY, &crate::static_cache::ENTRY, &crate::paged::ENTRY];

/// Every entry, in the order `runner list` and reports show them.
pub fn entries() -> impl Iterator<Item = &'static Entry> {
    CACHES.into_iter().chain(crate::evict::POLICIES.iter().copied())
}

/// The entry named `name`.
fn find(name: &str) -> Result<&'static Entry, SpecError> {
    entries().find(|e| e.name == name).ok_or_else(|| SpecError::UnknownKind {
        name: name.into(),
        known: entries().map(|e| e.name).collect::<Vec<_>>().join(", "),
    })
}

impl StrategyKind {
    /// No cache: recompute (the reference every strategy is tested against).
    pub const NONE: Self = Self(crate::none::ENTRY.name);
    pub const CONCAT: Self = Self(crate::concat::ENTRY.name);
    pub const STATIC: Self = Self(crate::static_cache::ENTRY.name);
    pub const PAGED: Self = Self(crate::paged::ENTRY.name);

    /// Every registered kind, in the registry's order.
    pub fn all() -> impl Iterator<Item = StrategyKind> {
        entries().map(|e| Self(e.name))
    }

    /// The kind named `name`; panics on an unknown name (for tests and benches, which name
    /// built-in kinds: parse a user's names with [`str::parse`]).
    pub fn named(name: &str) -> Self {
        name.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn entry(self) -> &'static Entry {
        // A kind is only made from an entry's name (its field is private to the crate).
        find(self.0).expect("a kind names a registered entry")
    }

    /// One line for `runner list`.
    pub fn summary(self) -> &'static str {
        self.entry().summary
    }

    /// The keys of the parameters this kind reads.
    pub fn parameters(self) -> Vec<&'static str> {
        self.entry().parameters.iter().map(|p| p.key).collect()
    }

    /// Whether the kind is a keep-policy of the evicting cache.
    pub fn is_policy(self) -> bool {
        matches!(self.entry().holds, Holds::Policy(_))
    }
}

impl FromStr for StrategyKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        find(s).map(|e| Self(e.name))
    }
}

impl<'de> Deserialize<'de> for StrategyKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

//! The strategies crate's error: what experiments name wrongly (a kind, a parameter) and what
//! cannot be built. A leaf file, so every file that refuses a parameter reaches down for it.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecError {
    /// `known` lists the registry's kinds (see [`crate::registry`]).
    #[error("unknown strategy '{name}' (known: {known})")]
    UnknownKind { name: String, known: String },
    #[error("{key} = {value}: {why}")]
    Invalid { key: &'static str, value: String, why: String },
    #[error("{0}")]
    Build(String),
}

/// `key = value` refused, and why.
pub fn invalid(key: &'static str, value: impl ToString, why: impl ToString) -> SpecError {
    SpecError::Invalid { key, value: value.to_string(), why: why.to_string() }
}

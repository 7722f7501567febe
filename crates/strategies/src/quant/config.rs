//! What to quantize and how: bits, group size, the grouping axis of keys and of values, the
//! scheme, and the full-precision residual window. Validated before a store is built; errors
//! name the key and value the way [`SpecError::Invalid`] does.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::codec::Codec;
pub use super::formats::{BLOCK_VALUES, Scheme};
use crate::error::SpecError;

/// The code widths a store packs exactly (`bits / 8` bytes per value).
pub const CODE_BITS: [u8; 4] = [8, 4, 3, 2];

/// Which elements share one scale (and zero point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Axis {
    /// `group_size` consecutive channels of one token's head vector: a slot's scales are
    /// `[n_kv, head_dim / group_size]`. What KIVI does for values.
    PerToken,
    /// One channel over `group_size` consecutive *slots*: a group of slots shares
    /// `[n_kv, head_dim]` scales. What KIVI does for keys (outlier channels get their own range).
    PerChannel,
}

/// Named starting points for experiment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantPreset {
    /// Keys and values per-token.
    PerToken,
    /// Keys per-channel, values per-token (KIVI).
    Kivi,
}

impl QuantPreset {
    /// The asymmetric config of this preset.
    pub fn config(self, bits: u8, group_size: usize, residual: usize) -> QuantConfig {
        match self {
            Self::PerToken => QuantConfig::per_token(bits, group_size),
            Self::Kivi => QuantConfig::kivi(bits, group_size, residual),
        }
    }
}

/// A quantized slot store's encoding. `residual` counts *store* slots: a store shared by a
/// batch of `b` rows that should keep the last `r` tokens of every row exact needs `r · b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantConfig {
    /// One of [`CODE_BITS`]: 8 (one byte per value), 4 (two values per byte), 3 (eight values
    /// in three bytes) or 2 (four values per byte).
    pub bits: u8,
    pub group_size: usize,
    pub key_axis: Axis,
    #[serde(default = "per_token")]
    pub value_axis: Axis,
    #[serde(default = "asymmetric")]
    pub scheme: Scheme,
    /// The most recently written slots read back bit-exact (KIVI's full-precision residual).
    #[serde(default)]
    pub residual: usize,
}

fn per_token() -> Axis {
    Axis::PerToken
}

fn asymmetric() -> Scheme {
    Scheme::Asymmetric
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    #[error("{key} = {value}: {why}")]
    Invalid { key: &'static str, value: String, why: String },
}

impl From<QuantError> for SpecError {
    fn from(e: QuantError) -> Self {
        match e {
            QuantError::Invalid { key, value, why } => SpecError::Invalid { key, value, why },
        }
    }
}

fn invalid(key: &'static str, value: impl ToString, why: impl ToString) -> QuantError {
    QuantError::Invalid { key, value: value.to_string(), why: why.to_string() }
}

impl QuantConfig {
    /// Keys and values per-token, asymmetric, no residual.
    pub fn per_token(bits: u8, group_size: usize) -> Self {
        Self {
            bits,
            group_size,
            key_axis: Axis::PerToken,
            value_axis: Axis::PerToken,
            scheme: Scheme::Asymmetric,
            residual: 0,
        }
    }

    /// KIVI: keys per-channel, values per-token, asymmetric, `residual` recent slots exact.
    pub fn kivi(bits: u8, group_size: usize, residual: usize) -> Self {
        Self { key_axis: Axis::PerChannel, residual, ..Self::per_token(bits, group_size) }
    }

    /// Whether keys or values group over slots (and so need slot-aligned regions).
    pub(crate) fn has_per_channel(&self) -> bool {
        self.key_axis == Axis::PerChannel || self.value_axis == Axis::PerChannel
    }

    /// Checks what does not depend on where the store is used: bits, group size against
    /// `head_dim`.
    pub fn validate(&self, head_dim: usize) -> Result<(), QuantError> {
        if !CODE_BITS.contains(&self.bits) {
            return Err(invalid("bits", self.bits, "must be 8, 4, 3 or 2"));
        }
        if self.group_size == 0 {
            return Err(invalid("group_size", 0, "must be > 0"));
        }
        if !self.scheme.allows_bits(self.bits) {
            return Err(invalid(
                "scheme",
                self.scheme,
                format!(
                    "is a {}-bit format; bits = {}",
                    self.scheme.fixed_bits().unwrap_or(0),
                    self.bits
                ),
            ));
        }
        if self.scheme.is_block_format() && self.group_size != BLOCK_VALUES {
            return Err(invalid(
                "group_size",
                self.group_size,
                format!("scheme = {} has blocks of {BLOCK_VALUES} values", self.scheme),
            ));
        }
        let (per_word, word_bytes) = Codec { bits: self.bits, scheme: self.scheme }.word();
        if !head_dim.is_multiple_of(per_word) {
            return Err(invalid(
                "bits",
                self.bits,
                format!(
                    "packs {per_word} channels into {word_bytes} byte(s); head_dim = {head_dim} \
                     is not a multiple of {per_word}"
                ),
            ));
        }
        let per_token = self.key_axis == Axis::PerToken || self.value_axis == Axis::PerToken;
        if per_token && !head_dim.is_multiple_of(self.group_size) {
            return Err(invalid(
                "group_size",
                self.group_size,
                format!("per-token groups must divide head_dim = {head_dim}"),
            ));
        }
        Ok(())
    }

    /// Per-channel groups are `group_size` consecutive slots, so a strategy's region (slots
    /// per row of a window/static/sink cache, `block_size` of a paged pool) must be a whole
    /// number of groups, or one group would mix two sequences. A no-op without per-channel.
    pub fn check_alignment(&self, slots_per_region: usize) -> Result<(), QuantError> {
        if self.has_per_channel() && !slots_per_region.is_multiple_of(self.group_size.max(1)) {
            return Err(invalid(
                "group_size",
                self.group_size,
                format!(
                    "per-channel groups span slots: must divide the {slots_per_region} slots \
                     of a region (cache_tokens / max_seq per row, or block_size)"
                ),
            ));
        }
        Ok(())
    }
}

//! What to quantize and how: bits, group size, the grouping axis of keys and of values, the
//! scheme, and the full-precision residual window. Validated before a store is built; errors
//! name the key and value the way [`SpecError::Invalid`] does.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::codec::Codec;
pub use super::formats::{BLOCK_VALUES, Scheme};
pub use super::levels::CODE_BITS;
use crate::error::SpecError;

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

/// The bits that mean "not quantized": a side at 32 bits is held exactly, in f32.
pub const EXACT_BITS: u8 = 32;

/// How one of keys and values is encoded: its code width, format, grouping axis and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoding {
    /// One of [`CODE_BITS`]: 8 (one byte per value), 4 (two values per byte), 3 (eight values
    /// in three bytes) or 2 (four values per byte); or [`EXACT_BITS`]: this side stays f32.
    pub bits: u8,
    pub scheme: Scheme,
    pub axis: Axis,
    pub group_size: usize,
}

impl Encoding {
    /// Whether this side keeps f32 values instead of codes.
    pub fn is_exact(&self) -> bool {
        self.bits == EXACT_BITS
    }

    /// The codec of a quantized side.
    pub fn codec(&self) -> Codec {
        Codec { bits: self.bits, scheme: self.scheme }
    }
}

/// A quantized slot store's encoding: keys and values each have their own [`Encoding`] (K8V4:
/// keys at 8 bits, values at 4; llama.cpp's `-ctk` / `-ctv`). `residual` counts *store* slots:
/// a store shared by a batch of `b` rows that should keep the last `r` tokens of every row
/// exact needs `r · b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantConfig {
    pub keys: Encoding,
    pub values: Encoding,
    /// The most recently written slots read back bit-exact (KIVI's full-precision residual).
    #[serde(default)]
    pub residual: usize,
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
        let side = Encoding { bits, scheme: Scheme::Asymmetric, axis: Axis::PerToken, group_size };
        Self { keys: side, values: side, residual: 0 }
    }

    /// KIVI: keys per-channel, values per-token, asymmetric, `residual` recent slots exact.
    pub fn kivi(bits: u8, group_size: usize, residual: usize) -> Self {
        let base = Self::per_token(bits, group_size);
        Self { keys: Encoding { axis: Axis::PerChannel, ..base.keys }, residual, ..base }
    }

    /// This config with both sides in `scheme`.
    pub fn with_scheme(self, scheme: Scheme) -> Self {
        Self {
            keys: Encoding { scheme, ..self.keys },
            values: Encoding { scheme, ..self.values },
            ..self
        }
    }

    /// This config with keys at `key_bits` and values at `value_bits` (either may be
    /// [`EXACT_BITS`]).
    pub fn with_bits(self, key_bits: u8, value_bits: u8) -> Self {
        Self {
            keys: Encoding { bits: key_bits, ..self.keys },
            values: Encoding { bits: value_bits, ..self.values },
            ..self
        }
    }

    /// The two sides, named as experiments name their keys.
    pub(crate) fn sides(&self) -> [(Side, &Encoding); 2] {
        [(Side::Keys, &self.keys), (Side::Values, &self.values)]
    }

    /// Checks what does not depend on where the store is used: each side's bits, scheme and
    /// group size against `head_dim`. Errors name the key an experiment sets: `bits` when both
    /// sides share it, `key_bits` / `value_bits` (and `key_scheme` / `value_scheme`) otherwise.
    pub fn validate(&self, head_dim: usize) -> Result<(), QuantError> {
        let shared = self.keys.bits == self.values.bits && self.keys.scheme == self.values.scheme;
        for (side, e) in self.sides() {
            let names = if shared { Side::SHARED } else { side.names() };
            validate_side(e, head_dim, names)?;
        }
        Ok(())
    }

    /// Per-channel groups are `group_size` consecutive slots, so a strategy's region (slots
    /// per row of a window/static/sink cache, `block_size` of a paged pool) must be a whole
    /// number of groups, or one group would mix two sequences. A no-op without per-channel.
    pub fn check_alignment(&self, slots_per_region: usize) -> Result<(), QuantError> {
        let misaligned = self.sides().into_iter().map(|(_, e)| e).find(|e| {
            !e.is_exact()
                && e.axis == Axis::PerChannel
                && !slots_per_region.is_multiple_of(e.group_size.max(1))
        });
        if let Some(e) = misaligned {
            return Err(invalid(
                "group_size",
                e.group_size,
                format!(
                    "per-channel groups span slots: must divide the {slots_per_region} slots \
                     of a region (cache_tokens / max_seq per row, or block_size)"
                ),
            ));
        }
        Ok(())
    }
}

/// Keys or values: which side of the store an [`Encoding`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Keys,
    Values,
}

/// The experiment keys one side's encoding is set by, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SideNames {
    bits: &'static str,
    scheme: &'static str,
}

impl Side {
    /// Keys shared by both sides.
    const SHARED: SideNames = SideNames { bits: "bits", scheme: "scheme" };

    fn names(self) -> SideNames {
        match self {
            Self::Keys => SideNames { bits: "key_bits", scheme: "key_scheme" },
            Self::Values => SideNames { bits: "value_bits", scheme: "value_scheme" },
        }
    }
}

/// One side's checks: a known width, a scheme that allows it, a group that fits `head_dim`,
/// and whole packed words. An exact (f32) side has nothing to check.
fn validate_side(e: &Encoding, head_dim: usize, names: SideNames) -> Result<(), QuantError> {
    if e.is_exact() {
        return Ok(());
    }
    if !CODE_BITS.contains(&e.bits) {
        return Err(invalid(names.bits, e.bits, "must be 8, 4, 3 or 2 (or 32: f32)"));
    }
    if e.group_size == 0 {
        return Err(invalid("group_size", 0, "must be > 0"));
    }
    if !e.scheme.allows_bits(e.bits) {
        return Err(invalid(
            names.scheme,
            e.scheme,
            format!("allows bits {}; {} = {}", e.scheme.allowed_bits(), names.bits, e.bits),
        ));
    }
    if e.scheme.is_block_format() && e.group_size != BLOCK_VALUES {
        return Err(invalid(
            "group_size",
            e.group_size,
            format!("scheme = {} has blocks of {BLOCK_VALUES} values", e.scheme),
        ));
    }
    let (per_word, word_bytes) = e.codec().word();
    if !head_dim.is_multiple_of(per_word) {
        return Err(invalid(
            names.bits,
            e.bits,
            format!(
                "packs {per_word} channels into {word_bytes} byte(s); head_dim = {head_dim} is \
                 not a multiple of {per_word}"
            ),
        ));
    }
    if e.axis == Axis::PerToken && !head_dim.is_multiple_of(e.group_size) {
        return Err(invalid(
            "group_size",
            e.group_size,
            format!("per-token groups must divide head_dim = {head_dim}"),
        ));
    }
    Ok(())
}

//! A strategy as experiments name it: a `kind` plus the parameters that apply to it. What a
//! spec reads and refuses is in [`crate::spec_rules`]; how it becomes a cache, in
//! [`crate::build`].

use serde::{Deserialize, Serialize};

use crate::heads::HeadReduction;
use crate::key_order::KeyOrder;
use crate::kind::StrategyKind;
pub use crate::low_rank::RankBasis;
use crate::quant::{QuantPreset, Scheme};
use crate::rotation::Rotation;

/// A strategy with its parameters. Parameters that do not apply to `kind` are ignored (and the
/// runner does not multiply sweeps by them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategySpec {
    pub kind: StrategyKind,
    /// The token budget of `window`, `shift-window`, `sink` and the evicting kinds (SnapKV and
    /// PyramidKV: of the prompt).
    pub cache_tokens: Option<usize>,
    /// Newest tokens `h2o` always keeps (default half the budget, H2O's split).
    pub recent: Option<usize>,
    /// Last prompt queries whose attention scores the prompt (`snapkv`, `pyramidkv`; default
    /// 32).
    pub window: Option<usize>,
    /// Width of the max-pool that smooths SnapKV's scores (odd; default 5).
    pub kernel: Option<usize>,
    /// Tokens kept from the start of the text by `sink`.
    pub sink_tokens: Option<usize>,
    /// Tokens per block of `paged`.
    pub block_size: Option<usize>,
    /// KV bits: 8, 4, 3 or 2 quantize the slot store of static, window, shift-window, sink and
    /// paged; absent (or 32) keeps f32.
    pub bits: Option<u8>,
    /// Bits of keys alone, overriding `bits` for them (K8V4: `key_bits = 8`, `value_bits = 4`;
    /// 32 keeps keys f32 while values are quantized).
    pub key_bits: Option<u8>,
    /// Bits of values alone, overriding `bits` for them.
    pub value_bits: Option<u8>,
    /// Elements sharing one scale (default 32).
    pub group_size: Option<usize>,
    /// Grouping axes: `per-token` for keys and values, or `kivi` (keys per channel).
    pub quant_axis: Option<QuantPreset>,
    /// `asymmetric` (scale + zero point, the default), `symmetric`, one of llama.cpp's block
    /// formats `q8_0` (bits = 8), `q4_0`, `q4_1` (bits = 4), or `lloyd-max` (a Gaussian
    /// codebook for rotated vectors; bits 4, 3, 2).
    pub scheme: Option<Scheme>,
    /// Scheme of keys alone, overriding `scheme` (llama.cpp's `-ctk q8_0 -ctv q4_0` is
    /// `key_scheme = "q8_0"`, `value_scheme = "q4_0"`).
    pub key_scheme: Option<Scheme>,
    /// Scheme of values alone, overriding `scheme`.
    pub value_scheme: Option<Scheme>,
    /// Most recent tokens per sequence kept in full precision (default 0).
    pub residual: Option<usize>,
    /// `hadamard` rotates every head vector before the store encodes it (default `none`).
    pub rotation: Option<Rotation>,
    /// Dimensions per KV head the `static` cache holds of each key and value: a projection on
    /// the top singular vectors of the head's K/V projection ([`crate::low_rank`]); absent (or
    /// `head_dim`) keeps every dimension.
    pub rank: Option<usize>,
    /// Where the low-rank bases come from: `weights` (the default: an SVD of each head's K/V
    /// projection) or `calibrated` (the principal directions of the model's own keys and values
    /// over calibration text: the projection's SVD whitened by its inputs, as SVD-LLM and Palu
    /// whiten).
    pub rank_basis: Option<RankBasis>,
    /// Channel order of keys in a quantized store: `half-split` (kvlab's, the default) or
    /// `interleaved` (llama.cpp's GGUF order for Llama, so groups hold the channels its groups
    /// hold), or `llama-cpp` (whichever of the two llama.cpp's cache holds for the model).
    pub key_order: Option<KeyOrder>,
    /// Bits of the queries that meet quantized keys: 32 (the default) keeps them f32; 8 rounds
    /// them to `q8_0` blocks in the keys' basis, as llama.cpp's CPU attention does
    /// ([`crate::query_rounding`]).
    pub query_bits: Option<u8>,
    /// KV heads after converting the checkpoint (a model transform; applies to every kind).
    pub kv_heads: Option<usize>,
    /// How groups of heads become one when `kv_heads` is smaller (default mean-pool).
    pub head_reduction: Option<HeadReduction>,
}

/// Parameters of the bits lever, read only when `bits` quantizes.
pub(crate) const QUANT_PARAMETERS: [&str; 8] = [
    "group_size",
    "quant_axis",
    "scheme",
    "key_scheme",
    "value_scheme",
    "residual",
    "key_order",
    "query_bits",
];

impl StrategySpec {
    pub fn new(kind: StrategyKind) -> Self {
        Self {
            kind,
            cache_tokens: None,
            recent: None,
            window: None,
            kernel: None,
            sink_tokens: None,
            block_size: None,
            bits: None,
            key_bits: None,
            value_bits: None,
            group_size: None,
            quant_axis: None,
            scheme: None,
            key_scheme: None,
            value_scheme: None,
            residual: None,
            rotation: None,
            rank: None,
            rank_basis: None,
            key_order: None,
            query_bits: None,
            kv_heads: None,
            head_reduction: None,
        }
    }

    /// H2O's recent window: `recent`, or half the budget.
    pub(crate) fn h2o_recent(&self) -> usize {
        self.recent.unwrap_or(self.cache_tokens.unwrap_or(0) / 2)
    }

    /// SnapKV's observation window.
    pub(crate) fn snap_window(&self) -> usize {
        self.window.unwrap_or(32)
    }

    /// SnapKV's pooling width.
    pub(crate) fn snap_kernel(&self) -> usize {
        self.kernel.unwrap_or(5)
    }
}

//! A strategy as experiments name it: a `kind` plus the parameters that apply to it, validated
//! before anything runs and built into a [`KvCache`] for a backend.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use kvlab_model::{Arch, KvCache, ModelConfig};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::evict::policy::KeepPolicy;
use crate::evict::{EvictingCache, H2o, KeyNorm, ShiftWindow, Sink, SnapKv, Tova, Window};
use crate::heads::HeadReduction;
use crate::key_order::{InterleavedKeys, KeyOrder};
use crate::layer_plan::{PlannedCache, split_layers};
use crate::layout::KvLayout;
use crate::quant::{QuantPreset, QuantStore, Scheme};
use crate::rotation::{RotatedStore, Rotation};
use crate::store::{F32Store, SlotStore};
use crate::{ConcatCache, NoCache, PagedCache, StaticCache};

/// Every strategy kind, by its experiment name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    None,
    Concat,
    Static,
    Window,
    ShiftWindow,
    Sink,
    Paged,
    H2o,
    Tova,
    KeyNorm,
    #[serde(rename = "snapkv")]
    SnapKv,
    #[serde(rename = "pyramidkv")]
    PyramidKv,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 12] = [
        Self::None,
        Self::Concat,
        Self::Static,
        Self::Window,
        Self::ShiftWindow,
        Self::Sink,
        Self::Paged,
        Self::H2o,
        Self::Tova,
        Self::KeyNorm,
        Self::SnapKv,
        Self::PyramidKv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Concat => "concat",
            Self::Static => "static",
            Self::Window => "window",
            Self::ShiftWindow => "shift-window",
            Self::Sink => "sink",
            Self::Paged => "paged",
            Self::H2o => "h2o",
            Self::Tova => "tova",
            Self::KeyNorm => "key-norm",
            Self::SnapKv => "snapkv",
            Self::PyramidKv => "pyramidkv",
        }
    }

    /// Whether the kind cuts the prompt once after prefill (and so needs it in one forward).
    pub fn cuts_prompt(self) -> bool {
        matches!(self, Self::SnapKv | Self::PyramidKv)
    }

    /// One line for `runner list`.
    pub fn summary(self) -> &'static str {
        match self {
            Self::None => "no cache: recompute the whole sequence every step",
            Self::Concat => "grow K/V by concatenation (HF DynamicCache, the article's cache)",
            Self::Static => {
                "max_seq slots per sequence, preallocated, written in place at input_pos"
            }
            Self::Window => "rolling buffer of cache_tokens slots written modulo W (Mistral)",
            Self::ShiftWindow => "window kept by shifting the buffer every step (lit-llama roll)",
            Self::Sink => "sink_tokens first + recent tokens, positions in-cache (StreamingLLM)",
            Self::Paged => "block pool + block tables, allocated on demand (vLLM)",
            Self::H2o => "recent + heavy hitters by accumulated attention, per KV head (H2O, 2023)",
            Self::Tova => "evict what the current query attends least, per layer (TOVA, 2024)",
            Self::KeyNorm => {
                "keep the keys of smallest L2 norm, no attention (Devoto et al., 2024)"
            }
            Self::SnapKv => "cut the prompt by its last queries' pooled attention (SnapKV, 2024)",
            Self::PyramidKv => "SnapKV with budgets falling from first to last layer (PyramidKV)",
        }
    }

    /// The parameters this kind reads; the others do not apply to it.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            Self::None | Self::Concat | Self::Static => &[],
            Self::Window | Self::ShiftWindow => &["cache_tokens"],
            Self::Sink => &["cache_tokens", "sink_tokens"],
            Self::Paged => &["block_size"],
            Self::H2o => &["cache_tokens", "recent"],
            Self::Tova | Self::KeyNorm => &["cache_tokens"],
            Self::SnapKv | Self::PyramidKv => &["cache_tokens", "window", "kernel"],
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| SpecError::UnknownKind(s.into()))
    }
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecError {
    #[error(
        "unknown strategy '{0}' (known: none, concat, static, window, shift-window, sink, paged, \
         h2o, tova, key-norm, snapkv, pyramidkv)"
    )]
    UnknownKind(String),
    #[error("{key} = {value}: {why}")]
    Invalid { key: &'static str, value: String, why: String },
    #[error("{0}")]
    Build(String),
}

fn invalid(key: &'static str, value: impl ToString, why: impl ToString) -> SpecError {
    SpecError::Invalid { key, value: value.to_string(), why: why.to_string() }
}

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
    /// KV bits: 8 or 4 quantize the slot store of static, window, shift-window, sink and
    /// paged; absent (or 32) keeps f32.
    pub bits: Option<u8>,
    /// Elements sharing one scale (default 32).
    pub group_size: Option<usize>,
    /// Grouping axes: `per-token` for keys and values, or `kivi` (keys per channel).
    pub quant_axis: Option<QuantPreset>,
    /// `asymmetric` (scale + zero point, the default), `symmetric`, or one of llama.cpp's block
    /// formats `q8_0` (bits = 8), `q4_0`, `q4_1` (bits = 4).
    pub scheme: Option<Scheme>,
    /// Most recent tokens per sequence kept in full precision (default 0).
    pub residual: Option<usize>,
    /// `hadamard` rotates every head vector before the store encodes it (default `none`).
    pub rotation: Option<Rotation>,
    /// Channel order of keys in a quantized store: `half-split` (kvlab's, the default) or
    /// `interleaved` (llama.cpp's GGUF order for Llama, so groups hold the channels its groups
    /// hold), or `llama-cpp` (whichever of the two llama.cpp's cache holds for the model).
    pub key_order: Option<KeyOrder>,
    /// KV heads after converting the checkpoint (a model transform; applies to every kind).
    pub kv_heads: Option<usize>,
    /// How groups of heads become one when `kv_heads` is smaller (default mean-pool).
    pub head_reduction: Option<HeadReduction>,
}

/// Parameters of the bits lever, read only when `bits` quantizes.
pub const QUANT_PARAMETERS: [&str; 5] =
    ["group_size", "quant_axis", "scheme", "residual", "key_order"];

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
            group_size: None,
            quant_axis: None,
            scheme: None,
            residual: None,
            rotation: None,
            key_order: None,
            kv_heads: None,
            head_reduction: None,
        }
    }

    /// Whether the K/V live in a slot store that bits can wrap.
    pub fn stores_slots(&self) -> bool {
        !matches!(self.kind, StrategyKind::None | StrategyKind::Concat)
    }

    /// Bits of the store when quantized (`None` for f32).
    pub fn quant_bits(&self) -> Option<u8> {
        self.bits.filter(|&b| b != 32 && self.stores_slots())
    }

    /// Every parameter this spec reads: the kind's own, `bits` where a slot store exists, the
    /// quantization keys once `bits` quantizes, and the head transform.
    pub fn applicable(&self) -> Vec<&'static str> {
        let mut keys = self.kind.parameters().to_vec();
        if self.stores_slots() {
            keys.push("bits");
            keys.push("rotation");
        }
        if self.quant_bits().is_some() {
            keys.extend(QUANT_PARAMETERS);
        }
        keys.push("kv_heads");
        if self.kv_heads.is_some() {
            keys.push("head_reduction");
        }
        keys
    }

    /// [`StrategySpec::applicable`] for a known checkpoint: `head_reduction` only matters when
    /// `kv_heads` is fewer than the checkpoint's KV heads (more heads are always repeats).
    pub fn applicable_to(&self, config: &ModelConfig) -> Vec<&'static str> {
        let reduces = self.kv_heads.is_some_and(|k| k < config.n_kv_heads);
        self.applicable().into_iter().filter(|&k| k != "head_reduction" || reduces).collect()
    }

    /// Whether two of the keys exclude each other (today: a llama.cpp block format's scheme and
    /// a different `bits`). A sweep skips such combinations instead of running them: `bits = [8,
    /// 4]` × `scheme = ["q8_0", "q4_0"]` means q8_0 at 8 bits and q4_0 at 4.
    pub fn contradicts(&self) -> bool {
        match (self.scheme, self.quant_bits()) {
            (Some(scheme), Some(bits)) => !scheme.allows_bits(bits),
            _ => false,
        }
    }

    /// Rejects impossible parameters, naming the key and value.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(bits) = self.bits {
            if ![4, 8, 32].contains(&bits) {
                return Err(invalid("bits", bits, "expected 4, 8 or 32"));
            }
            if bits != 32 && !self.stores_slots() {
                return Err(invalid(
                    "bits",
                    bits,
                    format!("'{}' keeps no slot store to quantize", self.kind),
                ));
            }
        }
        if let (Some(scheme), Some(bits)) = (self.scheme, self.quant_bits())
            && !scheme.allows_bits(bits)
        {
            return Err(invalid(
                "scheme",
                scheme,
                format!("is a {}-bit format; bits = {bits}", scheme.fixed_bits().unwrap_or(0)),
            ));
        }
        if self.kv_heads == Some(0) {
            return Err(invalid("kv_heads", 0, "must be > 0"));
        }
        self.validate_kind()
    }

    fn validate_kind(&self) -> Result<(), SpecError> {
        let need = |key: &'static str, v: Option<usize>| {
            v.ok_or_else(|| invalid(key, "missing", format!("required by '{}'", self.kind)))
        };
        match self.kind {
            StrategyKind::None | StrategyKind::Concat | StrategyKind::Static => Ok(()),
            StrategyKind::Window | StrategyKind::ShiftWindow => {
                let w = need("cache_tokens", self.cache_tokens)?;
                if w == 0 {
                    return Err(invalid("cache_tokens", w, "must be > 0"));
                }
                Ok(())
            }
            StrategyKind::Sink => {
                let w = need("cache_tokens", self.cache_tokens)?;
                let s = need("sink_tokens", self.sink_tokens)?;
                if s >= w {
                    return Err(invalid(
                        "sink_tokens",
                        s,
                        format!("must be < cache_tokens = {w} (room is needed for recent tokens)"),
                    ));
                }
                Ok(())
            }
            StrategyKind::Paged => {
                let bs = need("block_size", self.block_size)?;
                if bs == 0 {
                    return Err(invalid("block_size", bs, "must be > 0"));
                }
                Ok(())
            }
            StrategyKind::H2o | StrategyKind::Tova | StrategyKind::KeyNorm => {
                let c = need("cache_tokens", self.cache_tokens)?;
                if c == 0 {
                    return Err(invalid("cache_tokens", c, "must be > 0"));
                }
                if self.kind == StrategyKind::H2o && self.h2o_recent() >= c {
                    return Err(invalid(
                        "recent",
                        self.h2o_recent(),
                        format!("must be < cache_tokens = {c} (room is needed for heavy hitters)"),
                    ));
                }
                Ok(())
            }
            StrategyKind::SnapKv | StrategyKind::PyramidKv => {
                let c = need("cache_tokens", self.cache_tokens)?;
                let (w, k) = (self.snap_window(), self.snap_kernel());
                if w == 0 || w >= c {
                    return Err(invalid(
                        "window",
                        w,
                        format!("must be in 1..cache_tokens = {c} (room is needed to select)"),
                    ));
                }
                if k % 2 == 0 {
                    return Err(invalid("kernel", k, "must be odd (a pool centred on each key)"));
                }
                Ok(())
            }
        }
    }

    /// H2O's recent window: `recent`, or half the budget.
    pub fn h2o_recent(&self) -> usize {
        self.recent.unwrap_or(self.cache_tokens.unwrap_or(0) / 2)
    }

    /// SnapKV's observation window.
    pub fn snap_window(&self) -> usize {
        self.window.unwrap_or(32)
    }

    /// SnapKV's pooling width.
    pub fn snap_kernel(&self) -> usize {
        self.kernel.unwrap_or(5)
    }

    /// Builds the cache for `config` through the model's layer plan ([`crate::layer_plan`]): on
    /// a model with sliding-window layers, a rolling window on those and this strategy on the
    /// others; on any other model, this strategy on every layer.
    pub fn build<B: Backend>(
        &self,
        config: &ModelConfig,
        batch: usize,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<Box<dyn KvCache<B>>, SpecError> {
        if self.key_order == Some(KeyOrder::LlamaCpp) {
            let key_order = Some(KeyOrder::llama_cpp(config.arch.neox_rope));
            return StrategySpec { key_order, ..self.clone() }
                .build(config, batch, max_seq, device);
        }
        let Some((is_local, window)) =
            split_layers(config).filter(|_| self.kind != StrategyKind::None)
        else {
            return self.build_uniform(config, batch, max_seq, device);
        };
        let n_local = is_local.iter().filter(|&&l| l).count();
        if n_local == config.n_layers {
            return Err(SpecError::Build(
                "a model whose every layer is local has no layer plan yet".into(),
            ));
        }
        let slots = window.min(max_seq);
        let local_window = StrategySpec {
            kind: StrategyKind::Window,
            cache_tokens: Some(slots),
            recent: None,
            window: None,
            kernel: None,
            sink_tokens: None,
            block_size: None,
            ..self.clone()
        };
        // Each side's cache sees a plain model of its layers (no local layers left to plan).
        let arch = Arch { sliding_window: None, ..config.arch };
        let layers = |n_layers| ModelConfig { n_layers, arch, ..config.clone() };
        let local = local_window.build_uniform(&layers(n_local), batch, max_seq, device)?;
        let global =
            self.build_uniform(&layers(config.n_layers - n_local), batch, max_seq, device)?;
        Ok(Box::new(PlannedCache::new(&is_local, slots, local, global)))
    }

    /// Builds the cache for `batch` sequences of at most `max_seq` tokens.
    fn build_uniform<B: Backend>(
        &self,
        config: &ModelConfig,
        batch: usize,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<Box<dyn KvCache<B>>, SpecError> {
        self.validate()?;
        let layout = KvLayout::new(config, batch);
        let build = |e: kvlab_model::CacheError| SpecError::Build(e.to_string());
        Ok(match self.kind {
            StrategyKind::None => Box::new(NoCache::new(batch)),
            StrategyKind::Concat => Box::new(ConcatCache::<B>::new(layout)),
            StrategyKind::Static => Box::new(
                StaticCache::new(
                    layout,
                    max_seq,
                    self.store(layout, batch * max_seq, max_seq, device)?,
                )
                .map_err(build)?,
            ),
            StrategyKind::Paged => {
                let block = self.block_size.unwrap_or(0);
                let blocks = PagedCache::<B>::blocks_for(batch, max_seq, block);
                let store = self.store(layout, blocks * block, block, device)?;
                Box::new(PagedCache::new(layout, blocks, block, store).map_err(build)?)
            }
            StrategyKind::Window
            | StrategyKind::ShiftWindow
            | StrategyKind::Sink
            | StrategyKind::H2o
            | StrategyKind::Tova
            | StrategyKind::KeyNorm
            | StrategyKind::SnapKv
            | StrategyKind::PyramidKv => Box::new(self.evicting(layout, max_seq, device)?),
        })
    }

    /// An [`EvictingCache`] with this spec's policy: per-head slots, so its store sees
    /// `batch × kv_heads` rows of one head each — per-row slots for a positional policy.
    fn evicting<B: Backend>(
        &self,
        layout: KvLayout,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<EvictingCache<B>, SpecError> {
        let budget = self.cache_tokens.unwrap_or(0);
        let (layers, regions) =
            (layout.n_layers, layout.n_layers * layout.batch * layout.n_kv_heads);
        let capacity = if self.kind.cuts_prompt() { max_seq.max(budget) } else { budget };
        let (w, k) = (self.snap_window(), self.snap_kernel());
        let policy: Box<dyn KeepPolicy> = match self.kind {
            StrategyKind::Window => Box::new(Window),
            StrategyKind::ShiftWindow => Box::new(ShiftWindow),
            StrategyKind::Sink => Box::new(Sink::new(self.sink_tokens.unwrap_or(0))),
            StrategyKind::H2o => Box::new(H2o::new(self.h2o_recent(), regions, capacity)),
            StrategyKind::Tova => Box::new(Tova::new(layers, layout.batch)),
            StrategyKind::KeyNorm => Box::new(KeyNorm::new(regions, capacity)),
            StrategyKind::SnapKv => Box::new(SnapKv::uniform(layers, budget, w, k)),
            _ => Box::new(SnapKv::pyramid(layers, budget, w, k)),
        };
        let slots = if policy.discipline().positional {
            layout
        } else {
            KvLayout { batch: layout.batch * layout.n_kv_heads, n_kv_heads: 1, ..layout }
        };
        let store = self.store(slots, slots.batch * capacity, capacity, device)?;
        EvictingCache::new(layout, capacity, policy, store)
            .map_err(|e| SpecError::Build(e.to_string()))
    }

    /// The slot store holding `n_slots` slots in every layer; `region` is the slots one
    /// sequence owns contiguously (its rows, or one block), which per-channel groups must divide.
    fn store<B: Backend>(
        &self,
        layout: KvLayout,
        n_slots: usize,
        region: usize,
        device: &B::Device,
    ) -> Result<Box<dyn SlotStore<B>>, SpecError> {
        let store = self.encoding_store(layout, n_slots, region, device)?;
        let store: Box<dyn SlotStore<B>> = match self.rotation.unwrap_or_default() {
            Rotation::None => store,
            Rotation::Hadamard => Box::new(RotatedStore::new(store, layout.head_dim, device)?),
        };
        // Outermost: keys are put in llama.cpp's channel order before they are rotated and
        // encoded, as its cache holds them.
        Ok(match self.key_order.unwrap_or_default() {
            KeyOrder::HalfSplit => store,
            KeyOrder::Interleaved => Box::new(InterleavedKeys::new(store, layout.head_dim, device)),
            KeyOrder::LlamaCpp => {
                return Err(SpecError::Build(
                    "key_order \"llama-cpp\" is resolved for the model before a store is built"
                        .into(),
                ));
            }
        })
    }

    /// The store that encodes slots: f32, or int8/int4 codes.
    fn encoding_store<B: Backend>(
        &self,
        layout: KvLayout,
        n_slots: usize,
        region: usize,
        device: &B::Device,
    ) -> Result<Box<dyn SlotStore<B>>, SpecError> {
        let (n, h, d) = (layout.n_layers, layout.n_kv_heads, layout.head_dim);
        let Some(bits) = self.quant_bits() else {
            return Ok(Box::new(F32Store::new(n, n_slots, h, d, device)));
        };
        let preset = self.quant_axis.unwrap_or(QuantPreset::PerToken);
        let mut config = preset.config(bits, self.group_size.unwrap_or(32), 0);
        config.scheme = self.scheme.unwrap_or(Scheme::Asymmetric);
        // The store counts residual slots over all rows.
        config.residual = self.residual.unwrap_or(0) * layout.batch;
        config.check_alignment(region)?;
        Ok(Box::new(QuantStore::new(config, n, n_slots, h, d, device)?))
    }
}

//! The "fewer bits" lever: int8 / int4 / int3 / int2 K/V as a [`SlotStore`](crate::store::SlotStore), so it
//! wraps any strategy (static, window, shift-window, sink, paged): strategies decide which slot
//! holds which token, [`QuantStore`] decides how slots are encoded.
//!
//! # Encoding
//! Group-wise, in a [`Scheme`] (symmetric, asymmetric, llama.cpp's block formats, or the
//! `lloyd-max` codebook of [`codebook`]), `bits` ∈ {8, 4, 3, 2}. Keys and values each have their
//! own [`Encoding`] — bits, scheme, group and [`Axis`] (a side at 32 bits stays f32):
//! - [`Axis::PerToken`]: a group is `group_size` consecutive channels of one token's head vector;
//!   scales per slot `[n_kv, head_dim / group_size]`.
//! - [`Axis::PerChannel`]: a group is `group_size` consecutive *slots*; each channel of each kv
//!   head has its own scale over them, `[n_kv, head_dim]` per slot group.
//!
//! KIVI ([`QuantPreset::Kivi`], `jy-yuan/KIVI` `models/llama_kivi.py`) quantizes keys
//! per-channel (`key_states.transpose(2, 3)`, groups of `group_size` tokens along the last dim)
//! and values per-token (groups of `group_size` channels), min-max asymmetric, and keeps the
//! most recent `residual_length` tokens in full precision.
//!
//! # Where codes live, and why
//! On the device, as burn `Int` tensors of dtype `u8`: `[n_slots, n_kv, head_dim · bits / 8]`
//! per layer for keys and for values. burn 0.21 keeps `u8` for real on flex and ndarray (both
//! have a `U8` storage variant) through `zeros((device, DType::U8))`, `slice_assign`, `select`,
//! `cat`, the bitwise ops and `float()`; a float tensor's `.cast(IntDType::U8)` produces them.
//! The one trap: `Tensor::<B, D, Int>::from_data(data, &device)` converts to the backend's
//! default int (i32 on flex, 4 bytes), so codes are never built from host data without the
//! `(device, DType::U8)` option. Codes pack into words, the fewest whole bytes holding whole
//! codes: int4 packs channels `2c` (low nibble) and `2c + 1` (high nibble) into byte `c`, int2
//! four channels per byte, int3 eight channels into three bytes (value `i` of a word in bits
//! `3i ..` of its little-endian 24 bits), so each really takes `bits / 8` bytes per value. Scales and zero points are
//! f32 tensors beside the codes. Quantizing (min/max, round, clamp, pack) and decoding run as
//! tensor ops, never a host round trip (on flex, whose tensors are host memory, decoding is one
//! fused pass over the codes instead: `flex_decode.rs`, bit-identical); only bookkeeping (which groups are pending, which
//! slots the residual holds) is host-side.
//!
//! # Per-channel groups: pending and staged
//! A per-channel group can only be quantized once all of its `group_size` slots hold their
//! values. Until then the group is *pending*: its values live in an f32 staging tensor
//! `[group_size, n_kv, head_dim]` (exact; counted in memory), and reads of its slots come from
//! staging. A group is quantized, and its staging freed, when every one of its slots has been
//! written since it was last staged.
//!
//! Overwrites (ring buffers wrap, a paged pool reuses blocks, a shift window moves): writing any
//! slot of a quantized group makes it pending again; its staging starts as the group's decoded
//! values (zeros for a never-written group), so slots not rewritten yet keep reading their old
//! (decoded) tokens, and it is re-quantized once all of its slots have been rewritten. A ring
//! that overwrites slot by slot therefore holds one pending group per region, re-quantized each
//! time the write cursor leaves it. Groups must not straddle regions:
//! [`QuantConfig::check_alignment`] requires `group_size` to divide slots per row / block size.
//!
//! `move_slots` (the shift window): per-token planes move codes and scales exactly, as do
//! per-channel moves that are group-aligned. A shift by one slot is not: it *re-stages* — the
//! moved slots are decoded and written to their new slots, so every group of the window is
//! re-quantized from decoded values on every shift. The error then compounds over a token's
//! life in the window; prefer per-token keys (or the ring `window` strategy) with shift-window.
//!
//! # Residual
//! With `residual = R > 0`, each layer keeps an f32 ring of the last R slots written (store-wide:
//! with a batch of `b` rows, R covers `R / b` steps of each row). Reads of those slots are
//! bit-exact copies of what was written. Codes are written eagerly too, so a slot leaving the
//! ring reads its quantized value with no further work (for per-channel keys, its group's
//! staging until the group completes).
//!
//! # Memory
//! Every byte is a tensor the store holds, and [`QuantStore::breakdown`] sums them from the
//! tensors themselves. With `L` layers, `S` slots, `H` kv heads, `D` head_dim, group `G`,
//! `p` = 1 (symmetric: scale) or 2 (asymmetric: scale + zero point), for each of K and V:
//! - codes: `L · S · H · D · bits / 8`
//! - per-token metadata: `L · S · H · (D / G) · 4p`; per-channel: `L · (S / G) · H · D · 4p`
//! - staging (per-channel only, varies): `pending_groups · G · H · D · 4`
//! - residual (keys and values together): `L · 2 · R · H · D · 4`
//!
//! [`SlotStore::memory`](crate::store::SlotStore::memory) reports `allocated_bytes` = codes +
//! staging + residual and `metadata_bytes` = scales + zero points.

pub mod codebook;
mod codec;
mod config;
mod flex_decode;
pub mod formats;
mod int_store;
mod levels;
mod plane;
mod residual;
mod side_plane;

pub use codec::{Codec, MIN_SCALE, Quantized};
pub use config::{
    Axis, CODE_BITS, EXACT_BITS, Encoding, QuantConfig, QuantError, QuantPreset, Scheme,
};
pub use int_store::{QuantMemory, QuantStore};

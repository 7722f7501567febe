//! KV-cache strategies for kvlab: one strategy, one file, each implementing the model crate's
//! [`kvlab_model::KvCache`] seam.
//!
//! Length and management strategies (static, paged, and the keep-policies of [`evict`]: window,
//! shift-window, sink, H2O, TOVA, key-norm, SnapKV, PyramidKV) choose *which slot* holds which
//! token; a [`store::SlotStore`] chooses *how* slots are encoded (f32, int8, int4), so bits
//! compose with any of them. Every kind is an entry of the [`registry`].

pub mod block_pool;
pub mod build;
pub mod chunked;
pub mod concat;
pub mod entry;
pub mod error;
pub mod evict;
pub mod heads;
pub mod in_place;
pub mod key_order;
pub mod kind;
pub mod layer_plan;
pub mod layout;
pub mod low_rank;
pub mod none;
pub mod paged;
pub mod quant;
pub mod query_rounding;
pub mod registry;
pub mod rotation;
pub mod rows;
pub mod slot_runs;
pub mod spec;
pub(crate) mod spec_rules;
pub mod static_cache;
pub mod store;
pub mod table_cache;

pub use concat::ConcatCache;
pub use error::SpecError;
pub use evict::EvictingCache;
pub use kind::StrategyKind;
pub use layout::KvLayout;
pub use none::NoCache;
pub use paged::PagedCache;
pub use spec::{RankBasis, StrategySpec};
pub use static_cache::StaticCache;
pub use store::{F32Store, SlotStore};

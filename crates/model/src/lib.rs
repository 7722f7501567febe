//! kvlab's model crate: a Llama-style decoder generic over burn's `Backend`, the KV-cache seam
//! the strategies implement, GGUF loading, the tokenizer, and the perplexity evaluator.

pub mod arch;
pub mod assets;
pub mod attention;
pub mod cache;
pub mod config;
pub mod control_vector;
pub mod corpus;
pub mod divergence;
pub mod few_rows;
pub(crate) mod flex_buffer;
pub(crate) mod fork_join;
pub mod fused_attention;
pub mod generate;
pub mod gguf;
pub mod init;
pub mod inspect;
pub mod kv_projection;
pub mod kv_runs;
pub mod layer;
pub mod linear;
pub mod loader;
pub mod mlp;
pub mod model;
pub mod no_cache;
pub mod perplexity;
pub mod printable;
pub mod rope;
pub mod sliding_window;
pub mod tokenizer;
pub mod weights;

pub use arch::{Activation, Arch, LayerAttention, SlidingWindow};
pub use cache::{AttentionMask, CacheError, KeyPositions, KvCache, KvData, KvMemory, KvView};
pub use config::ModelConfig;
pub use kv_projection::KvProjection;
pub use kv_runs::{KvRuns, SlotRun};
pub use model::Model;
pub use no_cache::NoCache;
pub use rope::RotaryEncoding;
pub use weights::ModelWeights;

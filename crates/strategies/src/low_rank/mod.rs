//! The "fewer dimensions" lever: keys and values held as `rank`-dim latents of each KV head's
//! `head_dim`, from an SVD of the model's own K/V projections (Palu, arXiv 2407.21118; here
//! per KV head, Palu's M-LRD — not shared across a layer's heads). `rank = head_dim` is the
//! full cache up to rounding; a lower rank drops the directions the projection barely uses.
//! The latents live in any slot store, so rank composes with bits and rotation.

mod basis;
mod store;

pub use basis::{LayerBases, LowRankBases, symmetric_eigen};
pub use store::LowRankStore;

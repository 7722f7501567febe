//! The "fewer dimensions" lever: keys and values held as `rank`-dim latents of each KV head's
//! `head_dim`, from an SVD of the model's own K/V projections (Palu, arXiv 2407.21118; here
//! per KV head, Palu's M-LRD — not shared across a layer's heads). `rank = head_dim` is the
//! full cache up to rounding; a lower rank drops the directions the projection barely uses.
//! The latents live in any slot store, so rank composes with bits and rotation.

use serde::{Deserialize, Serialize};

mod basis;
pub mod calibrate;
mod moments;
mod store;

pub use basis::{LayerBases, LowRankBases, symmetric_eigen};
pub use moments::LayerMoments;
pub use store::LowRankStore;

/// Where a low-rank cache's bases come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RankBasis {
    /// Each head's K/V projection weights alone (an SVD: best for inputs of every direction
    /// alike).
    #[default]
    Weights,
    /// The model's own keys and values over calibration text (their principal directions:
    /// best for the inputs the model actually sees).
    Calibrated,
}

//! `pyramidkv` (Cai et al., 2024, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal
//! Information Funneling"): SnapKV's rule with per-layer budgets falling from the first layer to
//! the last ([`super::snapkv::pyramid_budgets`]).

use super::snapkv::{PARAMETERS, SnapKv, window_fits};
use crate::entry::{Entry, Holds};

pub(crate) const ENTRY: Entry = Entry {
    name: "pyramidkv",
    summary: "SnapKV with budgets falling from first to last layer (PyramidKV)",
    parameters: &PARAMETERS,
    check: window_fits,
    holds: Holds::Policy(|a| {
        let s = a.spec;
        Box::new(SnapKv::pyramid(a.layers, a.budget(), s.snap_window(), s.snap_kernel()))
    }),
};

//! `none`: no cache, recompute the whole sequence each step. The implementation lives in the
//! model crate ([`kvlab_model::no_cache`]) because it is also the reference the model and every
//! strategy are tested against.

pub use kvlab_model::no_cache::NoCache;

use crate::entry::{Entry, Holds, no_check};

pub(crate) const ENTRY: Entry = Entry {
    name: "none",
    summary: "no cache: recompute the whole sequence every step",
    parameters: &[],
    check: no_check,
    holds: Holds::Nothing,
};

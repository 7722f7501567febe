//! Experiment files: the TOML schema, loading, and validation of everything before any run.
//!
//! ```toml
//! # experiments/x.toml — the question this answers
//! [experiment]
//! name = "x"                 # results go to <out>/x/
//! question = "..."           # the question the report opens with
//! model = "seed-toy"         # preset or .gguf path (or sweep it: sweep.model)
//! backend = "flex"           # flex | ndarray | cuda | wgpu (--backend overrides)
//! seed = 0
//!
//! [strategy]                 # defaults for strategy parameters not swept
//! kind = "concat"
//! cache_tokens = 64
//!
//! [sweep]                    # arrays; see crate::sweep for the expansion order
//! strategy = ["concat", "window"]
//! batch = [1, 2]
//! context = [32, 64]
//!
//! [workload.memory]
//! [workload.throughput]
//! decode_tokens = 16
//! ```

pub mod fit;
mod invalid;
mod schema;
mod sweep_table;
mod validate;
mod validate_fragmentation;
mod validate_perplexity;
mod validated;

use std::path::Path;

pub use self::invalid::Invalid;
pub use self::schema::*;
pub use self::validate::parse;
pub use self::validated::Experiment;
use crate::backend::BackendName;
pub use crate::model::Weights;

/// Reads and validates one experiment file. `backend` (from `--backend`) overrides the file's.
pub fn load(path: &Path, backend: Option<BackendName>) -> Result<Experiment, Invalid> {
    let shown = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| Invalid(vec![format!("{shown}: cannot read: {e}")]))?;
    parse(&shown, &source, backend).map(|mut e| {
        e.path = path.to_path_buf();
        e
    })
}

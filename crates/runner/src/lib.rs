//! kvlab's runner: TOML experiments → sweeps of runs → CSV rows → charts and a report.
//!
//! The binary (`main.rs`) only parses the command line and calls [`app::run`].

pub mod alloc_counter;
pub mod app;
pub mod axes;
pub mod backend;
pub mod cli;
pub mod columns;
pub mod compare;
pub mod csv_sink;
pub mod engine;
pub mod error_line;
pub mod experiment;
pub mod headers;
pub mod list;
pub mod merge;
pub mod model;
pub mod progress;
pub mod report;
pub(crate) mod results_dir;
pub mod rows;
pub mod shard;
pub mod sweep;
pub mod tools;
pub mod workload;
pub mod workloads;

//! Fuzzing of every parser that reads a user's file: GGUF (header, metadata, tensor table,
//! tensor data, model config), experiment TOML (load and validation), trace CSV and id files.
//!
//! Each target draws structure-aware inputs (a valid document, then mutated) from a seeded
//! generator; every input must give `Ok` or an error of one line per problem, never a panic,
//! and may grow the heap only by what its length justifies (each target's `budget` says why).
//! Ignored by `cargo test --workspace`; CI runs them after the tests:
//!
//! ```sh
//! cargo test -p runner --test fuzz -- --ignored --nocapture
//! KVLAB_FUZZ_INPUTS=1000000 KVLAB_FUZZ_SEED=7 cargo test -p runner --test fuzz -- --ignored --nocapture
//! ```

mod alloc;
mod experiment;
mod gguf;
mod harness;
mod ids;
mod mutate;
mod trace;

#[global_allocator]
static ALLOC: alloc::ThreadCounting = alloc::ThreadCounting;

#[test]
#[ignore = "fuzzing: run with --ignored (CI does)"]
fn fuzz_gguf() {
    harness::run(&gguf::Gguf);
}

#[test]
#[ignore = "fuzzing: run with --ignored (CI does)"]
fn fuzz_experiment_toml() {
    harness::run(&experiment::ExperimentToml::new());
}

#[test]
#[ignore = "fuzzing: run with --ignored (CI does)"]
fn fuzz_trace_csv() {
    harness::run(&trace::TraceCsv);
}

#[test]
#[ignore = "fuzzing: run with --ignored (CI does)"]
fn fuzz_ids() {
    harness::run(&ids::Ids);
}

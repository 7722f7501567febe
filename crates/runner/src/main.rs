//! `runner`: see `runner --help` and the `runner` library for the pipeline.

use std::process::ExitCode;

use clap::Parser;
use runner::alloc_counter::CountingAlloc;

/// Counts heap bytes so the memory workload can report the process's measured peak.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> ExitCode {
    let cli = runner::cli::Cli::parse();
    match runner::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", runner::error_line::error_line(&e));
            ExitCode::FAILURE
        }
    }
}

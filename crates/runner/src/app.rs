//! The command line's dispatch: each subcommand to its module, experiment files to the sweep
//! engine (`crate::engine`).

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::backend::BackendName;
use crate::cli::{Cli, Command, Global};
use crate::experiment::fit::MemoryLimit;
use crate::experiment::{self, Experiment, Invalid};
use crate::shard::Plan;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let (Some(command), true) =
        (&cli.command, !cli.experiments.is_empty() || cli.shard.is_some())
    {
        bail!(
            "experiment files and --shard go without a subcommand (got {command:?} too); run \
             `runner EXPERIMENT.toml...` and `runner <subcommand>` separately"
        );
    }
    match cli.command {
        Some(Command::Report { dir }) => crate::report::run(&dir).map(|written| {
            for p in written {
                println!("{}", p.display());
            }
        }),
        Some(Command::Validate { files }) => {
            let loaded = load_all(&files, &cli.global)?;
            for e in loaded {
                let n = e.all_runs().len();
                println!("{}: ok ({} runs, backend {})", e.path.display(), n, e.backend);
            }
            Ok(())
        }
        Some(Command::Compare { base, new, ppl_tol, max_slowdown }) => {
            let opts = crate::compare::Options { ppl_tol, max_slowdown, only: cli.global.only };
            let outcome = crate::compare::compare(&base, &new, &opts)?;
            print!("{}", outcome.render(&base, &new));
            if !outcome.passed() {
                bail!("{} regression(s) against {}", outcome.regressions(), base.display());
            }
            Ok(())
        }
        Some(Command::Headers { files, check }) => match check {
            Some(dir) => crate::headers::command::check(&dir),
            None => crate::headers::command::print(&files, cli.global.backend),
        },
        Some(Command::Plan { files, shards, json }) => {
            let loaded = load_all(&files, &cli.global)?;
            let plans = loaded
                .iter()
                .map(|e| Plan::new(e, &cli.global.only, shards))
                .collect::<Result<Vec<_>>>()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plans)?);
            } else {
                plans.iter().for_each(|p| print!("{}", p.render()));
            }
            Ok(())
        }
        Some(Command::Merge { dirs }) => {
            for dir in crate::merge::run(&dirs, &cli.global.out)? {
                println!("{}", dir.display());
            }
            Ok(())
        }
        Some(Command::List) => {
            print!("{}", crate::list::list());
            Ok(())
        }
        Some(Command::Generate(args)) => crate::tools::generate_command(&args, &cli.global),
        Some(Command::Logits(args)) => crate::tools::logits_command(&args, &cli.global),
        Some(Command::ModelPath { name: model }) => {
            crate::model::check(&model, crate::model::Weights::Pretrained)
                .map_err(anyhow::Error::msg)?;
            let source = crate::model::ModelSource {
                gguf: cli.global.model.clone(),
                cache_dir: cli.global.cache_dir.clone(),
            };
            let path = crate::model::gguf_path(&model, &source).map_err(anyhow::Error::msg)?;
            println!("{}", path.display());
            Ok(())
        }
        Some(Command::Tokens { file, json }) => {
            crate::tools::tokens_command(&file, json, &cli.global)
        }
        Some(Command::Bandwidth { bytes, json }) => {
            let b = crate::tools::bandwidth_probe(bytes, 5);
            if json {
                println!("{}", serde_json::to_string(&b)?);
            } else {
                println!(
                    "{:.2} GB/s ({} threads, {} MiB per pass)",
                    b.gb_per_s,
                    b.threads,
                    bytes >> 20
                );
            }
            Ok(())
        }
        None => {
            if cli.experiments.is_empty() {
                bail!(
                    "no experiment file given; try `runner experiments/seed.toml`, or \
                     `runner --help`"
                );
            }
            let experiments = load_all(&cli.experiments, &cli.global)?;
            crate::engine::run_experiments(&experiments, &cli.global, cli.shard)
        }
    }
}

/// Loads and validates every file, and checks every run fits in memory; reports every file's
/// errors before failing.
pub(crate) fn load_all(files: &[PathBuf], g: &Global) -> Result<Vec<Experiment>> {
    let mut loaded = vec![];
    let mut errors = vec![];
    for f in files {
        match experiment::load(f, g.backend) {
            Ok(e) => loaded.push(e),
            Err(Invalid(lines)) => errors.extend(lines),
        }
    }
    for e in &loaded {
        let cpu = matches!(e.backend, BackendName::Flex | BackendName::Ndarray);
        if let Some(limit) = MemoryLimit::new(g.max_memory, cpu)
            && let Err(Invalid(lines)) = experiment::fit::check(e, limit, &g.only)
        {
            errors.extend(lines);
        }
    }
    if !errors.is_empty() {
        bail!(Invalid(errors));
    }
    Ok(loaded)
}

//! The pipeline behind `main`: parse → load + validate every file → expand → for each run
//! measure → append the row. Workloads measure, the CSV sink and the report only serialize.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, Result, anyhow, bail};
use burn::prelude::Backend;
use kvlab_model::{Model, ModelConfig, ModelWeights};
use kvlab_strategies::heads::{HeadReduction, convert_kv_heads};
use kvlab_strategies::{StrategyKind, StrategySpec};

use crate::backend::BackendName;
use crate::cli::{Cli, Command, Global};
use crate::columns::PREFIX;
use crate::csv_sink::CsvSink;
use crate::experiment::{self, Experiment, Invalid};
use crate::model::ModelSource;
use crate::progress::Progress;
use crate::shard::{Plan, Selection, ShardSpec};
use crate::sweep::{AXES, Role, Run, Workload};
use crate::workloads::{self, RunCtx};


/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Report { dir }) => crate::report::run(&dir).map(|written| {
            for p in written {
                println!("{}", p.display());
            }
        }),
        Some(Command::Validate { files }) => {
            let loaded = load_all(&files, cli.global.backend)?;
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
        Some(Command::Plan { files, shards, json }) => {
            let loaded = load_all(&files, cli.global.backend)?;
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
            print!("{}", list());
            Ok(())
        }
        Some(Command::Generate(args)) => generate_command(&args, &cli.global),
        Some(Command::Logits(args)) => logits_command(&args, &cli.global),
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
            run_experiments(&cli.experiments, &cli.global, cli.shard)
        }
    }
}

/// The backend a single-purpose command runs on (`--backend`, default flex).
fn command_backend(g: &Global) -> Result<BackendName> {
    let b = g.backend.unwrap_or(BackendName::Flex);
    b.ensure_compiled_in().map_err(anyhow::Error::msg)?;
    Ok(b)
}

fn generate_command(args: &crate::cli::GenerateArgs, g: &Global) -> Result<()> {
    let (weights, tokenizer) =
        crate::tools::load_pretrained(g.model.as_deref(), g.cache_dir.as_deref())?;
    let prompt = match (&args.prompt, &args.ids, &args.ids_file) {
        (Some(text), _, _) => tokenizer.encode(text)?,
        (_, Some(ids), _) => crate::tools::parse_ids(ids)?,
        (_, _, Some(path)) => crate::tools::parse_ids(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        _ => bail!("generate needs --prompt, --ids or --ids-file"),
    };
    let backend = command_backend(g)?;
    let report = crate::with_backend!(
        backend,
        |B, device| {
            let model = crate::model::upload::<B>(&weights, &device).map_err(anyhow::Error::msg)?;
            crate::tools::timed_generate(
                &model,
                &prompt,
                args.new_tokens,
                args.batch,
                args.repeat.max(1),
                args.warmup,
                backend.to_string(),
            )?
        },
        bail!("backend {backend} is not compiled in")
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let text = tokenizer.decode(&report.tokens[0])?;
    println!("{}{}", args.prompt.clone().unwrap_or_default(), text);
    let mut rates = report.decode_tok_per_s.clone();
    rates.sort_by(f64::total_cmp);
    eprintln!(
        "{} prompt tokens, {} new: prefill {:.3} s, decode {:.1} tok/s (median of {}, batch {}, {backend})",
        report.prompt_tokens,
        report.new_tokens,
        report.prefill_s[report.prefill_s.len() / 2],
        rates[rates.len() / 2],
        rates.len(),
        report.batch
    );
    Ok(())
}

fn logits_command(args: &crate::cli::LogitsArgs, g: &Global) -> Result<()> {
    let (weights, tokenizer) =
        crate::tools::load_pretrained(g.model.as_deref(), g.cache_dir.as_deref())?;
    let ids = match (&args.text, &args.ids) {
        (Some(text), _) => tokenizer.encode(text)?,
        (_, Some(ids)) => crate::tools::parse_ids(ids)?,
        _ => bail!("logits needs --text or --ids"),
    };
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= weights.config.vocab_size) {
        bail!("token id {bad} is out of range (vocab {})", weights.config.vocab_size);
    }
    let backend = command_backend(g)?;
    let json = crate::with_backend!(
        backend,
        |B, device| {
            let model = crate::model::upload::<B>(&weights, &device).map_err(anyhow::Error::msg)?;
            crate::tools::logits_json(&model, &ids, args.top_k)?
        },
        bail!("backend {backend} is not compiled in")
    );
    println!("{json}");
    Ok(())
}

/// Loads and validates every file, reporting every file's errors before failing.
pub fn load_all(files: &[PathBuf], backend: Option<BackendName>) -> Result<Vec<Experiment>> {
    let mut loaded = vec![];
    let mut errors = vec![];
    for f in files {
        match experiment::load(f, backend) {
            Ok(e) => loaded.push(e),
            Err(Invalid(lines)) => errors.extend(lines),
        }
    }
    if !errors.is_empty() {
        bail!(Invalid(errors));
    }
    Ok(loaded)
}

/// The header of a workload's CSV.
pub fn header(workload: Workload) -> Vec<String> {
    PREFIX
        .iter()
        .copied()
        .chain(workload.axis_columns())
        .chain(workloads::metric_columns(workload).iter().copied())
        .map(String::from)
        .collect()
}

fn csv_path(out: &Path, e: &Experiment, w: Workload) -> PathBuf {
    out.join(e.name()).join(format!("{}.csv", w.name()))
}

fn run_experiments(files: &[PathBuf], g: &Global, shard: Option<ShardSpec>) -> Result<()> {
    let experiments = load_all(files, g.backend)?;
    let mut names = BTreeMap::new();
    for e in &experiments {
        if let Some(other) = names.insert(e.name().to_string(), e.path.clone()) {
            bail!(
                "{} and {} both name experiment '{}' (results would mix)",
                other.display(),
                e.path.display(),
                e.name()
            );
        }
    }
    let selections = experiments
        .iter()
        .map(|e| Selection::new(e, &g.only, shard))
        .collect::<Result<Vec<_>>>()?;
    if g.dry_run {
        let mut text = String::new();
        for (e, selection) in experiments.iter().zip(&selections) {
            text += &format!("# {} ({}, backend {})\n", e.name(), e.path.display(), e.backend);
            for w in e.workloads() {
                for (i, run) in e.runs(w).iter().enumerate() {
                    let id = run.id(e.backend.name());
                    if selection.keeps(w, &id) {
                        text += &format!("{w}#{i}\t{id}\n");
                    }
                }
            }
        }
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
        return Ok(());
    }
    // A shard directory written under another plan is refused before anything is touched.
    for (e, selection) in experiments.iter().zip(&selections) {
        if let Some((spec, plan)) = &selection.shard {
            plan.check_manifest(&g.out.join(e.name()), *spec)?;
        }
    }
    // Open every CSV before the first run, so a mismatch fails before any work.
    let mut sinks = vec![];
    for e in &experiments {
        let mut per = BTreeMap::new();
        for w in e.workloads() {
            per.insert(w, CsvSink::open(&csv_path(&g.out, e, w), &header(w), g.resume)?);
            if w == Workload::Fragmentation {
                // The side CSV of per-iteration samples follows the same resume rule.
                workloads::fragmentation::open_series(&g.out.join(e.name()), g.resume)?;
            }
        }
        sinks.push(per);
    }
    let progress = Progress::new(g.quiet);
    let commit = git_commit();
    let source = ModelSource { gguf: g.model.clone(), cache_dir: g.cache_dir.clone() };
    for ((e, sinks), selection) in experiments.iter().zip(&mut sinks).zip(&selections) {
        let dir = g.out.join(e.name());
        std::fs::write(dir.join("experiment.toml"), &e.source)
            .with_context(|| format!("cannot write {}", dir.display()))?;
        if let Some((spec, plan)) = &selection.shard {
            plan.write_manifest(&dir, *spec)?;
        }
        let env = Env {
            experiment: e,
            commit: &commit,
            source: &source,
            progress: &progress,
            dir: &dir,
            selection,
        };
        crate::with_backend!(
            e.backend,
            |B, device| execute::<B>(&env, &device, sinks)?,
            bail!("{}", e.backend.ensure_compiled_in().unwrap_err())
        );
        if let Some((spec, _)) = &selection.shard {
            // A shard's rows are a part: `runner merge` draws the report of the whole.
            progress.info(&format!("{}: shard {spec} done in {}", e.name(), dir.display()));
            continue;
        }
        let written = crate::report::run(&dir)?;
        progress.info(&format!(
            "{}: wrote {} ({} charts)",
            e.name(),
            dir.join("report.md").display(),
            written.iter().filter(|p| p.extension().is_some_and(|x| x == "svg")).count()
        ));
    }
    Ok(())
}

struct Env<'a> {
    experiment: &'a Experiment,
    commit: &'a str,
    source: &'a ModelSource,
    progress: &'a Progress,
    /// The experiment's results directory (for side CSVs).
    dir: &'a Path,
    /// The runs to run (`--only`, `--shard`); the others are skipped.
    selection: &'a Selection,
}

/// The columns every result row starts with: experiment, run id, commit, backend, device,
/// then every sweep parameter (empty where it does not apply).
fn row_prefix(env: &Env<'_>, run: &Run, id: &str, device: &str) -> Vec<String> {
    let e = env.experiment;
    let mut row: Vec<String> =
        vec![e.name().into(), id.into(), env.commit.into(), e.backend.name().into(), device.into()];
    row.extend(
        run.params.iter().map(|(_, v)| v.as_ref().map(|v| v.to_string()).unwrap_or_default()),
    );
    row
}

/// The device model of `name` with head layout `layout`, uploaded unless `loaded` already
/// holds it (host weights read once per model into `host`).
fn load_model<'a, B: Backend>(
    env: &Env<'_>,
    device: &B::Device,
    name: &str,
    layout: HeadLayout,
    host: &mut Option<ModelWeights>,
    loaded: &'a mut Option<(HeadLayout, Model<B>)>,
) -> Result<&'a Model<B>> {
    let e = env.experiment;
    if loaded.as_ref().is_none_or(|(l, _)| *l != layout) {
        drop(loaded.take()); // free the previous layout's device copy first
        if host.is_none() {
            *host = Some(
                crate::model::weights(name, e.file.experiment.weights, e.seed(), env.source)
                    .map_err(|m| anyhow!("model {name}: {m}"))?,
            );
        }
        let weights = host.as_ref().expect("loaded above");
        let model = match layout {
            None => crate::model::upload::<B>(weights, device),
            Some((k, reduction)) => {
                let converted = convert_kv_heads(weights, k, reduction)?;
                crate::model::upload::<B>(&converted, device)
            }
        }
        .map_err(|m| anyhow!("model {name}: {m}"))?;
        *loaded = Some((layout, model));
    }
    Ok(&loaded.as_ref().expect("loaded above").1)
}

/// Every run of one experiment on backend `B`.
fn execute<B: Backend>(
    env: &Env<'_>,
    device: &B::Device,
    sinks: &mut BTreeMap<Workload, CsvSink>,
) -> Result<()> {
    let e = env.experiment;
    let backend = e.backend.name();
    let device_name = format!("{device:?}");
    // Models are the outermost axis: run every workload's runs of one model, then drop it,
    // so one model is in memory at a time. Each CSV still gets its runs in the pinned order.
    let mut models: Vec<String> = vec![];
    let mut plan: Vec<(Workload, Vec<Run>)> = vec![];
    let mut total = 0;
    for (w, sink) in sinks.iter() {
        let runs: Vec<Run> =
            e.runs(*w).into_iter().filter(|r| env.selection.keeps(*w, &r.id(backend))).collect();
        let todo: Vec<Run> =
            runs.iter().filter(|r| !sink.contains(&r.id(backend))).cloned().collect();
        if todo.len() < runs.len() {
            env.progress.info(&format!(
                "{}/{w}: resuming, {} of {} runs already in {}",
                e.name(),
                runs.len() - todo.len(),
                runs.len(),
                sink.path().display()
            ));
        }
        for r in &todo {
            if !models.iter().any(|m| m == r.model()) {
                models.push(r.model().to_string());
            }
        }
        total += todo.len();
        plan.push((*w, todo));
    }
    let bar = env.progress.sweep_bar(total as u64, e.name());
    let mut walk_ref: Option<(String, String)> =
        sinks.get(&Workload::Walkthrough).and_then(existing_walkthrough);
    let mut walked = 0;
    let mut ppl_ref: BTreeMap<String, f64> = BTreeMap::new();
    for name in &models {
        // Host weights once per model; the device model per head layout (kv_heads).
        let mut host: Option<ModelWeights> = None;
        let mut loaded: Option<(HeadLayout, Model<B>)> = None;
        for (w, runs) in &plan {
            let sink = sinks.get_mut(w).expect("a sink per workload");
            for run in runs.iter().filter(|r| r.model() == name) {
                bar.set_message(format!("{w}: {}", run.label()));
                if *w == Workload::Fragmentation {
                    // A simulation; with `execute`, its batches also run through the model.
                    let model = match workloads::fragmentation::executes(e) {
                        true => Some(load_model(env, device, name, None, &mut host, &mut loaded)?),
                        false => None,
                    };
                    let (metrics, series) = workloads::fragmentation::measure(e, run, model)
                        .with_context(|| format!("run {w}: {}", run.label()))?;
                    let id = run.id(backend);
                    let mut row = row_prefix(env, run, &id, &device_name);
                    let budget = metrics[5].clone(); // kv_budget_bytes
                    row.extend(metrics);
                    workloads::fragmentation::append_series(
                        env.dir, e, run, &id, &budget, &series,
                    )?;
                    sink.append(&row)?;
                    bar.inc(1);
                    continue;
                }
                let layout = head_layout(run)?;
                let model = load_model(env, device, name, layout, &mut host, &mut loaded)?;
                let ctx = RunCtx {
                    model,
                    device,
                    experiment: e,
                    run,
                    progress: env.progress,
                    source: env.source,
                };
                let metrics = match w {
                    Workload::Memory => workloads::memory::measure(&ctx)?,
                    Workload::Throughput => workloads::throughput::measure(&ctx)?,
                    Workload::Fragmentation => {
                        bail!("internal: fragmentation runs without a model")
                    }
                    Workload::Walkthrough => {
                        let (lines, row) = workloads::walkthrough::measure(&ctx)?;
                        for l in lines {
                            env.progress.println(&l);
                        }
                        match &walk_ref {
                            Some(r) => {
                                workloads::walkthrough::check_same(r, &run.label(), &row[2])?
                            }
                            None => walk_ref = Some((run.label(), row[2].clone())),
                        }
                        walked += 1;
                        row
                    }
                    Workload::Perplexity => {
                        let key = name.clone();
                        let existing = existing_reference(&sink.existing, sink.header(), &key);
                        let mut reference = |tokens: &[u32]| -> Result<f64> {
                            if let Some(p) = ppl_ref.get(&key).copied().or(existing) {
                                return Ok(p);
                            }
                            let spec = StrategySpec::new(StrategyKind::Concat);
                            let mut cache =
                                spec.build::<B>(&model.config, 1, tokens.len(), device)?;
                            let sub = env
                                .progress
                                .sub_bar(tokens.len() as u64 - 1, "tokens (reference: concat)");
                            let r = workloads::perplexity::streaming(
                                model,
                                cache.as_mut(),
                                tokens,
                                |i, _| sub.set_position(i as u64),
                            )?;
                            sub.finish_and_clear();
                            ppl_ref.insert(key.clone(), r.ppl);
                            Ok(r.ppl)
                        };
                        workloads::perplexity::measure(&ctx, &mut reference)?
                    }
                };
                let mut row = row_prefix(env, run, &run.id(backend), &device_name);
                row.extend(metrics);
                sink.append(&row)?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    if let (true, Some((label, tokens))) = (walked > 0, &walk_ref) {
        env.progress.println(&format!(
            "walkthrough: every strategy generated the same tokens as '{label}': [{tokens}]"
        ));
    }
    Ok(())
}

/// The head layout a run's model needs: `None` for the checkpoint's own.
type HeadLayout = Option<(usize, HeadReduction)>;

/// The run's head layout, read from its keys directly: a chunked-perplexity run has no
/// strategy but still converts the model.
fn head_layout(run: &Run) -> Result<HeadLayout> {
    let Some(kv_heads) = run.get("kv_heads").and_then(|v| v.as_usize()) else {
        return Ok(None);
    };
    let reduction = match run.get("head_reduction") {
        Some(crate::sweep::Value::Str(name)) => name.parse::<HeadReduction>()?,
        _ => HeadReduction::default(),
    };
    Ok(Some((kv_heads, reduction)))
}

fn column<'a>(header: &[String], row: &'a [String], name: &str) -> Option<&'a str> {
    header.iter().position(|h| h == name).and_then(|i| row.get(i)).map(String::as_str)
}

fn existing_walkthrough(sink: &CsvSink) -> Option<(String, String)> {
    let row = sink.existing.first()?;
    let h = sink.header();
    Some((column(h, row, "run_id")?.to_string(), column(h, row, "generated")?.to_string()))
}

/// The full-cache streaming perplexity already in the CSV for `model`, if any.
fn existing_reference(rows: &[Vec<String>], header: &[String], model: &str) -> Option<f64> {
    rows.iter()
        .find(|r| {
            column(header, r, "model") == Some(model)
                && column(header, r, "strategy") == Some("concat")
                && column(header, r, "mode") == Some("streaming")
        })
        .and_then(|r| column(header, r, "ppl")?.parse().ok())
}

/// `git rev-parse --short HEAD`, or "unknown".
pub fn git_commit() -> String {
    Process::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `runner list`.
pub fn list() -> String {
    let mut s = String::from("Strategies (sweep key `strategy`):\n");
    for kind in StrategyKind::ALL {
        let params = kind.parameters();
        let mut probe = serde_json::json!({ "kind": kind.name() });
        for (k, v) in [("cache_tokens", 8), ("sink_tokens", 1), ("block_size", 4)] {
            if params.contains(&k) {
                probe[k] = v.into();
            }
        }
        let built = serde_json::from_value::<StrategySpec>(probe)
            .map_err(|e| e.to_string())
            .and_then(|spec| crate::model::check_buildable(&spec, 8));
        s += &format!(
            "  {:<13} {}{}\n  {:<13} parameters: {}\n",
            kind.name(),
            kind.summary(),
            if built.is_ok() { "" } else { "  [not built yet]" },
            "",
            if params.is_empty() { "-".to_string() } else { params.join(", ") }
        );
    }
    s += "\nSweep keys (expansion order, outermost first):\n";
    for a in AXES {
        let role = match a.role {
            Role::Model => "model",
            Role::Kind => "strategy",
            Role::Strategy => "strategy parameter",
            Role::Workload => "workload axis",
        };
        s += &format!("  {:<13} {} ({role}; {})\n", a.key, a.help, a.kind.allowed());
    }
    s += "\nWorkloads ([workload.<name>]):\n";
    for w in Workload::ALL {
        let cols = workloads::metric_columns(w).join(", ");
        s += &format!("  {:<13} reads: {:<16} writes: {cols}\n", w.name(), {
            let a = w.axes();
            if a.is_empty() { "-".to_string() } else { a.join(", ") }
        });
    }
    s += "\nModel presets (sweep key `model`, or [experiment] model):\n";
    for name in kvlab_model::config::PRESETS {
        if let Ok(c) = ModelConfig::preset(name) {
            s += &format!(
                "  {:<13} {} layers, {} heads / {} kv heads × {} dims, vocab {}: {} KV bytes per \
                 token (f32)\n",
                name,
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                c.vocab_size,
                c.kv_bytes_per_token(4)
            );
        }
    }
    s += "\nBackends (--backend or [experiment] backend):\n";
    for b in BackendName::ALL {
        let state = if b.compiled_in() {
            "compiled in".to_string()
        } else {
            format!("not compiled in (cargo feature `{}`)", b.feature().unwrap_or_default())
        };
        s += &format!("  {:<13} {state}\n", b.name());
    }
    s
}

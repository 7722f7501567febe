//! The sweep engine behind `runner EXPERIMENT.toml...`: load and validate every file, stage
//! each experiment's results directory, run every selected run on its backend (one model in
//! memory at a time), append each typed row as it finishes, draw the report, swap the results
//! in. Workloads measure; the CSV sink and the report only serialize.

mod models;
mod references;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use burn::prelude::Backend;

use self::models::{LoadedModel, head_layout};
use crate::cli::Global;
use crate::columns::PREFIX;
use crate::csv_sink::CsvSink;
use crate::experiment::Experiment;
use crate::model::ModelSource;
use crate::progress::Progress;
use crate::results_dir::{self, Staged};
use crate::rows::{self, Metrics};
use crate::shard::{Selection, ShardSpec};
use crate::sweep::{Run, Workload};
use crate::workloads::perplexity::FullCacheRun;
use crate::workloads::{self, RunCtx};

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

/// Runs experiment files (already loaded and validated) with the global flags.
pub(crate) fn run_experiments(
    experiments: &[Experiment],
    g: &Global,
    shard: Option<ShardSpec>,
) -> Result<()> {
    let mut names = BTreeMap::new();
    for e in experiments {
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
        print_runs(experiments, &selections);
        return Ok(());
    }
    // Resuming a shard directory of another plan is refused before anything is touched.
    for (e, selection) in experiments.iter().zip(&selections) {
        if let (Some((spec, plan)), true) = (&selection.shard, g.resume) {
            plan.check_manifest(&results_dir::resumed_from(&g.out.join(e.name())), *spec)?;
        }
    }
    let staged = experiments
        .iter()
        .map(|e| results_dir::stage(&g.out.join(e.name()), g.resume))
        .collect::<Result<Vec<_>>>()?;
    // Open every CSV before the first run, so a mismatch fails before any work.
    let mut sinks = vec![];
    for (e, stage) in experiments.iter().zip(&staged) {
        let mut per = BTreeMap::new();
        for w in e.workloads() {
            let path = stage.staging.join(format!("{}.csv", w.name()));
            per.insert(w, CsvSink::open(&path, &header(w), g.resume)?);
            // Side CSVs follow the same resume rule, keeping the rows of finished runs.
            let finished = |id: &str| per[&w].contains(id);
            if w == Workload::Fragmentation {
                workloads::fragmentation::open_series(&stage.staging, g.resume, &finished)?;
            }
            if w == Workload::Retrieval {
                workloads::retrieval::open_cases(&stage.staging, g.resume, &finished)?;
            }
        }
        sinks.push(per);
    }
    let progress = Progress::new(g.quiet);
    let commit = git_commit();
    let source = ModelSource { gguf: g.model.clone(), cache_dir: g.cache_dir.clone() };
    let runs = experiments.iter().zip(&mut sinks).zip(&selections).zip(staged);
    for (((e, sinks), selection), stage) in runs {
        let dir = &stage.staging;
        std::fs::write(dir.join("experiment.toml"), &e.source)
            .with_context(|| format!("cannot write {}", dir.display()))?;
        if let Some((spec, plan)) = &selection.shard {
            plan.write_manifest(dir, *spec)?;
        }
        let env = Env {
            experiment: e,
            commit: &commit,
            source: &source,
            progress: &progress,
            dir,
            selection,
        };
        crate::with_backend!(
            e.backend,
            |B, device| execute::<B>(&env, &device, sinks)?,
            bail!("{}", e.backend.ensure_compiled_in().unwrap_err())
        );
        finish(e, selection, stage, &progress)?;
    }
    Ok(())
}

/// `--dry-run`: every selected run, numbered within its workload.
fn print_runs(experiments: &[Experiment], selections: &[Selection]) {
    let mut text = String::new();
    for (e, selection) in experiments.iter().zip(selections) {
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
}

/// Draws the report (a shard's rows are a part: `runner merge` draws the whole) and swaps the
/// finished results in.
fn finish(e: &Experiment, selection: &Selection, stage: Staged, progress: &Progress) -> Result<()> {
    let results = stage.results.clone();
    if let Some((spec, _)) = &selection.shard {
        stage.commit()?;
        progress.info(&format!("{}: shard {spec} done in {}", e.name(), results.display()));
        return Ok(());
    }
    // The rows are what took the time: they are swapped in even when the report cannot be
    // drawn (a machine without fonts, say), and the error says how to draw it later.
    let report = crate::report::run(&stage.staging);
    stage.commit()?;
    let written = report.with_context(|| {
        format!(
            "{}: every run finished and its CSVs are in {}, but the report could not be drawn \
             (fix the cause, then `runner report {}`)",
            e.name(),
            results.display(),
            results.display()
        )
    })?;
    progress.info(&format!(
        "{}: wrote {} ({} charts)",
        e.name(),
        results.join("report.md").display(),
        written.iter().filter(|p| p.extension().is_some_and(|x| x == "svg")).count()
    ));
    Ok(())
}

struct Env<'a> {
    experiment: &'a Experiment,
    commit: &'a str,
    source: &'a ModelSource,
    progress: &'a Progress,
    /// The directory the experiment's results are written to (for side CSVs).
    dir: &'a Path,
    /// The runs to run (`--only`, `--shard`); the others are skipped.
    selection: &'a Selection,
}

impl Env<'_> {
    /// Appends a run's row: experiment, run id, commit, backend, device, every sweep parameter
    /// (empty where it does not apply), then the metrics.
    fn append<M: Metrics>(&self, sink: &mut CsvSink, run: &Run, device: &str, m: &M) -> Result<()> {
        let e = self.experiment;
        let id = run.id(e.backend.name());
        let mut row: Vec<String> =
            vec![e.name().into(), id, self.commit.into(), e.backend.name().into(), device.into()];
        row.extend(
            run.params.iter().map(|(_, v)| v.as_ref().map(|v| v.to_string()).unwrap_or_default()),
        );
        row.extend(rows::fields(m)?);
        sink.append(&row)
    }
}

/// The runs of each workload still to run (selected, and not already in its CSV).
fn runs_to_do(env: &Env<'_>, sinks: &BTreeMap<Workload, CsvSink>) -> Vec<(Workload, Vec<Run>)> {
    let e = env.experiment;
    let backend = e.backend.name();
    let mut plan = vec![];
    for (w, sink) in sinks {
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
        plan.push((*w, todo));
    }
    plan
}

/// Every run of one experiment on backend `B`.
fn execute<B: Backend>(
    env: &Env<'_>,
    device: &B::Device,
    sinks: &mut BTreeMap<Workload, CsvSink>,
) -> Result<()> {
    let e = env.experiment;
    let device_name = format!("{device:?}");
    let plan = runs_to_do(env, sinks);
    // Models are the outermost axis: run every workload's runs of one model, then drop it,
    // so one model is in memory at a time. Each CSV still gets its runs in the pinned order.
    let mut models: Vec<String> = vec![];
    for r in plan.iter().flat_map(|(_, runs)| runs) {
        if !models.iter().any(|m| m == r.model()) {
            models.push(r.model().to_string());
        }
    }
    let total = plan.iter().map(|(_, runs)| runs.len()).sum::<usize>();
    let bar = env.progress.sweep_bar(total as u64, e.name());
    let mut walk_ref = sinks.get(&Workload::Walkthrough).and_then(references::walkthrough);
    let mut walked = 0;
    // Per model: its full-cache perplexity and logits, settled by its first run that needs them.
    let mut full_runs: BTreeMap<String, FullCacheRun> = BTreeMap::new();
    for name in &models {
        let mut model = LoadedModel::<B>::read(e, name, env.source)?;
        // The retrieval haystacks of this model's tokenizer, built by its first retrieval run.
        let mut haystacks = None;
        for (w, runs) in &plan {
            let sink = sinks.get_mut(w).expect("a sink per workload");
            for run in runs.iter().filter(|r| r.model() == name) {
                bar.set_message(format!("{w}: {}", run.label()));
                if *w == Workload::Fragmentation {
                    run_fragmentation(env, run, &mut model, device, sink, &device_name)?;
                    bar.inc(1);
                    continue;
                }
                model.ensure_layout(head_layout(run)?, device)?;
                model.set_key_bucket(
                    run.usize("key_bucket").unwrap_or(e.backend.default_key_bucket()),
                );
                model.set_fused_attention(run.fused_attention());
                let ctx = RunCtx {
                    model: model.current()?,
                    device,
                    experiment: e,
                    run,
                    progress: env.progress,
                    source: env.source,
                };
                match w {
                    Workload::Memory => {
                        env.append(sink, run, &device_name, &workloads::memory::measure(&ctx)?)?
                    }
                    Workload::Throughput => {
                        env.append(sink, run, &device_name, &workloads::throughput::measure(&ctx)?)?
                    }
                    Workload::Fragmentation => {
                        bail!("internal: fragmentation runs without a model")
                    }
                    Workload::Walkthrough => {
                        let (lines, metrics) = workloads::walkthrough::measure(&ctx)?;
                        for l in lines {
                            env.progress.println(&l);
                        }
                        match &walk_ref {
                            Some(r) => workloads::walkthrough::check_same(
                                r,
                                &run.label(),
                                &metrics.generated,
                            )?,
                            None => walk_ref = Some((run.label(), metrics.generated.clone())),
                        }
                        walked += 1;
                        env.append(sink, run, &device_name, &metrics)?;
                    }
                    Workload::Retrieval => {
                        let haystacks = match &haystacks {
                            Some(h) => h,
                            None => haystacks.insert(workloads::retrieval::haystacks(
                                e.file.workload.retrieval.as_ref().expect("retrieval workload"),
                                name,
                                env.source,
                                e.seed(),
                                longest_context(e),
                            )?),
                        };
                        let (metrics, cases) = workloads::retrieval::measure(&ctx, haystacks)?;
                        workloads::retrieval::append_cases(env.dir, &cases)?;
                        env.append(sink, run, &device_name, &metrics)?;
                    }
                    Workload::Perplexity => {
                        let full = full_runs.entry(name.clone()).or_insert_with(|| FullCacheRun {
                            ppl: references::perplexity(sink, name),
                            logits: None,
                        });
                        let metrics = if workloads::perplexity::needs_native(&ctx, full) {
                            model.with_native(device, |native| {
                                workloads::perplexity::measure(&ctx, Some(native), full)
                            })?
                        } else {
                            workloads::perplexity::measure(&ctx, None, full)?
                        };
                        env.append(sink, run, &device_name, &metrics)?;
                    }
                }
                bar.inc(1);
            }
        }
        full_runs.remove(name); // its recorded logits go with the model
    }
    bar.finish_and_clear();
    if let (true, Some((label, tokens))) = (walked > 0, &walk_ref) {
        env.progress.println(&format!(
            "walkthrough: every strategy generated the same tokens as '{label}': [{tokens}]"
        ));
    }
    Ok(())
}

/// One fragmentation run: a simulation; with `execute`, its batches also run through the
/// model. Its row goes to `sink`, its per-iteration series to the side CSV.
fn run_fragmentation<B: Backend>(
    env: &Env<'_>,
    run: &Run,
    model: &mut LoadedModel<B>,
    device: &B::Device,
    sink: &mut CsvSink,
    device_name: &str,
) -> Result<()> {
    let e = env.experiment;
    let executed = workloads::fragmentation::executes(e);
    if executed {
        model.ensure_layout(None, device)?;
        model.set_fused_attention(run.fused_attention());
    }
    let m = executed.then(|| model.current()).transpose()?;
    let (metrics, series) = workloads::fragmentation::measure(e, run, m)
        .with_context(|| format!("run {}: {}", Workload::Fragmentation, run.label()))?;
    let id = run.id(e.backend.name());
    workloads::fragmentation::append_series(
        env.dir,
        e,
        run,
        &id,
        metrics.kv_budget_bytes,
        &series,
    )?;
    env.append(sink, run, device_name, &metrics)
}

/// The longest `context` of the experiment (the longest haystack).
fn longest_context(e: &Experiment) -> usize {
    e.axes.get("context").unwrap_or_default().iter().filter_map(|v| v.as_usize()).max().unwrap_or(0)
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

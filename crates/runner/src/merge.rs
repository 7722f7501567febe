//! `runner merge SHARD_DIR... --out DIR`: shard directories back into one results directory.
//!
//! Every shard directory carries the plan it ran under ([`crate::shard::Manifest`]). The merge
//! refuses unless all of them carry the same plan and the same experiment file, and every
//! planned run has exactly one row among them; it then writes each CSV's rows in the plan's
//! (pinned) order, as one process would have, and draws the report from them. The merged
//! directory is built beside the destination and swapped in only when complete
//! (`crate::results_dir`), so a failed merge leaves an earlier one untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::csv_sink::{self, CsvSink};
use crate::shard::{MANIFEST_FILE, Manifest, Plan};
use crate::workloads::fragmentation::{SERIES_FILE, series_columns};
use crate::workloads::walkthrough;

/// The experiment directories (holding a shard manifest) named by `arg`: the directory
/// itself, or its subdirectories (a shard's `--out` directory).
fn shard_dirs(arg: &Path) -> Result<Vec<PathBuf>> {
    if arg.join(MANIFEST_FILE).is_file() {
        return Ok(vec![arg.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(arg).with_context(|| format!("cannot read {}", arg.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(MANIFEST_FILE).is_file())
        .collect();
    found.sort();
    // A shard still running, or killed, has only its staging directory (`.<name>.partial`).
    if let Some(unfinished) = found.iter().find(|p| is_staging(p)) {
        let m = Manifest::read(unfinished)?;
        bail!(
            "{}: shard {} of experiment '{}' has not finished (its rows are in {}); finish it \
             with the same `runner ... --shard {} --out {}` command plus --resume",
            arg.display(),
            m.shard,
            m.plan.experiment,
            unfinished.display(),
            m.shard,
            arg.display()
        );
    }
    if found.is_empty() {
        bail!(
            "{}: not a shard directory (no {MANIFEST_FILE} in it or its subdirectories); pass \
             the --out directory of a `runner ... --shard I/N` run",
            arg.display()
        );
    }
    Ok(found)
}

fn is_staging(dir: &Path) -> bool {
    dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Merges the shard directories named by `args` into `out/<experiment>` (one per experiment
/// found); returns the merged directories.
pub fn run(args: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    let mut by_experiment: BTreeMap<String, Vec<(PathBuf, Manifest)>> = BTreeMap::new();
    for arg in args {
        for dir in shard_dirs(arg)? {
            let m = Manifest::read(&dir)?;
            by_experiment.entry(m.plan.experiment.clone()).or_default().push((dir, m));
        }
    }
    let mut merged = vec![];
    for (name, shards) in by_experiment {
        let dest = out.join(&name);
        merge_experiment(&shards, &dest)?;
        merged.push(dest);
    }
    Ok(merged)
}

/// One CSV row of a shard directory, with where it came from.
struct Found {
    row: Vec<String>,
    dir: PathBuf,
}

fn merge_experiment(shards: &[(PathBuf, Manifest)], dest: &Path) -> Result<()> {
    let (first_dir, first) = &shards[0];
    let plan = &first.plan;
    let source = read_experiment_file(first_dir)?;
    for (dir, m) in &shards[1..] {
        if m.plan != *plan {
            bail!(
                "{} and {} were run under different plans of experiment '{}' ({} vs {} shards, \
                 {} vs {} runs): merge the shards of one plan",
                first_dir.display(),
                dir.display(),
                plan.experiment,
                plan.shards,
                m.plan.shards,
                plan.runs.len(),
                m.plan.runs.len()
            );
        }
        if read_experiment_file(dir)? != source {
            bail!(
                "{} and {} hold different experiment.toml files",
                first_dir.display(),
                dir.display()
            );
        }
    }
    let staging = crate::results_dir::stage(dest, false)?.staging;
    std::fs::write(staging.join("experiment.toml"), &source)?;
    let mut series_rows: Vec<Vec<String>> = vec![];
    // Each shard's per-iteration series, read once and grouped by run id.
    let mut series: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for (dir, _) in shards {
        for (id, rows) in series_by_run(dir)? {
            series.entry(id).or_default().extend(rows);
        }
    }
    for workload in workloads_of(plan) {
        let file = format!("{workload}.csv");
        let (header, mut rows) = collect_rows(shards, &file, plan, &workload)?;
        let mut sink = CsvSink::open(&staging.join(&file), &header, false)?;
        let mut first_walk: Option<(String, String)> = None;
        for planned in plan.runs.iter().filter(|r| r.workload == workload) {
            let found = rows.remove(&planned.run_id).expect("collect_rows checked every run");
            if workload == "walkthrough" {
                // As in one process: every strategy must have generated the same tokens.
                let m: walkthrough::Metrics = crate::rows::read(&header, &found.row)?;
                match &first_walk {
                    Some(first) => walkthrough::check_same(first, &planned.run_id, &m.generated)?,
                    None => first_walk = Some((planned.run_id.clone(), m.generated)),
                }
            }
            sink.append(&found.row)?;
            if workload == "fragmentation" {
                series_rows.extend(series.remove(&planned.run_id).unwrap_or_default());
            }
        }
    }
    if !series_rows.is_empty() {
        let header: Vec<String> = series_columns().into_iter().map(String::from).collect();
        let mut sink = CsvSink::open(&staging.join(SERIES_FILE), &header, false)?;
        for row in &series_rows {
            sink.append(row)?;
        }
    }
    crate::report::run(&staging)?;
    crate::results_dir::swap_in(&staging, dest)
}

fn read_experiment_file(dir: &Path) -> Result<String> {
    let path = dir.join("experiment.toml");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The plan's workloads, in its order.
fn workloads_of(plan: &Plan) -> Vec<String> {
    let mut seen: Vec<String> = vec![];
    for r in &plan.runs {
        if !seen.contains(&r.workload) {
            seen.push(r.workload.clone());
        }
    }
    seen
}

/// Every row of `file` across the shard directories, by run id: exactly the planned runs of
/// `workload`, each once.
fn collect_rows(
    shards: &[(PathBuf, Manifest)],
    file: &str,
    plan: &Plan,
    workload: &str,
) -> Result<(Vec<String>, BTreeMap<String, Found>)> {
    let planned: BTreeSet<&str> =
        plan.runs.iter().filter(|r| r.workload == workload).map(|r| r.run_id.as_str()).collect();
    let mut header: Option<(Vec<String>, PathBuf)> = None;
    let mut rows: BTreeMap<String, Found> = BTreeMap::new();
    for (dir, _) in shards {
        let path = dir.join(file);
        if !path.is_file() {
            continue; // a shard that never opened this workload holds none of its runs
        }
        let (h, found) = csv_sink::read(&path)?;
        match &header {
            Some((expected, from)) if *expected != h => {
                bail!("{} and {} have different columns", from.join(file).display(), path.display())
            }
            Some(_) => {}
            None => header = Some((h.clone(), dir.clone())),
        }
        let id_col = h
            .iter()
            .position(|c| c == "run_id")
            .with_context(|| format!("{}: no run_id column", path.display()))?;
        for row in found {
            let id = row[id_col].clone();
            if !planned.contains(id.as_str()) {
                bail!("{}: run {id} is not in the plan of its shard.json", path.display());
            }
            if let Some(other) = rows.get(&id) {
                bail!(
                    "run {id} ({workload}) is duplicated: in {} and in {}",
                    other.dir.join(file).display(),
                    path.display()
                );
            }
            rows.insert(id, Found { row, dir: dir.clone() });
        }
    }
    let missing: Vec<String> = plan
        .runs
        .iter()
        .filter(|r| r.workload == workload && !rows.contains_key(&r.run_id))
        .map(|r| {
            let holder = shards.iter().find(|(_, m)| m.shard.index == r.shard);
            let why = match holder {
                Some((dir, _)) => {
                    format!("{} holds its shard but not its row; re-run that shard", dir.display())
                }
                None => format!("no directory of shard {}/{} was given", r.shard, plan.shards),
            };
            format!("run {} ({workload}) is missing: {why}", r.run_id)
        })
        .collect();
    if !missing.is_empty() {
        bail!("{} planned run(s) missing:\n{}", missing.len(), missing.join("\n"));
    }
    let header = match header {
        Some((h, _)) => h,
        None => bail!("no shard directory holds {file}"),
    };
    Ok((header, rows))
}

/// A shard's per-iteration series rows by run id, each run's in the order the shard wrote them.
fn series_by_run(dir: &Path) -> Result<BTreeMap<String, Vec<Vec<String>>>> {
    let path = dir.join(SERIES_FILE);
    let mut by_run: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    if !path.is_file() {
        return Ok(by_run);
    }
    let (header, rows) = csv_sink::read(&path)?;
    let id_col = header
        .iter()
        .position(|c| c == "run_id")
        .with_context(|| format!("{}: no run_id column", path.display()))?;
    for row in rows {
        by_run.entry(row[id_col].clone()).or_default().push(row);
    }
    Ok(by_run)
}

//! `runner report DIR`: charts (PNG and SVG) and `report.md` from the CSVs alone.
//!
//! Output is a function of the CSVs and `experiment.toml` only: no timestamps, rows sorted by
//! their parameters, series in a fixed order, so rerunning gives identical files.
//!
//! - `table`: a CSV read back, sorted, with the columns and labels that tell rows apart;
//! - `markdown`: the document's text and tables;
//! - `charts`: which charts each workload gets, as data; `figure` draws them (PNG and SVG
//!   from one drawing body per kind of chart);
//! - `fragmentation` and `papers`: the serving simulation's own sections;
//! - `rotation` and `peers`: the quant sections (rotation on/off; llama.cpp on the same tokens);
//! - `bits_budget` and `bits_sides`: configurations at a byte budget (best at 25/15/10% of the
//!   f32 bytes, Pareto charts) and which of keys and values tolerates fewer bits;
//! - `retrieval`: the passkey section (ceiling, heatmaps, failures and why);
//! - `claims`: "does it hold on every model?" for experiments over several models.

mod bits_budget;
mod bits_names;
mod bits_sides;
mod charts;
mod claims;
mod eviction;
mod figure;
mod fragmentation;
mod markdown;
mod papers;
mod peer_draws;
mod peer_rows;
mod peers;
mod preemption;
mod retrieval;
mod rotation;
mod serving_labels;
mod serving_traces;
mod sharing;
mod slug;
mod stranding;
mod table;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use table::{Table, read_table};

use crate::sweep::Workload;
use slug::slug;

/// Writes charts and report.md for `dir` (one experiment's results) or for every experiment
/// directory inside it. Returns the files written.
pub fn run(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    if is_experiment_dir(dir) {
        return report_one(dir);
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && is_experiment_dir(p))
        .collect();
    subdirs.sort();
    if subdirs.is_empty() {
        bail!(
            "{}: no results here (expected memory.csv, throughput.csv, perplexity.csv or \
             walkthrough.csv, or directories holding them)",
            dir.display()
        );
    }
    let mut written = vec![];
    for d in subdirs {
        written.extend(report_one(&d)?);
    }
    Ok(written)
}

fn is_experiment_dir(dir: &Path) -> bool {
    Workload::ALL.iter().any(|w| dir.join(format!("{}.csv", w.name())).is_file())
}

/// One experiment directory: its charts under `charts/`, then `report.md` linking them.
fn report_one(dir: &Path) -> Result<Vec<PathBuf>> {
    let charts = dir.join("charts");
    let mut tables = vec![];
    for w in Workload::ALL {
        if let Some(t) = read_table(dir, w)? {
            tables.push(t);
        }
    }
    let mut md = markdown::heading(dir, &tables);
    let mut written = vec![];
    for t in &tables {
        let _ = writeln!(md, "## {}\n", markdown::title(t.workload));
        md += &markdown::metrics_table(t);
        let models = t.models();
        for model in &models {
            for mut chart in charts::workload_charts(&t.only_model(model)) {
                if models.len() > 1 {
                    chart.stem = format!("{}_{}", chart.stem, slug(model));
                }
                written.extend(chart.save(&charts)?);
                let _ = writeln!(md, "\n![{} ({model})](charts/{}.svg)", chart.title(), chart.stem);
            }
        }
        md.push('\n');
    }
    if let Some(m) = tables.iter().find(|t| t.workload == Workload::Memory) {
        md += &markdown::device_memory_section(m);
    }
    if let Some(p) = tables.iter().find(|t| t.workload == Workload::Perplexity) {
        let models = p.models();
        let mut section = String::new();
        for model in &models {
            let one = p.only_model(model);
            for (name, q) in [("tradeoff", &charts::PERPLEXITY), ("tradeoff_kl", &charts::KL)] {
                let stem =
                    if models.len() > 1 { format!("{name}_{}", slug(model)) } else { name.into() };
                if let Some(chart) = charts::tradeoff(&one, &stem, q) {
                    written.extend(chart.save(&charts)?);
                    let _ =
                        writeln!(section, "![{} ({model})](charts/{stem}.svg)\n", chart.title());
                }
            }
        }
        if !section.is_empty() {
            let _ = writeln!(
                md,
                "## Memory–quality trade-off\n\nEach point is one configuration; the Pareto \
                 frontier joins those no other configuration beats with fewer KV bytes.\n\n\
                 {section}"
            );
        }
        if let Some(m) = tables.iter().find(|t| t.workload == Workload::Memory) {
            for model in &models {
                let suffix =
                    if models.len() > 1 { format!("_{}", slug(model)) } else { String::new() };
                let (one, mem) = (p.only_model(model), m.only_model(model));
                md += &bits_budget::section(&one, &mem, model, &suffix, &charts, &mut written)?;
            }
        }
        for model in &models {
            md += &bits_sides::section(&p.only_model(model), model);
        }
        md += &rotation::section(p);
        md += &eviction::section(p);
        md += &peers::section(dir, p)?;
    }
    md += &claims::section(&tables);
    if let Some(r) = tables.iter().find(|t| t.workload == Workload::Retrieval) {
        md += &retrieval::section(dir, r, &charts, &mut written)?;
    }
    if let Some(f) = tables.iter().find(|t| t.workload == Workload::Fragmentation) {
        md += &fragmentation::section(dir, f, &charts, &mut written)?;
    }
    remove_stale_charts(&charts, &written);
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(written)
}

/// Charts from an earlier report that this one did not draw would be stale: removed.
fn remove_stale_charts(charts: &Path, written: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(charts) else { return };
    let mut stale: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "svg"))
        .filter(|p| !written.contains(p))
        .collect();
    stale.sort();
    for p in stale {
        let _ = std::fs::remove_file(p);
    }
}

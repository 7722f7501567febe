//! `runner report DIR`: charts (PNG and SVG) and `report.md` from the CSVs alone.
//!
//! Output is a function of the CSVs and `experiment.toml` only: no timestamps, rows sorted by
//! their parameters, series in a fixed order, so rerunning gives identical files.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kvlab_strategies::StrategyKind;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::columns::PREFIX;
use crate::csv_sink;
use crate::sweep::{AXES, Workload};
use crate::workloads;

/// A CSV as read back: header and rows, sorted by parameters.
#[derive(Debug, Clone)]
pub struct Table {
    pub workload: Workload,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    fn get<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        self.col(name).and_then(|i| row.get(i)).map_or("", String::as_str)
    }

    fn num(&self, row: &[String], name: &str) -> Option<f64> {
        self.get(row, name).parse().ok()
    }

    /// Axis columns (and backend) whose value varies across rows: what tells rows apart.
    fn varying(&self) -> Vec<String> {
        let mut names: Vec<String> = vec!["backend".into()];
        names.extend(AXES.iter().map(|a| a.key.to_string()));
        if self.workload == Workload::Perplexity {
            names.push("mode".into());
        }
        names
            .into_iter()
            .filter(|n| self.col(n).is_some())
            .filter(|n| {
                let values: BTreeSet<&str> = self.rows.iter().map(|r| self.get(r, n)).collect();
                values.len() > 1 || n == "strategy"
            })
            .collect()
    }

    /// A label from the varying columns except `except`.
    fn label(&self, row: &[String], varying: &[String], except: &[&str]) -> String {
        let mut parts = vec![];
        for n in varying.iter().filter(|n| !except.contains(&n.as_str())) {
            let v = self.get(row, n);
            if v.is_empty() {
                continue;
            }
            if n == "strategy" || n == "mode" || n == "backend" || n == "model" {
                parts.push(v.to_string());
            } else {
                parts.push(format!("{n}={v}"));
            }
        }
        if parts.is_empty() { "all".into() } else { parts.join(" ") }
    }
}

fn cmp_values(col: &str, a: &str, b: &str) -> Ordering {
    if col == "strategy" {
        let pos = |s: &str| StrategyKind::ALL.iter().position(|k| k.name() == s);
        return pos(a).cmp(&pos(b)).then_with(|| a.cmp(b));
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

/// Reads `<dir>/<workload>.csv`, rows sorted by (backend, axis columns in AXES order, run_id).
pub fn read_table(dir: &Path, workload: Workload) -> Result<Option<Table>> {
    let path = dir.join(format!("{}.csv", workload.name()));
    if !path.is_file() {
        return Ok(None);
    }
    let (header, mut rows) = csv_sink::read(&path)?;
    let mut keys: Vec<String> = vec!["backend".into()];
    keys.extend(AXES.iter().map(|a| a.key.to_string()));
    keys.push("mode".into());
    keys.push("run_id".into());
    let idx: Vec<(String, usize)> = keys
        .into_iter()
        .filter_map(|k| header.iter().position(|h| *h == k).map(|i| (k, i)))
        .collect();
    rows.sort_by(|a, b| {
        idx.iter()
            .map(|(k, i)| cmp_values(k, &a[*i], &b[*i]))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    Ok(Some(Table { workload, header, rows }))
}

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

fn question(dir: &Path) -> (String, String) {
    let fallback = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let Ok(text) = std::fs::read_to_string(dir.join("experiment.toml")) else {
        return (fallback, "(experiment.toml not found next to the CSVs)".into());
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return (fallback, "(experiment.toml unreadable)".into());
    };
    let ex = table.get("experiment");
    let get = |k: &str| ex.and_then(|e| e.get(k)).and_then(|v| v.as_str()).map(String::from);
    (get("name").unwrap_or(fallback), get("question").unwrap_or_else(|| "(no question)".into()))
}

fn report_one(dir: &Path) -> Result<Vec<PathBuf>> {
    let charts = dir.join("charts");
    let mut tables = vec![];
    for w in Workload::ALL {
        if let Some(t) = read_table(dir, w)? {
            tables.push(t);
        }
    }
    let (name, question) = question(dir);
    let mut md = String::new();
    let _ = writeln!(md, "# {name}\n\n**Question.** {}\n", question.trim());
    let unique = |col: &str| -> String {
        let set: BTreeSet<String> = tables
            .iter()
            .flat_map(|t| t.rows.iter().map(move |r| t.get(r, col).to_string()))
            .filter(|v| !v.is_empty())
            .collect();
        set.into_iter().collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(
        md,
        "Models: {} · backends: {} · devices: {} · kvlab commits: {}\n",
        unique("model"),
        unique("backend"),
        unique("device"),
        unique("git_commit")
    );
    let mut written = vec![];
    for t in &tables {
        let _ = writeln!(md, "## {}\n", title(t.workload));
        md += &markdown_table(t);
        // One set of charts per model: their scales differ by orders of magnitude.
        let models: BTreeSet<String> =
            t.rows.iter().map(|r| t.get(r, "model").to_string()).collect();
        for model in &models {
            let part = Table {
                workload: t.workload,
                header: t.header.clone(),
                rows: t.rows.iter().filter(|r| t.get(r, "model") == model).cloned().collect(),
            };
            let suffix = if models.len() > 1 { format!("_{}", slug(model)) } else { String::new() };
            for (stem, alt) in draw_charts(&part, &charts, &suffix, &mut written)? {
                let _ = writeln!(md, "\n![{alt} ({model})](charts/{stem}.svg)");
            }
        }
        md.push('\n');
    }
    if let Some(m) = tables.iter().find(|t| t.workload == Workload::Memory) {
        md += &device_memory_section(m);
    }
    if let Some(p) = tables.iter().find(|t| t.workload == Workload::Perplexity) {
        let models: BTreeSet<String> =
            p.rows.iter().map(|r| p.get(r, "model").to_string()).collect();
        let mut section = String::new();
        for model in &models {
            let part = Table {
                workload: p.workload,
                header: p.header.clone(),
                rows: p.rows.iter().filter(|r| p.get(r, "model") == model).cloned().collect(),
            };
            let stem = if models.len() > 1 {
                format!("tradeoff_{}", slug(model))
            } else {
                "tradeoff".into()
            };
            if tradeoff(&part, &charts, &stem, &mut written)? {
                let _ =
                    writeln!(section, "![perplexity vs KV bytes ({model})](charts/{stem}.svg)\n");
            }
        }
        if !section.is_empty() {
            let _ = writeln!(md, "## Memory–quality trade-off\n\n{section}");
        }
    }
    if let Some(f) = tables.iter().find(|t| t.workload == Workload::Fragmentation) {
        md += &fragmentation_section(dir, f, &charts, &mut written)?;
    }
    // Charts from an earlier report that this one did not draw would be stale.
    if let Ok(entries) = std::fs::read_dir(&charts) {
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
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(written)
}

fn title(w: Workload) -> &'static str {
    match w {
        Workload::Walkthrough => "Walkthrough (the article's generate loop)",
        Workload::Memory => "Memory",
        Workload::Throughput => "Throughput",
        Workload::Perplexity => "Perplexity",
        Workload::Fragmentation => {
            "Fragmentation (serving simulation: paged vs reserved KV memory)"
        }
    }
}

/// The headline columns of a workload.
fn headline(w: Workload) -> &'static [&'static str] {
    match w {
        Workload::Walkthrough => &["generated", "kv_tokens", "kv_live_bytes", "formula_bytes"],
        Workload::Memory => &[
            "kv_allocated_bytes",
            "kv_live_bytes",
            "kv_metadata_bytes",
            "formula_bytes",
            "bytes_per_token",
            "process_peak_bytes",
        ],
        Workload::Throughput => {
            &["prefill_tok_per_s", "decode_tok_per_s", "ms_per_token_p50", "ms_per_token_p90"]
        }
        Workload::Perplexity => &["tokens", "ppl", "ppl_delta_pct", "kv_allocated_bytes"],
        Workload::Fragmentation => &[
            "kv_budget_tokens",
            "completed",
            "rejected",
            "preemptions",
            "token_state_pct",
            "reserved_pct",
            "internal_pct",
            "external_pct",
            "free_pct",
            "tokens_per_iteration",
            "max_running",
            "model_tok_per_s",
        ],
    }
}

fn markdown_table(t: &Table) -> String {
    let varying = t.varying();
    let metrics: Vec<&str> =
        headline(t.workload).iter().copied().filter(|m| t.col(m).is_some()).collect();
    let mut md = String::new();
    let head: Vec<String> = varying
        .iter()
        .cloned()
        .chain(metrics.iter().map(|m| match m.strip_suffix("_bytes") {
            Some(base) => format!("{base} (MiB)"),
            None => m.to_string(),
        }))
        .collect();
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|{}|", head.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in &t.rows {
        let mut cells: Vec<String> = varying.iter().map(|c| t.get(r, c).to_string()).collect();
        for m in &metrics {
            let v = t.get(r, m);
            cells.push(match (m.ends_with("_bytes"), v.parse::<f64>()) {
                (true, Ok(b)) => format!("{:.3}", b / MIB),
                _ => v.to_string(),
            });
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md
}

const MIB: f64 = 1024.0 * 1024.0;

/// On backends with a device allocator (cuda, wgpu): what the allocator holds for each cache
/// beside the bytes the strategy accounts for, and the gap. Empty on CPU backends.
fn device_memory_section(t: &Table) -> String {
    let rows: Vec<&Vec<String>> =
        t.rows.iter().filter(|r| t.num(r, "device_bytes_in_use").is_some()).collect();
    if rows.is_empty() {
        return String::new();
    }
    let varying = t.varying();
    let mut md = String::from(
        "## Device memory: allocator vs accounted\n\n`device_in_use` is the device allocator's \
         in-use bytes with the filled cache held minus before the cache was built; `gap` is \
         that minus `kv_allocated`. A positive gap is memory the strategy does not account for \
         (a buffer the allocator rounded up to its page size, or one the cache no longer \
         needs but still holds); a negative one, accounted bytes the device never allocated. \
         The block tables \
         of `paged` (`kv_metadata`) live on the host, not on the device.\n\n",
    );
    let mut head: Vec<String> = varying.clone();
    head.extend(
        ["kv_allocated (bytes)", "device_in_use (bytes)", "gap (bytes)", "ratio"].map(String::from),
    );
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|{}|", head.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    let (mut exact, mut total) = (0, 0);
    for r in rows {
        let accounted = t.num(r, "kv_allocated_bytes").unwrap_or(0.0);
        let device = t.num(r, "device_bytes_in_use").unwrap_or(0.0);
        let mut cells: Vec<String> = varying.iter().map(|c| t.get(r, c).to_string()).collect();
        let ratio = if accounted > 0.0 { format!("{:.3}", device / accounted) } else { "-".into() };
        cells.extend([
            format!("{accounted:.0}"),
            format!("{device:.0}"),
            format!("{:+.0}", device - accounted),
            ratio,
        ]);
        let _ = writeln!(md, "| {} |", cells.join(" | "));
        total += 1;
        exact += usize::from(device == accounted);
    }
    let _ = writeln!(
        md,
        "\nThe allocator's figure equals the accounted bytes exactly in {exact} of {total} runs.\n"
    );
    md
}

type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Groups rows into series by label, points `(x, y)`, in row order.
fn series(t: &Table, x: &str, y: impl Fn(&[String]) -> Option<f64>, except: &[&str]) -> Series {
    let varying = t.varying();
    let mut out: Series = vec![];
    for r in &t.rows {
        let (Some(xv), Some(yv)) = (t.num(r, x), y(r)) else { continue };
        let label = t.label(r, &varying, except);
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, pts)) => pts.push((xv, yv)),
            None => out.push((label, vec![(xv, yv)])),
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draws the charts whose data exist; returns `(stem, alt text)` of each.
fn draw_charts(
    t: &Table,
    charts: &Path,
    suffix: &str,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    let mut chart = |mut spec: Chart, written: &mut Vec<PathBuf>| -> Result<()> {
        if spec.series.iter().all(|(_, p)| p.is_empty()) {
            return Ok(());
        }
        spec.stem = format!("{}{suffix}", spec.stem);
        written.extend(spec.draw(charts)?);
        out.push((spec.stem.clone(), spec.title.clone()));
        Ok(())
    };
    match t.workload {
        Workload::Memory => {
            let mut s = series(
                t,
                "context",
                |r| t.num(r, "kv_allocated_bytes").map(|b| b / MIB),
                &["context"],
            );
            let formula = series(
                t,
                "context",
                |r| t.num(r, "formula_bytes").map(|b| b / MIB),
                &["context", "strategy", "cache_tokens", "sink_tokens", "block_size"],
            );
            let dashed = formula.len();
            let formula: Series = formula
                .into_iter()
                .map(|(l, p)| (format!("formula 2·L·b·n_kv·d·layers·4 ({l})"), p))
                .collect();
            let n = s.len();
            s.extend(formula);
            chart(
                Chart {
                    stem: "memory_vs_context".into(),
                    title: "KV-cache memory vs context".into(),
                    x: "context (tokens)".into(),
                    y: "KV allocated (MiB)".into(),
                    series: s,
                    dashed_from: (dashed > 0).then_some(n),
                    scatter: false,
                },
                written,
            )?;
        }
        Workload::Throughput => {
            chart(
                Chart {
                    stem: "decode_vs_context".into(),
                    title: "Decode throughput vs context".into(),
                    x: "context (tokens)".into(),
                    y: "decode (tokens/s)".into(),
                    series: series(t, "context", |r| t.num(r, "decode_tok_per_s"), &["context"]),
                    dashed_from: None,
                    scatter: false,
                },
                written,
            )?;
        }
        Workload::Perplexity => {
            let streaming = |r: &[String]| t.get(r, "mode") != "chunked";
            let has_budget = t.rows.iter().any(|r| t.num(r, "cache_tokens").is_some());
            if has_budget {
                let mut s = series(
                    t,
                    "cache_tokens",
                    |r| if streaming(r) { t.num(r, "ppl") } else { None },
                    &["cache_tokens"],
                );
                // Strategies without a budget keep every token: a flat line across the budgets.
                let xs: Vec<f64> = t.rows.iter().filter_map(|r| t.num(r, "cache_tokens")).collect();
                let (lo, hi) = (
                    xs.iter().cloned().fold(f64::INFINITY, f64::min),
                    xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                );
                let varying = t.varying();
                let n = s.len();
                let mut flat: Series = vec![];
                for r in t.rows.iter().filter(|r| t.get(r, "cache_tokens").is_empty()) {
                    if let Some(p) = t.num(r, "ppl") {
                        let label =
                            format!("{} (all tokens)", t.label(r, &varying, &["cache_tokens"]));
                        flat.push((label, vec![(lo, p), (hi, p)]));
                    }
                }
                let any_flat = !flat.is_empty();
                s.extend(flat);
                chart(
                    Chart {
                        stem: "ppl_vs_cache".into(),
                        title: "Perplexity vs cache budget (streaming)".into(),
                        x: "cache budget (tokens)".into(),
                        y: "perplexity".into(),
                        series: s,
                        dashed_from: any_flat.then_some(n),
                        scatter: false,
                    },
                    written,
                )?;
            }
            if t.col("bits").is_some() && t.rows.iter().any(|r| t.num(r, "bits").is_some()) {
                chart(
                    Chart {
                        stem: "ppl_vs_bits".into(),
                        title: "Perplexity vs KV bits".into(),
                        x: "KV bits per element".into(),
                        y: "perplexity".into(),
                        series: series(t, "bits", |r| t.num(r, "ppl"), &["bits"]),
                        dashed_from: None,
                        scatter: false,
                    },
                    written,
                )?;
            }
        }
        Workload::Fragmentation => {
            // A metric per policy against the budget in MiB; the measured tok/s only where
            // the schedule was executed.
            let against_budget = |column: &str, stem: &str, title: &str, y: &str| Chart {
                stem: stem.into(),
                title: title.into(),
                x: "KV budget (MiB)".into(),
                y: y.into(),
                series: series(
                    t,
                    "kv_budget_bytes",
                    |r| t.num(r, column),
                    &["budget_tokens", "budget_bytes"],
                )
                .into_iter()
                .map(|(l, p)| (l, p.into_iter().map(|(x, y)| (x / MIB, y)).collect()))
                .collect(),
                dashed_from: None,
                scatter: false,
            };
            chart(
                against_budget(
                    "tokens_per_iteration",
                    "tokens_per_iteration_vs_budget",
                    "Tokens per iteration (batch size) vs KV budget",
                    "tokens / iteration",
                ),
                written,
            )?;
            if t.rows.iter().any(|r| t.num(r, "model_tok_per_s").is_some()) {
                chart(
                    against_budget(
                        "model_tok_per_s",
                        "model_tok_per_s_vs_budget",
                        "Measured serving throughput vs KV budget",
                        "tokens / s (wall clock, through the model)",
                    ),
                    written,
                )?;
            }
        }
        Workload::Walkthrough => {}
    }
    Ok(out)
}

fn tradeoff(t: &Table, charts: &Path, stem: &str, written: &mut Vec<PathBuf>) -> Result<bool> {
    let varying = t.varying();
    let mut s: Series = vec![];
    for r in &t.rows {
        let (Some(b), Some(p)) = (t.num(r, "kv_allocated_bytes"), t.num(r, "ppl")) else {
            continue;
        };
        s.push((t.label(r, &varying, &[]), vec![(b / MIB, p)]));
    }
    if s.len() < 2 {
        return Ok(false);
    }
    let spec = Chart {
        stem: stem.into(),
        title: "Memory–quality trade-off".into(),
        x: "KV allocated (MiB)".into(),
        y: "perplexity".into(),
        series: s,
        dashed_from: None,
        scatter: true,
    };
    written.extend(spec.draw(charts)?);
    Ok(true)
}

struct Chart {
    stem: String,
    title: String,
    x: String,
    y: String,
    series: Series,
    /// Series from this index on are drawn dashed (formulas, references).
    dashed_from: Option<usize>,
    /// Points only (no lines).
    scatter: bool,
}

impl Chart {
    fn draw(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let png = dir.join(format!("{}.png", self.stem));
        let svg = dir.join(format!("{}.svg", self.stem));
        {
            let root = BitMapBackend::new(&png, (960, 600)).into_drawing_area();
            self.render(&root).map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
            root.present().map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
        }
        {
            let root = SVGBackend::new(&svg, (960, 600)).into_drawing_area();
            self.render(&root).map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
            root.present().map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
        }
        Ok(vec![png, svg])
    }

    fn render<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let pts = self.series.iter().flat_map(|(_, p)| p.iter());
        let (mut x0, mut x1, mut y0, mut y1) =
            (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        let pad = |lo: f64, hi: f64| {
            let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
            (lo - 0.05 * span, hi + 0.05 * span)
        };
        let (x0, x1) = pad(x0, x1);
        let (y0, y1) = pad(y0.min(0.0_f64.max(y0)), y1);
        let (plot, legend) = root.split_horizontally(640);
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(self.x.as_str())
            .y_desc(self.y.as_str())
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        for (i, (label, points)) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let dashed = self.dashed_from.is_some_and(|d| i >= d);
            let style = ShapeStyle { color, filled: true, stroke_width: 2 };
            if !self.scatter {
                if dashed {
                    chart.draw_series(DashedLineSeries::new(
                        points.iter().copied(),
                        8,
                        6,
                        style,
                    ))?;
                } else {
                    chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
                }
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style)))?;
            // The legend: its own column right of the plot, one line per series.
            let y = 40 + 18 * i as i32;
            if y < 590 {
                legend.draw(&PathElement::new(
                    vec![(4, y), (24, y)],
                    ShapeStyle { stroke_width: 3, ..style },
                ))?;
                legend.draw(&Text::new(label.clone(), (30, y - 7), ("sans-serif", 13)))?;
            }
        }
        Ok(())
    }
}

/// The workload's metric columns (for docs and tests).
pub fn metric_columns(w: Workload) -> Vec<&'static str> {
    PREFIX.iter().copied().chain(workloads::metric_columns(w).iter().copied()).collect()
}

/// Compact axis labels: 0.25, 12, 1.5k, 3.2M, 1.2e12.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e9).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || (v.fract() == 0.0) {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A file-name-safe form of a label.
fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// The five parts of the budget, in the vLLM paper's Figure 2 order.
const SPLIT: [(&str, &str); 5] = [
    ("token_state_pct", "token states"),
    ("reserved_pct", "reserved (future tokens)"),
    ("internal_pct", "internal fragmentation"),
    ("external_pct", "external fragmentation"),
    ("free_pct", "free"),
];

/// A policy's legend name: `paged-16`, `reserve-max`.
fn policy_label(t: &Table, r: &[String]) -> String {
    match t.get(r, "block_size") {
        "" => t.get(r, "policy").to_string(),
        b => format!("{}-{b}", t.get(r, "policy")),
    }
}

/// The fragmentation workload's own section: the memory split as stacked bars per policy (one
/// chart per model and budget), concurrency over time from `fragmentation_series.csv`, and the
/// comparison with the vLLM paper's figures.
fn fragmentation_section(
    dir: &Path,
    t: &Table,
    charts: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<String> {
    let mut md = String::from("## Memory split and concurrency (serving simulation)\n\n");
    let series_path = dir.join(workloads::fragmentation::SERIES_FILE);
    let series_csv = if series_path.is_file() { Some(csv_sink::read(&series_path)?) } else { None };
    let mut groups: Vec<(String, String)> = vec![];
    for r in &t.rows {
        let g = (t.get(r, "model").to_string(), t.get(r, "kv_budget_bytes").to_string());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let many_models = groups.iter().map(|g| &g.0).collect::<BTreeSet<_>>().len() > 1;
    for (model, budget) in &groups {
        let rows: Vec<&Vec<String>> = t
            .rows
            .iter()
            .filter(|r| t.get(r, "model") == model && t.get(r, "kv_budget_bytes") == budget)
            .collect();
        let tokens = rows.first().map_or("", |r| t.get(r, "kv_budget_tokens"));
        let suffix =
            if many_models { format!("{}_{tokens}", slug(model)) } else { tokens.to_string() };
        let bars: Vec<(String, [f64; 5])> = rows
            .iter()
            .map(|r| (policy_label(t, r), SPLIT.map(|(c, _)| t.num(r, c).unwrap_or(0.0))))
            .collect();
        let stem = format!("memory_split_{suffix}");
        let title = format!("KV budget split, {tokens} tokens ({model})");
        written.extend(draw_stacked(charts, &stem, &title, &bars)?);
        let _ = writeln!(md, "![{title}](charts/{stem}.svg)\n");
        // Concurrency over time, from the side CSV.
        if let Some((h, srows)) = &series_csv {
            let col = |n: &str| h.iter().position(|c| c == n);
            let (Some(m), Some(b), Some(it), Some(run), Some(p), Some(bs)) = (
                col("model"),
                col("kv_budget_bytes"),
                col("iteration"),
                col("running"),
                col("policy"),
                col("block_size"),
            ) else {
                continue;
            };
            let mut s: Series = vec![];
            for r in srows.iter().filter(|r| r[m] == *model && r[b] == *budget) {
                let label =
                    if r[bs].is_empty() { r[p].clone() } else { format!("{}-{}", r[p], r[bs]) };
                let (Ok(x), Ok(y)) = (r[it].parse::<f64>(), r[run].parse::<f64>()) else {
                    continue;
                };
                match s.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, pts)) => pts.push((x, y)),
                    None => s.push((label, vec![(x, y)])),
                }
            }
            if !s.is_empty() {
                let spec = Chart {
                    stem: format!("concurrency_{suffix}"),
                    title: format!("Requests running per iteration, {tokens}-token budget"),
                    x: "iteration".into(),
                    y: "running requests".into(),
                    series: s,
                    dashed_from: None,
                    scatter: false,
                };
                written.extend(spec.draw(charts)?);
                let _ = writeln!(md, "![{} ({model})](charts/{}.svg)\n", spec.title, spec.stem);
            }
        }
    }
    md += &measured_throughput(t);
    md += &paper_comparison(t);
    Ok(md)
}

/// With `execute = true`: measured tok/s of each policy against `reserve-max` on the same
/// budget, said plainly whichever way it goes.
fn measured_throughput(t: &Table) -> String {
    if !t.rows.iter().any(|r| t.num(r, "model_tok_per_s").is_some()) {
        return String::new();
    }
    let mut md = String::from(
        "## Measured throughput (the schedule run through the model)\n\n\
         | model | budget_tokens | policy | tokens / iteration | tok/s | tok/s vs reserve-max |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut gains = vec![];
    for r in &t.rows {
        let (Some(tps), Some(per_iter)) =
            (t.num(r, "model_tok_per_s"), t.num(r, "tokens_per_iteration"))
        else {
            continue;
        };
        let same_budget = |o: &&Vec<String>| {
            t.get(o, "model") == t.get(r, "model")
                && t.get(o, "kv_budget_bytes") == t.get(r, "kv_budget_bytes")
                && t.get(o, "policy") == "reserve-max"
        };
        let base = t.rows.iter().find(same_budget).and_then(|o| t.num(o, "model_tok_per_s"));
        let ratio = base.map_or(String::new(), |b| format!("{:.2}x", tps / b));
        if let (true, Some(b)) = (t.get(r, "policy") == "paged", base) {
            gains.push(tps / b);
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {per_iter:.2} | {tps:.1} | {ratio} |",
            t.get(r, "model"),
            t.get(r, "kv_budget_tokens"),
            policy_label(t, r),
        );
    }
    if let (Some(lo), Some(hi)) =
        (gains.iter().copied().reduce(f64::min), gains.iter().copied().reduce(f64::max))
    {
        let verdict = if lo >= 1.0 {
            "paging's larger batches do turn into more tokens per second here"
        } else if hi < 1.0 {
            "paging's larger batches do **not** turn into more tokens per second on this \
             machine: a decode step's cost grows with its batch (the model is compute-bound \
             on the CPU, and ragged rows are padded to the longest and gathered through block \
             tables), so fewer, larger steps gain nothing. The vLLM result relies on decode \
             being memory-bound, as it is for a large model on a GPU, where a bigger batch \
             reads the weights once for more tokens"
        } else {
            "the measured gain of paging depends on the budget"
        };
        let _ = writeln!(
            md,
            "\nMeasured `paged` throughput is {lo:.2}x–{hi:.2}x `reserve-max`'s at the same \
             budget: {verdict}.\n"
        );
    }
    md
}

/// What kvlab's numbers say beside the vLLM paper's (Kwon et al., SOSP 2023, Figure 2 and §6).
fn paper_comparison(t: &Table) -> String {
    let mut md = String::from("## Comparison with the vLLM paper\n\n");
    md += "The vLLM paper (Kwon et al., SOSP 2023, Figure 2) measured that only 20.4–38.2% of \
           the KV-cache memory held token states in the systems it compared (Orca-like \
           contiguous reservation), and that PagedAttention wastes under 4% (internal \
           fragmentation in the last block only).\n\n";
    let range = |pred: &dyn Fn(&[String]) -> bool, f: &dyn Fn(&[String]) -> Option<f64>| {
        let v: Vec<f64> = t.rows.iter().filter(|r| pred(r)).filter_map(|r| f(r)).collect();
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then_some((lo, hi))
    };
    let reserve = |r: &[String]| t.get(r, "policy").starts_with("reserve-");
    let paged = |r: &[String]| t.get(r, "policy") == "paged";
    let token = |r: &[String]| t.num(r, "token_state_pct");
    let waste = |r: &[String]| Some(t.num(r, "internal_pct")? + t.num(r, "external_pct")?);
    if let Some((lo, hi)) = range(&reserve, &token) {
        let _ = writeln!(
            md,
            "- kvlab, reserved contiguous (`reserve-max`, `reserve-pow2`, `reserve-exact`): \
             {lo:.1}–{hi:.1}% of the budget holds token states (mean over busy iterations)."
        );
    }
    if let Some((lo, hi)) = range(&paged, &token) {
        let (wlo, whi) = range(&paged, &waste).unwrap_or((0.0, 0.0));
        let _ = writeln!(
            md,
            "- kvlab, paged (every block size swept): {lo:.1}–{hi:.1}% holds token states; \
             internal + external fragmentation {wlo:.2}–{whi:.2}% of the budget."
        );
    }
    for name in ["reserve-max", "reserve-pow2", "reserve-exact"] {
        if let Some((lo, hi)) = range(&|r: &[String]| t.get(r, "policy") == name, &token) {
            let _ = writeln!(md, "  - `{name}`: {lo:.1}–{hi:.1}% token states");
        }
    }
    md += "\nWhere kvlab's numbers differ, the reasons are known and deliberate:\n\n\
           - **Synthetic trace.** The `chat` trace is log-normal, loosely shaped after ShareGPT \
           (median 96 prompt / 160 output tokens), not the paper's ShareGPT/Alpaca samples; \
           `long-output` is uniform 512–1536 output tokens. The reservation waste of \
           `reserve-max` scales with `max_seq_len / (prompt + output)`, so it depends directly \
           on the length distribution and on `max_seq_len`.\n\
           - **Budget size.** Budgets here are small (a few thousand tokens, so the run takes \
           seconds); with only a handful of requests in flight, one request's reservation or a \
           single unusable hole is a large share of the budget, and the ramp-up and drain \
           (included in the means) weigh more than on a large GPU.\n\
           - **Accounting.** Percentages are means over busy iterations of \
           `part / budget`, including *free* memory (queue empty or head request larger than \
           all free memory); the paper's Figure 2 reports a snapshot of the used memory. \
           `reserved` uses the true output length, which a real server does not know.\n\
           - **Preemption policy.** Paged memory preempts the latest-admitted request when the \
           pool runs dry and recomputes it later (vLLM's recompute policy; `preemptions` and \
           `recomputed_tokens` count it); contiguous policies never preempt: they admit only \
           what their reservation covers.\n\
           - **Throughput** is `tokens_per_iteration` (tokens produced per batch step = mean \
           running requests): the paper's 2–4× throughput gains come from larger batches, \
           which this column shows directly. Where the experiment sets `execute = true`, \
           `model_tok_per_s` is the same schedule run through the model on this machine \
           (wall clock, one ragged decode batch per iteration plus each admission's \
           prefill): a CPU gains less from batching than a GPU, whose decode is far more \
           memory-bound.\n";
    md
}

/// Stacked bars (one per policy) of the five budget parts, in percent.
fn draw_stacked(
    dir: &Path,
    stem: &str,
    title: &str,
    bars: &[(String, [f64; 5])],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = BitMapBackend::new(&png, (960, 600)).into_drawing_area();
        render_stacked(&root, title, bars)
            .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
        root.present().map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, (960, 600)).into_drawing_area();
        render_stacked(&root, title, bars)
            .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
        root.present().map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
    }
    Ok(vec![png, svg])
}

fn render_stacked<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[(String, [f64; 5])],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    const COLORS: [RGBColor; 5] = [
        RGBColor(44, 160, 44),   // token states
        RGBColor(255, 187, 120), // reserved
        RGBColor(214, 39, 40),   // internal
        RGBColor(148, 103, 189), // external
        RGBColor(200, 200, 200), // free
    ];
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(720);
    let n = bars.len().max(1);
    let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("% of the KV budget (mean over busy iterations)")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for (i, (_, parts)) in bars.iter().enumerate() {
        let mut y0 = 0.0;
        for (k, part) in parts.iter().enumerate() {
            let y1 = (y0 + part).min(100.0);
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), y0), (SegmentValue::Exact(i + 1), y1)],
                COLORS[k].filled(),
            );
            bar.set_margin(0, 0, 10, 10);
            chart.draw_series(std::iter::once(bar))?;
            y0 = y1;
        }
    }
    for (k, (_, name)) in SPLIT.iter().enumerate() {
        let y = 40 + 22 * k as i32;
        legend.draw(&Rectangle::new([(4, y - 7), (22, y + 7)], COLORS[k].filled()))?;
        legend.draw(&Text::new(name.to_string(), (28, y - 7), ("sans-serif", 13)))?;
    }
    Ok(())
}

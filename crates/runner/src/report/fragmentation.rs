//! The fragmentation workload's own sections: the memory split of the KV budget per policy,
//! requests running over time (from the side CSV), the measured throughput when the schedule
//! ran through the model, then prefix sharing ([`super::sharing`]) and preemption by swap or
//! recompute ([`super::preemption`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::style::RGBColor;

use super::figure::stacked::StackedBars;
use super::figure::{self, Chart, Point, Series, XAxis};
use super::slug;
use super::table::Table;
use crate::csv_sink;
use crate::workloads;

/// The parts of the budget, in the vLLM paper's Figure 2 order (shared token states after
/// the others'): column, name, colour.
const SPLIT: [(&str, &str, RGBColor); 7] = [
    ("token_state_pct", "token states", RGBColor(44, 160, 44)),
    ("shared_pct", "shared token states (once)", RGBColor(31, 119, 180)),
    ("reserved_pct", "reserved (future tokens)", RGBColor(255, 187, 120)),
    ("internal_pct", "internal fragmentation", RGBColor(214, 39, 40)),
    ("stranded_pct", "stranded (evicted slots in held blocks)", RGBColor(140, 86, 75)),
    ("external_pct", "external fragmentation", RGBColor(148, 103, 189)),
    ("free_pct", "free", RGBColor(200, 200, 200)),
];

/// The serving axes a legend names, after the policy: column, and how its value reads
/// (`None`: the default, left out).
type Reading = fn(&str) -> Option<String>;
const LABELLED: [(&str, Reading); 9] = [
    ("trace_kind", |v| Some(v.to_string())),
    ("sharing", |v| (v == "on").then(|| "shared".into())),
    ("preemption", |v| (v == "swap").then(|| "swap".into())),
    ("prompt_tokens", |v| Some(format!("prompt {v}"))),
    ("evict", |v| (v != "off").then(|| v.to_string())),
    ("keep_tokens", |v| Some(format!("keep {v}"))),
    ("compaction", |v| (v == "on").then(|| "compacted".into())),
    ("cost", |v| Some(format!("({v})"))),
    ("attention", |v| (v == "fused").then(|| "fused".into())),
];

/// A run's legend name: `paged-16`, `reserve-max`, `paged-16 samples shared`,
/// `paged-16 sink keep 256 compacted`, `paged-16 swap prompt 1024 (gpu)`.
pub fn policy_label(t: &Table, r: &[String]) -> String {
    let col = |c: &str| if t.header.iter().any(|h| h == c) { t.get(r, c) } else { "" };
    named_policy(t.get(r, "policy"), t.get(r, "block_size"), LABELLED.map(|(c, _)| col(c)))
}

/// A serving table row's first cells: `| model | trace | budget_tokens | run label |`.
pub fn lead_cells(t: &Table, r: &[String]) -> String {
    format!(
        "| {} | {} | {} | {} |",
        t.get(r, "model"),
        t.get(r, "trace"),
        t.get(r, "kv_budget_tokens"),
        policy_label(t, r)
    )
}

/// `paged-16` (or `reserve-max`), then each non-default value of [`LABELLED`], in its order.
fn named_policy(policy: &str, block_size: &str, values: [&str; LABELLED.len()]) -> String {
    let mut name = match block_size {
        "" => policy.to_string(),
        b => format!("{policy}-{b}"),
    };
    for ((_, read), value) in LABELLED.iter().zip(values) {
        if let Some(piece) = (!value.is_empty()).then(|| read(value)).flatten() {
            name += " ";
            name += &piece;
        }
    }
    name
}

/// The memory split as stacked bars per policy (one chart per model and budget), concurrency
/// over time from `fragmentation_series.csv`, the measured throughput and the comparison with
/// the vLLM paper's figures.
pub fn section(dir: &Path, t: &Table, charts: &Path, written: &mut Vec<PathBuf>) -> Result<String> {
    let mut md = String::from("## Memory split and concurrency (serving simulation)\n\n");
    let series_path = dir.join(workloads::fragmentation::SERIES_FILE);
    let series_csv = if series_path.is_file() { Some(csv_sink::read(&series_path)?) } else { None };
    let mut groups: Vec<(&str, &str)> = vec![];
    for r in &t.rows {
        let g = (t.get(r, "model"), t.get(r, "kv_budget_bytes"));
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let many_models = groups.iter().map(|g| g.0).collect::<BTreeSet<_>>().len() > 1;
    for &(model, budget) in &groups {
        let rows: Vec<&Vec<String>> = t
            .rows
            .iter()
            .filter(|r| t.get(r, "model") == model && t.get(r, "kv_budget_bytes") == budget)
            .collect();
        let tokens = rows.first().map_or("", |r| t.get(r, "kv_budget_tokens"));
        let suffix =
            if many_models { format!("{}_{tokens}", slug(model)) } else { tokens.to_string() };
        let split = StackedBars {
            title: format!("KV budget split, {tokens} tokens ({model})"),
            y: "% of the KV budget (mean over busy iterations)".into(),
            parts: SPLIT.iter().map(|(_, name, color)| (name.to_string(), *color)).collect(),
            bars: rows
                .iter()
                .map(|r| {
                    let parts = SPLIT.iter().map(|(c, _, _)| t.num(r, c).unwrap_or(0.0)).collect();
                    (policy_label(t, r), parts)
                })
                .collect(),
        };
        let stem = format!("memory_split_{suffix}");
        written.extend(figure::save(&split, charts, &stem)?);
        let _ = writeln!(md, "![{}](charts/{stem}.svg)\n", split.title);
        if let Some((header, series_rows)) = &series_csv {
            let Some(chart) = concurrency(header, series_rows, model, budget, tokens, &suffix)
            else {
                continue;
            };
            written.extend(chart.save(charts)?);
            let _ = writeln!(md, "![{} ({model})](charts/{}.svg)\n", chart.title(), chart.stem);
        }
    }
    md += &measured_throughput(t);
    md += &super::sharing::section(t);
    md += &super::preemption::section(t, charts, written)?;
    if let Some((header, series_rows)) = &series_csv {
        md += &super::stranding::section(t, header, series_rows, charts, written)?;
    }
    md += &super::papers::vllm_comparison(t);
    Ok(md)
}

/// Requests running per iteration, a trace per policy, from the side CSV's rows of one model
/// and budget. `None` when the CSV lacks a column or has no such rows.
fn concurrency(
    header: &[String],
    rows: &[Vec<String>],
    model: &str,
    budget: &str,
    tokens: &str,
    suffix: &str,
) -> Option<Chart> {
    let series = traces(header, rows, model, budget, "running", 1.0, &|_| true)?;
    Some(Chart {
        stem: format!("concurrency_{suffix}"),
        subject: format!("Requests running per iteration, {tokens}-token budget"),
        x: XAxis::measured("iteration", ""),
        y: "running requests".into(),
        series,
        levels: vec![],
        expected: None,
    })
}

/// Whether a series row is wanted, given a reader of its cells by column name.
pub type RowFilter = dyn Fn(&dyn Fn(&str) -> String) -> bool;

/// `column` × `scale` per iteration, a series per run label, from the side CSV's rows of one
/// model and budget that `keep` accepts (given a cell reader). `None` when the CSV lacks a
/// column or no row is left.
pub fn traces(
    header: &[String],
    rows: &[Vec<String>],
    model: &str,
    budget: &str,
    column: &str,
    scale: f64,
    keep: &RowFilter,
) -> Option<Vec<Series>> {
    let col = |n: &str| header.iter().position(|c| c == n);
    let (m, b, it, y_col, p, bs) = (
        col("model")?,
        col("kv_budget_bytes")?,
        col("iteration")?,
        col(column)?,
        col("policy")?,
        col("block_size")?,
    );
    // A series CSV written before an axis existed lacks its column: read as empty.
    let extra = LABELLED.map(|(c, _)| col(c));
    let mut series: Vec<Series> = vec![];
    for r in rows.iter().filter(|r| r[m] == model && r[b] == budget) {
        let cell = |name: &str| col(name).map_or(String::new(), |c| r[c].clone());
        if !keep(&cell) {
            continue;
        }
        let (Ok(x), Ok(y)) = (r[it].parse::<f64>(), r[y_col].parse::<f64>()) else { continue };
        let value = |c: Option<usize>| c.map_or("", |c| r[c].as_str());
        let label = named_policy(&r[p], &r[bs], extra.map(value));
        let point = Point { x, y: y * scale, expected: None };
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(Series { label, points: vec![point] }),
        }
    }
    (!series.is_empty()).then(|| merge_identical(series))
}

/// Series with the same points drawn once, their labels joined with " = " (runs whose
/// schedules coincide — the two preemption modes of one trace in iterations, a window with
/// and without compaction — would otherwise hide each other and their legend entries).
fn merge_identical(series: Vec<Series>) -> Vec<Series> {
    let mut merged: Vec<Series> = vec![];
    for s in series {
        match merged.iter_mut().find(|m| m.points == s.points) {
            Some(m) => {
                m.label += " = ";
                m.label += &s.label;
            }
            None => merged.push(s),
        }
    }
    merged
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
        // Against reserve-max on the same model, budget and attention kernel (a ratio across
        // kernels would mix the kernel's speed into paging's).
        let same_budget = |o: &&Vec<String>| {
            ["model", "kv_budget_bytes", "attention"].iter().all(|c| t.get(o, c) == t.get(r, c))
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
             on the CPU, and ragged rows are padded to the longest), so fewer, larger steps \
             gain nothing. The vLLM result relies on decode \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_series_are_drawn_once() {
        let p = |y| Point { x: 1.0, y, expected: None };
        let s = |label: &str, y| Series { label: label.into(), points: vec![p(y)] };
        let merged = merge_identical(vec![s("a", 1.0), s("b", 2.0), s("c", 1.0)]);
        let labels: Vec<&str> = merged.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["a = c", "b"]);
    }

    #[test]
    fn policies_are_named_with_their_block_size() {
        assert_eq!(named_policy("paged", "16", [""; 9]), "paged-16");
        let plain = ["", "off", "recompute", "", "off", "", "off", "", "dense"];
        assert_eq!(named_policy("reserve-max", "", plain), "reserve-max");
        assert_eq!(
            named_policy(
                "paged",
                "16",
                ["samples", "on", "swap", "1024", "", "", "", "gpu", "fused"]
            ),
            "paged-16 samples shared swap prompt 1024 (gpu) fused"
        );
        assert_eq!(
            named_policy("paged", "16", ["", "", "", "", "sink", "256", "on", "", ""]),
            "paged-16 sink keep 256 compacted"
        );
    }

    #[test]
    fn the_trace_of_each_policy_is_its_own_series() {
        let header: Vec<String> =
            ["model", "kv_budget_bytes", "iteration", "running", "policy", "block_size"]
                .map(String::from)
                .to_vec();
        let row = |it: &str, policy: &str, bs: &str| -> Vec<String> {
            ["toy", "1024", it, "3", policy, bs].map(String::from).to_vec()
        };
        let rows = [row("1", "paged", "16"), row("2", "paged", "16"), row("1", "reserve-max", "")];
        let chart = concurrency(&header, &rows, "toy", "1024", "256", "256").unwrap();
        let sizes: Vec<(&str, usize)> =
            chart.series.iter().map(|s| (s.label.as_str(), s.points.len())).collect();
        assert_eq!(sizes, [("paged-16", 2), ("reserve-max", 1)]);
        assert_eq!(chart.title(), "Requests running per iteration, 256-token budget");
        assert!(concurrency(&header[1..], &rows, "toy", "1024", "256", "256").is_none());
    }

    #[test]
    fn measured_throughput_is_compared_within_one_attention_kernel() {
        let header = ["model", "kv_budget_bytes", "kv_budget_tokens", "policy", "block_size"]
            .into_iter()
            .chain(["attention", "tokens_per_iteration", "model_tok_per_s"])
            .map(String::from)
            .collect();
        let row = |policy: &str, bs: &str, attention: &str, tps: &str| -> Vec<String> {
            ["toy", "4096", "1024", policy, bs, attention, "2.0", tps].map(String::from).to_vec()
        };
        let t = Table {
            workload: crate::workload::Workload::Fragmentation,
            header,
            rows: vec![
                row("reserve-max", "", "dense", "100"),
                row("reserve-max", "", "fused", "200"),
                row("paged", "16", "dense", "150"),
                row("paged", "16", "fused", "300"),
            ],
        };
        let md = measured_throughput(&t);
        assert!(md.contains("| toy | 1024 | paged-16 | 2.00 | 150.0 | 1.50x |"), "{md}");
        assert!(md.contains("| toy | 1024 | paged-16 fused | 2.00 | 300.0 | 1.50x |"), "{md}");
        assert!(md.contains("| toy | 1024 | reserve-max fused | 2.00 | 200.0 | 1.00x |"), "{md}");
    }
}

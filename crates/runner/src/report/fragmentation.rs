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
use super::figure::{self, Chart, XAxis};
use super::serving_labels::policy_label;
use super::serving_traces::traces;
use super::slug::slug;
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

//! Preemption in the serving simulation: swapping a preempted request's blocks to host memory
//! against recomputing them, on the same trace and budget, by latency and time to serve.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::figure::{Chart, Point, Series, XAxis};
use super::serving_labels::{lead_cells, policy_label};
use super::table::Table;

/// Below this relative difference, two measured (executed) runs are not told apart.
const MEASURED_NOISE: f64 = 0.05;

/// Columns two runs must share to be the same case under two preemption modes.
const SAME_CASE: [&str; 9] = [
    "model",
    "trace",
    "kv_budget_bytes",
    "policy",
    "block_size",
    "sharing",
    "prompt_tokens",
    "max_seq_len",
    "cost",
];

/// The swap-vs-recompute table, verdicts and charts; empty when no run swaps.
pub fn section(t: &Table, charts: &Path, written: &mut Vec<PathBuf>) -> Result<String> {
    let has = |c: &str| t.header.iter().any(|h| h == c);
    if !has("preemption") || !t.rows.iter().any(|r| t.get(r, "preemption") == "swap") {
        return Ok(String::new());
    }
    let clocked = t.rows.iter().any(|r| t.num(r, "elapsed_s").is_some());
    let (unit, ttft, tpot) =
        if clocked { ("s", "ttft_s", "tpot_s") } else { ("iterations", "ttft_iter", "tpot_iter") };
    let mut md = format!(
        "## Preemption: swap to host memory vs recompute\n\n\
         Latencies in {unit}{}. TTFT: arrival to first token; TPOT: time per output token after \
         the first (a preempted request's stall shows here); percentiles over requests.\n\n\
         | model | trace | budget_tokens | policy | preemptions | recomputed tokens | swapped \
         (MB, both ways) | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 | time to serve (s) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        if clocked { " (cost model or measured, as the experiment says)" } else { "" },
    );
    let cell = |r: &[String], c: &str| match t.num(r, c) {
        Some(v) if clocked && c.contains("_s_") => format!("{:.4}", v),
        Some(v) => format!("{v:.2}"),
        None => String::new(),
    };
    for r in &t.rows {
        let _ = writeln!(
            md,
            "{} {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            lead_cells(t, r),
            t.get(r, "preemptions"),
            t.get(r, "recomputed_tokens"),
            t.num(r, "swap_bytes").unwrap_or(0.0) / 1e6,
            cell(r, &format!("{ttft}_p50")),
            cell(r, &format!("{ttft}_p99")),
            cell(r, &format!("{tpot}_p50")),
            cell(r, &format!("{tpot}_p99")),
            t.num(r, "elapsed_s").map_or(String::new(), |v| format!("{v:.2}")),
        );
    }
    md += "\n";
    md += &verdicts(t, clocked);
    if clocked {
        for (stem, column, what) in [
            ("preemption_time", "elapsed_s", "Swap's time to serve the trace over recompute's"),
            ("preemption_tpot", "tpot_s_p99", "Swap's TPOT p99 over recompute's"),
        ] {
            if let Some(chart) = ratio_by_prompt(t, stem, column, what) {
                written.extend(chart.save(charts)?);
                let _ = writeln!(md, "![{}](charts/{stem}.svg)\n", chart.title());
            }
        }
    }
    Ok(md)
}

/// The recompute run of the same case as `swap`.
fn twin<'t>(t: &'t Table, swap: &[String]) -> Option<&'t Vec<String>> {
    let same = |o: &[String]| {
        SAME_CASE
            .iter()
            .filter(|c| t.header.iter().any(|h| h == *c))
            .all(|c| t.get(swap, c) == t.get(o, c))
    };
    t.rows.iter().find(|o| t.get(o, "preemption") != "swap" && same(o))
}

/// One line per case run both ways: which mode served it sooner, and what each paid.
fn verdicts(t: &Table, clocked: bool) -> String {
    let mut md = String::new();
    for swap in t.rows.iter().filter(|r| t.get(r, "preemption") == "swap") {
        let Some(rec) = twin(t, swap) else { continue };
        let case = policy_label(t, rec);
        let moved = t.num(swap, "swap_bytes").unwrap_or(0.0) / 1e6;
        let recomputed = t.get(rec, "recomputed_tokens");
        let fell_back =
            t.num(swap, "preemptions").unwrap_or(0.0) - t.num(swap, "swap_outs").unwrap_or(0.0);
        let fell_back = if fell_back > 0.0 {
            format!(" ({fell_back} of them recomputed: host pool full)")
        } else {
            String::new()
        };
        let paid = format!(
            "recompute prefilled {recomputed} tokens again after {} preemptions; swap moved \
             {moved:.1} MB after {}{fell_back}",
            t.get(rec, "preemptions"),
            t.get(swap, "preemptions"),
        );
        if t.num(swap, "completed") == Some(0.0) || t.num(rec, "completed") == Some(0.0) {
            let _ = writeln!(md, "- {case}: nothing served (every request rejected).");
            continue;
        }
        if t.num(swap, "preemptions") == Some(0.0) && t.num(rec, "preemptions") == Some(0.0) {
            let _ = writeln!(
                md,
                "- {case}: nothing was preempted, so both ran the same schedule; any difference \
                 in time is the measurement's noise."
            );
            continue;
        }
        match (clocked, t.num(swap, "elapsed_s"), t.num(rec, "elapsed_s")) {
            (true, Some(s), Some(r)) if s > 0.0 && r > 0.0 => {
                let (winner, ratio) = if s <= r { ("swap", r / s) } else { ("recompute", s / r) };
                // One measured run each on a shared machine: a few percent is noise.
                let measured = t.num(swap, "model_wall_s").is_some();
                if measured && ratio < 1.0 + MEASURED_NOISE {
                    let _ = writeln!(
                        md,
                        "- {case}: **neither**: measured, swap and recompute are within {:.0}% \
                         ({s:.2} s swap, {r:.2} s recompute; one run each): {paid}.",
                        MEASURED_NOISE * 100.0
                    );
                    continue;
                }
                let tp = |row: &[String]| t.num(row, "tpot_s_p99").unwrap_or(f64::NAN);
                let _ = writeln!(
                    md,
                    "- {case}: **{winner}** serves the trace {ratio:.2}x sooner ({s:.2} s swap, \
                     {r:.2} s recompute; TPOT p99 {:.4} vs {:.4} s): {paid}.",
                    tp(swap),
                    tp(rec),
                );
            }
            _ => {
                let _ = writeln!(md, "- {case}: {paid}; no clock, so no time to compare.");
            }
        }
    }
    md + "\n"
}

/// Swap's `column` over recompute's in the same case, against the swept prompt length, a
/// series per policy and cost profile (below 1: swap is better); cases with no preemption are
/// left out. `None` unless at least two prompt lengths remain.
fn ratio_by_prompt(t: &Table, stem: &str, column: &str, what: &str) -> Option<Chart> {
    let mut series: Vec<Series> = vec![];
    for swap in t.rows.iter().filter(|r| t.get(r, "preemption") == "swap") {
        let Some(rec) = twin(t, swap) else { continue };
        let (Some(x), Some(s), Some(r)) =
            (t.num(swap, "prompt_tokens"), t.num(swap, column), t.num(rec, column))
        else {
            continue;
        };
        // Without a preemption both ran one schedule: a ratio would only show noise.
        let preempted = |row: &[String]| t.num(row, "preemptions").unwrap_or(0.0) > 0.0;
        if r <= 0.0 || !(preempted(swap) || preempted(rec)) {
            continue;
        }
        let mut label = format!("{}-{}", t.get(swap, "policy"), t.get(swap, "block_size"));
        if t.header.iter().any(|h| h == "cost") && !t.get(swap, "cost").is_empty() {
            label += &format!(" ({})", t.get(swap, "cost"));
        }
        let point = Point { x, y: s / r, expected: None };
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(Series { label, points: vec![point] }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    let lengths = series.iter().flat_map(|s| s.points.iter().map(|p| p.x as i64));
    let distinct: std::collections::BTreeSet<i64> = lengths.collect();
    (distinct.len() >= 2).then(|| Chart {
        stem: stem.into(),
        subject: what.into(),
        x: XAxis::swept("prompt", "tokens"),
        y: "swap / recompute (below 1: swap wins)".into(),
        series,
        levels: vec![],
        expected: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Workload;

    fn table(rows: Vec<Vec<String>>) -> Table {
        let header = [
            "model",
            "trace",
            "kv_budget_tokens",
            "kv_budget_bytes",
            "policy",
            "block_size",
            "preemption",
            "prompt_tokens",
            "preemptions",
            "swap_outs",
            "recomputed_tokens",
            "swap_bytes",
            "elapsed_s",
            "tpot_s_p99",
        ];
        Table { workload: Workload::Fragmentation, header: header.map(String::from).to_vec(), rows }
    }

    fn row(mode: &str, prompt: &str, elapsed: &str, tpot: &str) -> Vec<String> {
        let (pre, outs, rec, bytes) =
            if mode == "swap" { ("4", "3", "0", "2000000") } else { ("4", "0", "900", "0") };
        [
            "toy", "chat", "64", "256", "paged", "16", mode, prompt, pre, outs, rec, bytes,
            elapsed, tpot,
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn each_case_is_judged_by_its_time_to_serve() {
        let t = table(vec![
            row("recompute", "256", "10.0", "0.5"),
            row("swap", "256", "8.0", "0.4"),
            row("recompute", "1024", "20.0", "0.9"),
            row("swap", "1024", "25.0", "1.1"),
        ]);
        let md = verdicts(&t, true);
        assert!(md.contains("prompt 256: **swap** serves the trace 1.25x sooner"), "{md}");
        assert!(md.contains("prompt 1024: **recompute** serves the trace 1.25x sooner"), "{md}");
        assert!(
            md.contains("swap moved 2.0 MB after 4 (1 of them recomputed: host pool full)"),
            "{md}"
        );
        let chart = ratio_by_prompt(&t, "s", "elapsed_s", "time").unwrap();
        let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["paged-16"]);
        let ys: Vec<f64> = chart.series[0].points.iter().map(|p| p.y).collect();
        assert_eq!(ys, [0.8, 1.25]);
        let one_prompt =
            table(vec![row("recompute", "256", "10.0", "0.5"), row("swap", "256", "8.0", "0.4")]);
        assert!(ratio_by_prompt(&one_prompt, "s", "elapsed_s", "t").is_none());
        // A case nothing preempted is the same schedule twice: not drawn.
        let calm = |mode| {
            let mut r = row(mode, "2048", "5.0", "0.1");
            r[8] = "0".into();
            r
        };
        let mut rows = t.rows.clone();
        rows.extend([calm("recompute"), calm("swap")]);
        let chart = ratio_by_prompt(&table(rows), "s", "elapsed_s", "time").unwrap();
        assert_eq!(chart.series[0].points.len(), 2);
    }
}

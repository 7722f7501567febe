//! Keep-policies on the paged pool: evicted tokens free memory a whole block at a time, so
//! evicted slots in blocks that still hold a live token are *stranded*. The table, the
//! stranded share over time, and what compaction buys and costs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::figure::{Chart, XAxis};
use super::serving_labels::policy_label;
use super::serving_traces::traces;
use super::table::Table;

/// Columns two runs must share to be the same case with compaction off and on.
const SAME_CASE: [&str; 6] =
    ["model", "kv_budget_bytes", "policy", "block_size", "evict", "keep_tokens"];

/// The stranding table, compaction verdicts and the stranded-share charts; empty when no run
/// evicts.
pub fn section(
    t: &Table,
    header: &[String],
    series: &[Vec<String>],
    charts: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<String> {
    let evicts = |r: &[String]| {
        t.header.iter().any(|h| h == "evict") && !matches!(t.get(r, "evict"), "" | "off")
    };
    if !t.rows.iter().any(|r| evicts(r)) {
        return Ok(String::new());
    }
    let mut md = String::from(
        "## Keep-policies on the paged pool: stranded blocks\n\n\
         Each request keeps `keep_tokens` live tokens; an evicted token's slot is freed only \
         with its whole block, so until then it is *stranded* (held, holding nothing). \
         Percentages are of the KV budget, means over busy iterations.\n\n\
         | model | budget_tokens | policy | mean running | token states | stranded | evicted \
         tokens | blocks released whole | tokens moved by compaction |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let pct = |r: &[String], c: &str| t.num(r, c).map_or(String::new(), |v| format!("{v:.2}%"));
    for r in t.rows.iter().filter(|r| evicts(r)) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} |",
            t.get(r, "model"),
            t.get(r, "kv_budget_tokens"),
            policy_label(t, r),
            t.num(r, "mean_running").unwrap_or(0.0),
            pct(r, "token_state_pct"),
            pct(r, "stranded_pct"),
            t.get(r, "evicted_tokens"),
            t.get(r, "blocks_reclaimed"),
            t.get(r, "compacted_tokens"),
        );
    }
    md += "\n";
    md += &compaction_verdicts(t);
    let mut groups: Vec<(&str, &str, &str)> = vec![];
    for r in t.rows.iter().filter(|r| evicts(r)) {
        let g = (t.get(r, "model"), t.get(r, "kv_budget_bytes"), t.get(r, "kv_budget_tokens"));
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    for (model, budget, tokens) in groups {
        let evicting =
            |cell: &dyn Fn(&str) -> String| !matches!(cell("evict").as_str(), "" | "off");
        let Some(series) = traces(header, series, model, budget, "stranded", 100.0, &evicting)
        else {
            continue;
        };
        let chart = Chart {
            stem: format!("stranded_{tokens}"),
            subject: format!("Stranded KV per iteration, {tokens}-token budget ({model})"),
            x: XAxis::measured("iteration", ""),
            y: "stranded (% of the KV budget)".into(),
            series,
            levels: vec![],
            expected: None,
        };
        written.extend(chart.save(charts)?);
        let _ = writeln!(md, "![{}](charts/{}.svg)\n", chart.title(), chart.stem);
    }
    Ok(md)
}

/// One line per case run with compaction off and on: the stranded share it removed, the
/// tokens it moved for that, and what it did to concurrency.
fn compaction_verdicts(t: &Table) -> String {
    let mut md = String::new();
    let same = |a: &[String], b: &[String]| {
        SAME_CASE
            .iter()
            .filter(|c| t.header.iter().any(|h| h == *c))
            .all(|c| t.get(a, c) == t.get(b, c))
    };
    for on in t.rows.iter().filter(|r| t.get(r, "compaction") == "on") {
        let Some(off) = t.rows.iter().find(|o| t.get(o, "compaction") != "on" && same(on, o))
        else {
            continue;
        };
        let num = |r: &[String], c: &str| t.num(r, c).unwrap_or(0.0);
        let moved = num(on, "compacted_tokens");
        if moved == 0.0 {
            let _ = writeln!(
                md,
                "- {}: compaction never ran: no request stranded a whole block's worth of slots \
                 (a window empties its oldest block front to back).",
                policy_label(t, off)
            );
            continue;
        }
        let mb = moved * num(on, "bytes_per_token") / 1e6;
        let _ = writeln!(
            md,
            "- {}: compaction takes the stranded share from {:.2}% to {:.2}% of the budget by \
             moving {moved:.0} tokens ({mb:.1} MB of K/V copied); requests running at once \
             {:.2} → {:.2}.",
            policy_label(t, off),
            num(off, "stranded_pct"),
            num(on, "stranded_pct"),
            num(off, "mean_running"),
            num(on, "mean_running"),
        );
    }
    md + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Workload;

    #[test]
    fn compaction_is_judged_against_the_same_case_without_it() {
        let header = [
            "model",
            "kv_budget_tokens",
            "kv_budget_bytes",
            "policy",
            "block_size",
            "evict",
            "keep_tokens",
            "compaction",
            "mean_running",
            "token_state_pct",
            "stranded_pct",
            "evicted_tokens",
            "blocks_reclaimed",
            "compacted_tokens",
            "bytes_per_token",
        ];
        let row = |compaction: &str, stranded: &str, moved: &str, running: &str| -> Vec<String> {
            [
                "toy", "64", "256", "paged", "16", "sink", "32", compaction, running, "80",
                stranded, "100", "5", moved, "1000",
            ]
            .map(String::from)
            .to_vec()
        };
        let t = Table {
            workload: Workload::Fragmentation,
            header: header.map(String::from).to_vec(),
            rows: vec![row("off", "9.5", "0", "4"), row("on", "0.5", "2000", "5")],
        };
        let md = compaction_verdicts(&t);
        assert!(
            md.contains("paged-16 sink keep 32: compaction takes the stranded share from 9.50% to 0.50% of the budget by moving 2000 tokens (2.0 MB of K/V copied); requests running at once 4.00 → 5.00."),
            "{md}"
        );
    }
}

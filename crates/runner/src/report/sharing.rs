//! Prefix sharing in the serving simulation: KV bytes per running request with and without
//! sharing, beside the vLLM paper's memory savings.

use std::fmt::Write as _;

use super::serving_labels::lead_cells;
use super::table::Table;

/// The vLLM paper's sharing figures (Kwon et al., SOSP 2023, §6.3 and Figure 15), as we read
/// them: memory saved = blocks saved by sharing / blocks without sharing.
const VLLM: &str = "The vLLM paper (Kwon et al., SOSP 2023, §6.3, Figure 15) counts memory \
    saved as *blocks saved by sharing over blocks without sharing*: 6.1–9.8% for parallel \
    sampling and 37.6–55.2% for beam search on Alpaca, 16.2–30.5% and 44.3–66.3% on ShareGPT \
    (its blog's \"up to 55%\" is the beam-search figure); for a shared prefix (§6.4, few-shot \
    translation prompts) it reports throughput, 1.67x (1-shot) and 3.58x (5-shot) Orca \
    (Oracle)'s, not bytes. kvlab's `sharing_saved_pct` is the same ratio, over every busy \
    iteration of the run, and `kv_bytes_per_request` the held bytes per running request \
    (each physical block once) beside the same requests' blocks counted in full.";

/// The sharing table and comparison; empty when no run shares.
pub fn section(t: &Table) -> String {
    let has = |c: &str| t.header.iter().any(|h| h == c);
    if !has("sharing") || !t.rows.iter().any(|r| t.get(r, "sharing") == "on") {
        return String::new();
    }
    let mut md = String::from(
        "## Shared prefixes (copy-on-write blocks)\n\n\
         | model | trace | budget_tokens | policy | mean running | KV / request (KiB) | \
         without sharing (KiB) | saved | prompt tokens not recomputed | tokens copied on write |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let kib =
        |r: &[String], c: &str| t.num(r, c).map_or(String::new(), |b| format!("{:.0}", b / 1024.0));
    for r in &t.rows {
        let _ = writeln!(
            md,
            "{} {} | {} | {} | {:.1}% | {} | {} |",
            lead_cells(t, r),
            t.num(r, "mean_running").map_or(String::new(), |v| format!("{v:.2}")),
            kib(r, "kv_bytes_per_request"),
            kib(r, "kv_bytes_per_request_unshared"),
            t.num(r, "sharing_saved_pct").unwrap_or(0.0),
            t.get(r, "prefix_hit_tokens"),
            t.get(r, "cow_tokens"),
        );
    }
    md += "\n";
    md += VLLM;
    md += "\n\n";
    // Each trace's saving, and what it did to concurrency against the same run unshared.
    let mut traces: Vec<&str> = vec![];
    for r in &t.rows {
        if !traces.contains(&t.get(r, "trace")) {
            traces.push(t.get(r, "trace"));
        }
    }
    for trace in traces {
        let on: Vec<&Vec<String>> = t
            .rows
            .iter()
            .filter(|r| t.get(r, "trace") == trace && t.get(r, "sharing") == "on")
            .collect();
        let saved: Vec<f64> = on.iter().filter_map(|r| t.num(r, "sharing_saved_pct")).collect();
        let (Some(lo), Some(hi)) =
            (saved.iter().copied().reduce(f64::min), saved.iter().copied().reduce(f64::max))
        else {
            continue;
        };
        let gains: Vec<f64> = on
            .iter()
            .filter_map(|r| {
                let twin = t.rows.iter().find(|o| {
                    t.get(o, "sharing") != "on"
                        && [
                            "model",
                            "trace",
                            "kv_budget_bytes",
                            "policy",
                            "block_size",
                            "preemption",
                        ]
                        .iter()
                        .all(|c| t.get(o, c) == t.get(r, c))
                })?;
                Some(t.num(r, "mean_running")? / t.num(twin, "mean_running")?)
            })
            .collect();
        let _ = write!(md, "- `{trace}`: sharing saved {lo:.1}–{hi:.1}% of the blocks");
        if let (Some(glo), Some(ghi)) =
            (gains.iter().copied().reduce(f64::min), gains.iter().copied().reduce(f64::max))
        {
            let _ = write!(
                md,
                "; the same budget ran {glo:.2}x–{ghi:.2}x as many requests at once as without \
                 sharing"
            );
        }
        md += ".\n";
    }
    md + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Workload;

    #[test]
    fn sharing_rows_are_tabled_and_compared_with_their_unshared_twin() {
        let header = [
            "model",
            "trace",
            "kv_budget_tokens",
            "kv_budget_bytes",
            "policy",
            "block_size",
            "sharing",
            "preemption",
            "mean_running",
            "kv_bytes_per_request",
            "kv_bytes_per_request_unshared",
            "sharing_saved_pct",
            "prefix_hit_tokens",
            "cow_tokens",
        ];
        let row = |sharing: &str, running: &str, saved: &str| -> Vec<String> {
            [
                "toy", "samples", "64", "256", "paged", "16", sharing, "", running, "2048", "4096",
                saved, "10", "3",
            ]
            .map(String::from)
            .to_vec()
        };
        let t = Table {
            workload: Workload::Fragmentation,
            header: header.map(String::from).to_vec(),
            rows: vec![row("off", "2", "0"), row("on", "3", "50")],
        };
        let md = section(&t);
        assert!(
            md.contains("| toy | samples | 64 | paged-16 shared | 3.00 | 2 | 4 | 50.0% | 10 | 3 |"),
            "{md}"
        );
        assert!(md.contains("`samples`: sharing saved 50.0–50.0%"), "{md}");
        assert!(md.contains("1.50x–1.50x as many requests"), "{md}");
        let none = Table { rows: vec![row("off", "2", "0")], ..t };
        assert_eq!(section(&none), "");
    }
}

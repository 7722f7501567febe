//! The text of `report.md`: the heading with the experiment's question, each workload's table
//! of headline metrics, and the device-memory comparison.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::table::{MIB, Table};
use crate::sweep::Workload;

/// The heading: the experiment's name and question (from `experiment.toml` beside the CSVs)
/// and what the rows ran on.
pub(crate) fn heading(dir: &Path, tables: &[Table]) -> String {
    let (name, question) = question(dir);
    let unique = |col: &str| -> String {
        let set: BTreeSet<&str> = tables
            .iter()
            .flat_map(|t| t.rows.iter().map(move |r| t.get(r, col)))
            .filter(|v| !v.is_empty())
            .collect();
        set.into_iter().collect::<Vec<_>>().join(", ")
    };
    format!(
        "# {name}\n\n**Question.** {}\n\nModels: {} · backends: {} · devices: {} · kvlab \
         commits: {}\n\n",
        question.trim(),
        unique("model"),
        unique("backend"),
        unique("device"),
        unique("git_commit")
    )
}

/// The experiment's name (the directory's where the file lacks one) and question.
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

/// A workload's section heading.
pub fn title(w: Workload) -> &'static str {
    match w {
        Workload::Walkthrough => "Walkthrough (the article's generate loop)",
        Workload::Memory => "Memory",
        Workload::Throughput => "Throughput",
        Workload::Perplexity => "Perplexity",
        Workload::Fragmentation => {
            "Fragmentation (serving simulation: paged vs reserved KV memory)"
        }
        Workload::Retrieval => "Passkey retrieval",
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
            "plan_formula_bytes",
            "bytes_per_token",
            "process_peak_bytes",
        ],
        Workload::Throughput => {
            &["prefill_tok_per_s", "decode_tok_per_s", "ms_per_token_p50", "ms_per_token_p90"]
        }
        Workload::Perplexity => &[
            "tokens",
            "ppl",
            "ppl_delta_pct",
            "kl_mean",
            "kl_p99",
            "top1_agree_pct",
            "kv_allocated_bytes",
        ],
        Workload::Retrieval => {
            &["cases", "accuracy_pct", "needle_kept_pct", "prefill_tok_per_s", "kv_allocated_bytes"]
        }
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

/// The header row and its separator.
fn table_head(columns: &[String]) -> String {
    format!("| {} |\n|{}|\n", columns.join(" | "), vec!["---"; columns.len()].join("|"))
}

/// A row per run: the parameters that vary, then the workload's headline metrics (bytes in
/// MiB).
pub(crate) fn metrics_table(t: &Table) -> String {
    let varying = t.varying();
    let metrics: Vec<&str> =
        headline(t.workload).iter().copied().filter(|m| t.col(m).is_some()).collect();
    let head: Vec<String> = varying
        .iter()
        .cloned()
        .chain(metrics.iter().map(|m| match m.strip_suffix("_bytes") {
            Some(base) => format!("{base} (MiB)"),
            None => m.to_string(),
        }))
        .collect();
    let mut md = table_head(&head);
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

/// On backends with a device allocator (cuda, wgpu): what the allocator holds for each cache
/// beside the bytes the strategy accounts for, and the gap. Empty on CPU backends.
pub(crate) fn device_memory_section(t: &Table) -> String {
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
    md += &table_head(&head);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_mib_and_constant_parameters_left_out() {
        let t = Table {
            workload: Workload::Memory,
            header: ["strategy", "batch", "context", "kv_allocated_bytes", "bytes_per_token"]
                .map(String::from)
                .to_vec(),
            rows: vec![
                ["static", "1", "256", "3932160", "15360.0"].map(String::from).to_vec(),
                ["static", "4", "256", "15728640", "15360.0"].map(String::from).to_vec(),
            ],
        };
        assert_eq!(
            metrics_table(&t),
            "| strategy | batch | kv_allocated (MiB) | bytes_per_token |\n\
             |---|---|---|---|\n\
             | static | 1 | 3.750 | 15360.0 |\n\
             | static | 4 | 15.000 | 15360.0 |\n"
        );
    }

    #[test]
    fn cpu_rows_have_no_device_memory_section() {
        let t = Table {
            workload: Workload::Memory,
            header: vec!["strategy".into(), "device_bytes_in_use".into()],
            rows: vec![vec!["static".into(), String::new()]],
        };
        assert_eq!(device_memory_section(&t), "");
    }
}

//! The passkey retrieval section: the model's own ceiling per length (the full cache), a
//! needle-in-a-haystack heatmap per configuration, accuracy against the cache budget and
//! against KV bytes, and which cells a bounded cache fails and why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::charts::{self, ACCURACY};
use super::figure::heatmap::Heatmap;
use super::figure::{self, Chart, Level, Point, Series, XAxis};
use super::table::Table;
use crate::workloads::retrieval::{CASES_FILE, CaseRow};

/// A configuration: a run id without its haystack length.
fn config_of(run_id: &str) -> String {
    run_id
        .split(';')
        .filter(|p| !p.starts_with("context=") && !p.starts_with("backend="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a configuration keeps every token (its accuracy is the model's own ceiling).
fn is_full_cache(config: &str) -> bool {
    config.split(' ').any(|p| p == "strategy=concat") && !config.contains("kv_heads=")
}

fn read_cases(dir: &Path) -> Result<Vec<CaseRow>> {
    let path = dir.join(CASES_FILE);
    if !path.is_file() {
        return Ok(vec![]);
    }
    let (header, rows) = crate::csv_sink::read(&path)?;
    rows.iter().map(|r| crate::rows::read::<CaseRow>(&header, r)).collect()
}

/// `(length, depth) -> (correct, cases)` of one configuration.
type Cells = BTreeMap<(usize, u32), (usize, usize)>;

fn pct(correct: usize, n: usize) -> f64 {
    100.0 * correct as f64 / n.max(1) as f64
}

pub fn section(dir: &Path, t: &Table, out: &Path, written: &mut Vec<PathBuf>) -> Result<String> {
    let cases = read_cases(dir)?;
    let mut md = String::new();
    if cases.is_empty() {
        return Ok(md);
    }
    let mut grid: BTreeMap<String, Cells> = BTreeMap::new();
    for c in &cases {
        let cell = grid.entry(config_of(&c.run_id)).or_default().entry((c.context, c.depth_pct));
        let (ok, n) = cell.or_default();
        *ok += usize::from(c.correct);
        *n += 1;
    }
    let lengths: BTreeSet<usize> = cases.iter().map(|c| c.context).collect();
    let depths: BTreeSet<u32> = cases.iter().map(|c| c.depth_pct).collect();

    let _ = writeln!(md, "### The model's own ceiling (full cache)\n");
    let haystacks: BTreeSet<String> = t
        .rows
        .iter()
        .map(|r| match t.get(r, "corpus") {
            "" => format!("the {} haystack", t.get(r, "haystack")),
            corpus => format!("the {} haystack ({corpus})", t.get(r, "haystack")),
        })
        .collect();
    let haystacks: Vec<String> = haystacks.into_iter().collect();
    let _ = writeln!(md, "Haystacks: {}.\n", haystacks.join(", "));
    let full: Vec<&String> = grid.keys().filter(|k| is_full_cache(k)).collect();
    if full.is_empty() {
        let _ = writeln!(md, "No full-cache (`concat`) run: the ceiling is not measured.\n");
    }
    for config in full {
        let _ = writeln!(md, "| length (tokens) | accuracy | cases |\n|---:|---:|---:|");
        let mut weak = vec![];
        for len in &lengths {
            let (ok, n) = grid[config]
                .iter()
                .filter(|((l, _), _)| l == len)
                .fold((0, 0), |(a, b), (_, (ok, n))| (a + ok, b + n));
            let _ = writeln!(md, "| {len} | {:.1}% | {n} |", pct(ok, n));
            if pct(ok, n) < 95.0 && *len <= 2048 {
                weak.push(*len);
            }
        }
        if weak.is_empty() {
            let _ = writeln!(
                md,
                "\nWith every token kept the model retrieves the key in ≥ 95% of the cases at \
                 every length here: what a bounded cache loses below is the cache's.\n"
            );
        } else {
            let _ = writeln!(
                md,
                "\nBelow 95% with every token kept at {weak:?} tokens: the model itself fails \
                 there on this haystack (try `haystack = \"filler\"`, the classic repeated \
                 filler), so those cells do not measure the cache.\n"
            );
        }
    }

    let _ = writeln!(md, "### Needle in a haystack, per configuration\n");
    for (i, (config, cells)) in grid.iter().enumerate() {
        let heat = Heatmap {
            title: format!("Passkey retrieval: {config}"),
            x: "haystack length (tokens)".into(),
            columns: lengths.iter().map(|l| l.to_string()).collect(),
            y: "needle depth".into(),
            rows: depths.iter().map(|d| format!("{d}%")).collect(),
            cells: depths
                .iter()
                .map(|d| {
                    lengths
                        .iter()
                        .map(|l| cells.get(&(*l, *d)).map(|(ok, n)| pct(*ok, *n)))
                        .collect()
                })
                .collect(),
        };
        let stem = format!("retrieval_heatmap_{i}");
        written.extend(figure::save(&heat, out, &stem)?);
        let _ = writeln!(md, "![{}](charts/{stem}.svg)\n", heat.title);
    }
    md += &failures(&cases);

    if let Some(chart) = accuracy_vs_budget(t) {
        written.extend(chart.save(out)?);
        let _ = writeln!(md, "![{}](charts/{}.svg)\n", chart.title(), chart.stem);
    }
    // Bytes differ per length; the longest haystack is where budgets bind.
    if let Some(&longest) = lengths.last() {
        let at_longest = Table {
            workload: t.workload,
            header: t.header.clone(),
            rows: t
                .rows
                .iter()
                .filter(|r| t.num(r, "context") == Some(longest as f64))
                .cloned()
                .collect(),
        };
        if let Some(chart) = charts::tradeoff(&at_longest, "retrieval_tradeoff", &ACCURACY) {
            written.extend(chart.save(out)?);
            let _ = writeln!(
                md,
                "![{}, {longest}-token haystacks](charts/retrieval_tradeoff.svg)\n",
                chart.title()
            );
        }
    }
    Ok(md)
}

/// Which cells each configuration fails, split by whether the needle was still in the cache
/// when the answer was decoded.
fn failures(cases: &[CaseRow]) -> String {
    let mut by_config: BTreeMap<String, Vec<&CaseRow>> = BTreeMap::new();
    for c in cases {
        by_config.entry(config_of(&c.run_id)).or_default().push(c);
    }
    let mut md = String::from("### Where retrieval fails, and why\n\n");
    for (config, rows) in by_config {
        let failed: Vec<&CaseRow> = rows.iter().copied().filter(|c| !c.correct).collect();
        if failed.is_empty() {
            let _ = writeln!(md, "- **{config}**: all {} cases retrieved.", rows.len());
            continue;
        }
        let kept = |c: &CaseRow| c.needle_kept_pct.map(|k| k.0);
        let evicted: Vec<String> = failed
            .iter()
            .filter(|c| kept(c) == Some(0.0))
            .map(|c| format!("{}@{}%", c.context, c.depth_pct))
            .collect();
        let partly =
            failed.iter().filter(|c| kept(c).is_some_and(|k| k > 0.0 && k < 100.0)).count();
        let whole = failed.iter().filter(|c| kept(c) == Some(100.0)).count();
        let unknown = failed.iter().filter(|c| kept(c).is_none()).count();
        let lucky = rows.iter().filter(|c| c.correct && kept(c).is_some_and(|k| k < 100.0)).count();
        let _ = write!(md, "- **{config}**: {} of {} cases fail", failed.len(), rows.len());
        if !evicted.is_empty() {
            let _ = write!(
                md,
                "; {} with the needle wholly outside the kept tokens (length@depth: {})",
                evicted.len(),
                evicted.join(", ")
            );
        }
        if partly > 0 {
            let _ = write!(md, "; {partly} with the needle partly evicted");
        }
        if whole > 0 {
            let _ = write!(
                md,
                "; {whole} with the whole needle still cached (the key was there to read; the model did not)"
            );
        }
        if unknown > 0 {
            let _ = write!(md, "; {unknown} where the kept set is not known from positions");
        }
        if lucky > 0 {
            let _ = write!(md, ". {lucky} retrieved although part of the needle was evicted");
        }
        md += ".\n";
    }
    md.push('\n');
    md
}

/// Mean accuracy over every case of a configuration against its cache budget; caches that keep
/// every token are a level.
fn accuracy_vs_budget(t: &Table) -> Option<Chart> {
    let keys = t.label_keys();
    // label -> budget -> (correct, cases)
    let mut sums: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    let mut full: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in &t.rows {
        let (Some(ok), Some(n)) = (t.num(r, "correct"), t.num(r, "cases")) else { continue };
        let label = t.label(r, &keys, &["cache_tokens", "context"]);
        match t.num(r, "cache_tokens") {
            Some(b) => {
                let e = sums.entry(label).or_default().entry(b as u64).or_default();
                *e = (e.0 + ok, e.1 + n);
            }
            None => {
                let e = full.entry(label).or_default();
                *e = (e.0 + ok, e.1 + n);
            }
        }
    }
    if sums.is_empty() {
        return None;
    }
    let series = sums
        .into_iter()
        .map(|(label, by_budget)| Series {
            label,
            points: by_budget
                .into_iter()
                .map(|(b, (ok, n))| Point { x: b as f64, y: 100.0 * ok / n, expected: None })
                .collect(),
        })
        .collect();
    let levels = full
        .into_iter()
        .map(|(label, (ok, n))| Level { label: format!("{label} (all tokens)"), y: 100.0 * ok / n })
        .collect();
    Some(Chart {
        stem: "retrieval_vs_budget".into(),
        subject: "Passkey retrieval accuracy (all lengths and depths)".into(),
        x: XAxis::swept("cache budget", "tokens"),
        y: "accuracy (%)".into(),
        series,
        levels,
        expected: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_is_its_run_id_without_length_and_backend() {
        let id = "backend=flex;model=m;strategy=window;cache_tokens=256;context=1024";
        assert_eq!(config_of(id), "model=m strategy=window cache_tokens=256");
        assert!(is_full_cache("model=m strategy=concat"));
        assert!(!is_full_cache("model=m strategy=window cache_tokens=256"));
    }
}

//! `runner compare BASELINE_DIR NEW_DIR`: regression tracking between two results directories.
//!
//! Every `*.csv` in either directory is read (same file names: `memory.csv`,
//! `throughput.csv`, `fragmentation.csv`, `fragmentation_series.csv`, ...). Rows are joined by
//! their run key: `run_id` without its `backend=` part (so a run on another backend or device
//! or at another commit still joins), plus the `iteration` column where a file has one (per
//! iteration series). Each column of a joined pair is then checked according to its
//! [`ColumnClass`], decided in one place, [`classify`]:
//!
//! - **identity** (`experiment`, `run_id`, `git_commit`, `backend`, `device`): not compared;
//! - **timing** (anything measured in time: names ending in `per_s` or containing `per_s_`, ending in `_ms`, `_s` or
//!   `_seconds`, starting with `ms_`, or named `seconds`): reported as a slowdown ratio
//!   (`base/new` for rates, `new/base` for durations; above 1 is slower) and a failure only
//!   beyond `--max-slowdown X`;
//! - **process** (`process_peak_bytes`: the allocator's view of the whole process, which
//!   depends on threads and allocation order; `device_bytes_in_use`, `device_bytes_reserved`:
//!   a device allocator's view, empty on CPU backends and pooled differently by each GPU
//!   runtime): reported, never a failure;
//! - **tolerance** (`mean_nll`, `ppl`, `ppl_delta_pct`, the KL and top-1 agreement columns): equal within a relative tolerance
//!   `--ppl-tol` (default 1e-4) — `|a − b| ≤ tol · max(|a|, |b|)`, with an absolute floor of
//!   `tol` for values near 0 such as `ppl_delta_pct`;
//! - **exact** (everything else: bytes, token counts, parameters, fragmentation accounting,
//!   generated tokens): the text must be identical.
//!
//! A column present on one side only is a failure, unless both headers are versions of the
//! writer's header for that file (`crate::headers::version`: a committed baseline written
//! before the writer added columns): then it is reported and the shared columns compared.
//! A run present on one side only is a failure, listed by file and key; a CSV present on one
//! side only is reported as missing all its runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

pub use self::columns::{ColumnClass, classify};
pub use self::outcome::{Difference, Outcome, Worst};
use crate::csv_sink;

mod columns;
mod outcome;

/// Thresholds.
#[derive(Debug, Clone)]
pub struct Options {
    /// Relative tolerance of the [`ColumnClass::Tolerance`] columns.
    pub ppl_tol: f64,
    /// Fail when a timing column is more than this many times slower (None: never).
    pub max_slowdown: Option<f64>,
    /// `--only key=value` filters: rows of both sides without every pair are left out (to
    /// compare a run made with the same `--only` against a full baseline).
    pub only: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self { ppl_tol: 1e-4, max_slowdown: None, only: vec![] }
    }
}

fn csv_files(dir: &Path) -> Result<BTreeSet<String>> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "csv") {
            out.insert(p.file_name().unwrap_or_default().to_string_lossy().to_string());
        }
    }
    Ok(out)
}

/// The join key of a row: `run_id` minus `backend=`, plus `iteration` where present. Files
/// without a `run_id` join by row number.
fn keys(header: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let col = |n: &str| header.iter().position(|h| h == n);
    let (id, iteration) = (col("run_id"), col("iteration"));
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut key = match id.and_then(|c| r.get(c)) {
                Some(v) => v
                    .split(';')
                    .filter(|p| !p.starts_with("backend="))
                    .collect::<Vec<_>>()
                    .join(";"),
                None => format!("row {}", i + 1),
            };
            if let Some(v) = iteration.and_then(|c| r.get(c)) {
                key += &format!(" @iteration {v}");
            }
            key
        })
        .collect()
}

/// Compares every CSV of `base` with the same file in `new`.
pub fn compare(base: &Path, new: &Path, opts: &Options) -> Result<Outcome> {
    let (bf, nf) = (csv_files(base)?, csv_files(new)?);
    if bf.is_empty() && nf.is_empty() {
        bail!("no CSV files in {} or {}", base.display(), new.display());
    }
    let mut out = Outcome::default();
    for file in bf.union(&nf) {
        let missing = |side: &str| Difference {
            file: file.clone(),
            key: "(every run)".into(),
            column: String::new(),
            base: String::new(),
            new: String::new(),
            what: format!("missing in {side}"),
            regression: true,
        };
        if !nf.contains(file) {
            out.differences.push(missing("new"));
            continue;
        }
        if !bf.contains(file) {
            out.differences.push(missing("baseline"));
            continue;
        }
        out.files.push(file.clone());
        compare_file(file, &base.join(file), &new.join(file), opts, &mut out)?;
    }
    Ok(out)
}

fn compare_file(file: &str, bp: &Path, np: &Path, opts: &Options, out: &mut Outcome) -> Result<()> {
    let (bh, brows) = csv_sink::read(bp)?;
    let (nh, nrows) = csv_sink::read(np)?;
    let index = |h: &[String], rows: &[Vec<String>]| -> BTreeMap<String, Vec<String>> {
        keys(h, rows)
            .into_iter()
            .zip(rows.iter().cloned())
            .filter(|(key, _)| crate::sweep::id_matches(key, &opts.only))
            .collect()
    };
    let (bmap, nmap) = (index(&bh, &brows), index(&nh, &nrows));
    let diff =
        |key: &str, column: &str, b: &str, n: &str, what: String, regression: bool| Difference {
            file: file.to_string(),
            key: key.to_string(),
            column: column.to_string(),
            base: b.to_string(),
            new: n.to_string(),
            what,
            regression,
        };
    // Two versions of the writer's header (a committed baseline on an older one): the columns
    // one has and the other lacks are reported, not failures; the shared ones are compared.
    let versions = crate::headers::version(file, &bh).is_some()
        && crate::headers::version(file, &nh).is_some();
    let (why, regression) = match versions {
        true => (" (another version of the writer's header)", false),
        false => ("", true),
    };
    for col in bh.iter().filter(|c| !nh.contains(c)) {
        let what = format!("column missing in new{why}");
        out.differences.push(diff("(header)", col, col, "", what, regression));
    }
    for col in nh.iter().filter(|c| !bh.contains(c)) {
        let what = format!("column new (not in baseline){why}");
        out.differences.push(diff("(header)", col, "", col, what, regression));
    }
    let timing = out.timing.entry(file.to_string()).or_insert((0, None));
    for (key, brow) in &bmap {
        let Some(nrow) = nmap.get(key) else {
            out.differences.push(diff(key, "", "", "", "missing in new".into(), true));
            continue;
        };
        out.joined += 1;
        for (i, col) in bh.iter().enumerate() {
            let Some(j) = nh.iter().position(|c| c == col) else { continue };
            let (b, n) =
                (brow.get(i).map_or("", String::as_str), nrow.get(j).map_or("", String::as_str));
            if let Some((what, regression)) = compare_cell(key, col, b, n, opts, timing) {
                out.differences.push(diff(key, col, b, n, what, regression));
            }
        }
    }
    for key in nmap.keys().filter(|k| !bmap.contains_key(*k)) {
        out.differences.push(diff(key, "", "", "", "missing in baseline".into(), true));
    }
    Ok(())
}

/// How one cell of a row found on both sides compares, by its column's class: the
/// difference to report, if any (what, and whether it fails the comparison). Timing cells
/// also count into `timing`, which keeps the file's worst slowdown.
fn compare_cell(
    key: &str,
    col: &str,
    b: &str,
    n: &str,
    opts: &Options,
    timing: &mut (usize, Option<Worst>),
) -> Option<(String, bool)> {
    match classify(col) {
        ColumnClass::Identity => None,
        ColumnClass::Exact => (b != n).then(|| ("mismatch".into(), true)),
        ColumnClass::Tolerance => {
            if b == n {
                return None;
            }
            let (Ok(x), Ok(y)) = (b.parse::<f64>(), n.parse::<f64>()) else {
                return Some(("mismatch".into(), true));
            };
            let delta = (x - y).abs();
            let scale = x.abs().max(y.abs());
            let rel = if scale > 0.0 { delta / scale } else { 0.0 };
            let within = delta <= opts.ppl_tol * scale.max(1.0) || x == y;
            let verdict = if within { "within tolerance" } else { "beyond tolerance" };
            Some((format!("{verdict} (rel {rel:.2e}, tol {:.0e})", opts.ppl_tol), !within))
        }
        ColumnClass::Process => {
            (b != n).then(|| ("process measurement (never fails)".into(), false))
        }
        ColumnClass::Timing { higher_is_better } => {
            let (Ok(x), Ok(y)) = (b.parse::<f64>(), n.parse::<f64>()) else {
                let one_sided = b != n && (b.is_empty() || n.is_empty());
                return one_sided.then(|| ("timing present on one side only".into(), true));
            };
            if x <= 0.0 || y <= 0.0 {
                return None;
            }
            let slowdown = if higher_is_better { x / y } else { y / x };
            timing.0 += 1;
            if timing.1.as_ref().is_none_or(|(w, _, _)| slowdown > *w) {
                timing.1 = Some((slowdown, key.to_string(), col.to_string()));
            }
            let max = opts.max_slowdown.filter(|&max| slowdown > max)?;
            Some((format!("slowdown {slowdown:.2}x > --max-slowdown {max}"), true))
        }
    }
}

//! The CSVs an experiment writes and the header the current writer gives each, known without
//! running anything; and the check that a committed results directory still has those headers
//! (`runner headers`, `runner headers --check results`, `tests/results_headers.rs`).
//!
//! A results directory is the runner's where it holds an `experiment.toml` (the runner copies
//! the file it ran next to its CSVs). Its CSVs are checked against what that experiment writes
//! today; any other CSV there (`rounds.csv`, `peer-llama-cpp.csv`: a script's) is not the
//! runner's and is left alone.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::backend::BackendName;
use crate::experiment::{self, Experiment};
use crate::rows::Metrics;
use crate::sweep::Workload;
use crate::workloads::{fragmentation, retrieval};

/// One CSV an experiment writes: its file name in the results directory and its header.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenCsv {
    pub file: String,
    pub header: Vec<String>,
}

/// Every CSV `e` writes, in run order: one per workload, then the workload's side CSV
/// (per-iteration series, per-haystack cases) where it has one.
pub fn written_csvs(e: &Experiment) -> Vec<WrittenCsv> {
    let mut out = vec![];
    for w in e.workloads() {
        out.push(WrittenCsv {
            file: format!("{}.csv", w.name()),
            header: crate::engine::header(w),
        });
        let side = match w {
            Workload::Fragmentation => {
                Some((fragmentation::SERIES_FILE, fragmentation::series_columns()))
            }
            Workload::Retrieval => {
                Some((retrieval::CASES_FILE, retrieval::CaseRow::columns().to_vec()))
            }
            _ => None,
        };
        if let Some((file, columns)) = side {
            let header = columns.iter().map(|c| c.to_string()).collect();
            out.push(WrittenCsv { file: file.to_string(), header });
        }
    }
    out
}

/// How a committed CSV differs from what the writer produces now.
#[derive(Debug, Clone, PartialEq)]
pub enum Lag {
    /// The experiment writes this file; the directory lacks it.
    MissingFile,
    /// Columns the writer adds that the file lacks, columns the file has that the writer no
    /// longer writes, and whether the shared columns are in another order.
    Columns { missing: Vec<String>, extra: Vec<String>, reordered: bool },
    /// The directory's `experiment.toml` no longer loads (the message, one line).
    Unloadable(String),
}

/// A lagging file (or a directory whose experiment no longer loads).
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub path: PathBuf,
    pub lag: Lag,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.lag {
            Lag::MissingFile => write!(f, "{path}: missing (the experiment writes it)"),
            Lag::Unloadable(why) => write!(f, "{path}: no longer loads: {why}"),
            Lag::Columns { missing, extra, reordered } => {
                let mut parts = vec![];
                if !missing.is_empty() {
                    parts.push(format!("lacks {} (the writer adds them)", missing.join(",")));
                }
                if !extra.is_empty() {
                    parts.push(format!(
                        "has {} (the writer no longer writes them)",
                        extra.join(",")
                    ));
                }
                if *reordered {
                    parts.push("columns in another order than the writer's".to_string());
                }
                write!(f, "{path}: {}", parts.join("; "))
            }
        }
    }
}

/// Compares a file's header with the writer's (`None`: equal).
pub fn lag(found: &[String], written: &[String]) -> Option<Lag> {
    if found == written {
        return None;
    }
    let missing: Vec<String> = written.iter().filter(|c| !found.contains(c)).cloned().collect();
    let extra: Vec<String> = found.iter().filter(|c| !written.contains(c)).cloned().collect();
    let shared = |h: &[String], other: &[String]| -> Vec<String> {
        h.iter().filter(|c| other.contains(c)).cloned().collect()
    };
    let reordered = shared(found, written) != shared(written, found);
    Some(Lag::Columns { missing, extra, reordered })
}

/// Checks one results directory (holding `experiment.toml`) against the writer.
pub fn check_dir(dir: &Path) -> Result<Vec<Mismatch>> {
    let toml = dir.join("experiment.toml");
    // The header does not depend on the backend: a file naming one not compiled in (cuda)
    // is read as flex, so its results are checked on any build.
    let e = match experiment::load(&toml, Some(BackendName::Flex)) {
        Ok(e) => e,
        Err(invalid) => {
            let why = invalid.0.join(" / ");
            return Ok(vec![Mismatch { path: toml, lag: Lag::Unloadable(why) }]);
        }
    };
    let mut out = vec![];
    for csv in written_csvs(&e) {
        let path = dir.join(&csv.file);
        if !path.exists() {
            out.push(Mismatch { path, lag: Lag::MissingFile });
            continue;
        }
        let found = read_header(&path)?;
        if let Some(lag) = lag(&found, &csv.header) {
            out.push(Mismatch { path, lag });
        }
    }
    Ok(out)
}

/// Checks every results directory under `root` (itself included), in path order.
pub fn check_tree(root: &Path) -> Result<Vec<Mismatch>> {
    let mut out = vec![];
    for dir in results_dirs(root)? {
        out.extend(check_dir(&dir)?);
    }
    Ok(out)
}

/// The directories under `root` (itself included) that hold an `experiment.toml`.
pub fn results_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if dir.join("experiment.toml").is_file() {
            out.push(dir.clone());
        }
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_header(path: &Path) -> Result<Vec<String>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header =
        reader.headers().with_context(|| format!("{}: unreadable CSV header", path.display()))?;
    Ok(header.iter().map(String::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn lag_names_missing_and_extra_columns_and_a_new_order() {
        assert_eq!(lag(&names("a,b,c"), &names("a,b,c")), None);
        let Some(Lag::Columns { missing, extra, reordered }) =
            lag(&names("a,x,b"), &names("a,b,c,d"))
        else {
            panic!("a lag expected")
        };
        assert_eq!((missing, extra, reordered), (names("c,d"), names("x"), false));
        let swapped = lag(&names("b,a"), &names("a,b"));
        assert_eq!(swapped, Some(Lag::Columns { missing: vec![], extra: vec![], reordered: true }));
    }

    #[test]
    fn a_mismatch_reads_as_one_line_naming_the_file_and_columns() {
        let m = Mismatch {
            path: PathBuf::from("results/gqa/throughput.csv"),
            lag: lag(&names("a,old"), &names("a,new1,new2")).unwrap(),
        };
        assert_eq!(
            m.to_string(),
            "results/gqa/throughput.csv: lacks new1,new2 (the writer adds them); has old (the \
             writer no longer writes them)"
        );
    }
}

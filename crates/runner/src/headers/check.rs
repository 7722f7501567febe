//! The check that committed results never lag the code: every CSV the runner wrote in a
//! results directory carries the header the current writer gives it for that experiment, or
//! an older version the readers still take ([`super::retired`]).
//!
//! A results directory is the runner's where it holds an `experiment.toml` (the runner copies
//! the file it ran next to its CSVs). Its CSVs are checked against what that experiment writes
//! today; any other CSV there (`rounds.csv`, `peer-llama-cpp.csv`: a script's) is not the
//! runner's and is left alone.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Retired, Version, version, written_csvs};
use crate::backend::BackendName;
use crate::experiment;

/// What the check found for one file (or a directory whose experiment no longer loads).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub path: PathBuf,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// An older header version: the columns the writer adds since, and the file's other ones.
    Older { retired: &'static Retired, columns: Columns },
    /// Neither the current header nor a known older one: the file lags.
    Lags(Columns),
    /// The experiment writes this file; the directory lacks it.
    MissingFile,
    /// The directory's `experiment.toml` no longer loads (its error lines, joined).
    Unloadable(String),
}

/// How a file's columns differ from the writer's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    /// Columns the writer adds that the file lacks.
    pub missing: Vec<String>,
    /// Columns the file has that the writer no longer writes.
    pub extra: Vec<String>,
    /// Whether the columns both have are in another order.
    pub reordered: bool,
}

impl Columns {
    pub fn between(found: &[String], written: &[String]) -> Self {
        let missing = written.iter().filter(|c| !found.contains(c)).cloned().collect();
        let extra = found.iter().filter(|c| !written.contains(c)).cloned().collect();
        let shared = |h: &[String], other: &[String]| -> Vec<String> {
            h.iter().filter(|c| other.contains(c)).cloned().collect()
        };
        Self { missing, extra, reordered: shared(found, written) != shared(written, found) }
    }
}

impl fmt::Display for Columns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![];
        if !self.missing.is_empty() {
            parts.push(format!("lacks {} (the writer adds them)", self.missing.join(",")));
        }
        if !self.extra.is_empty() {
            parts.push(format!("has {} (the writer no longer writes them)", self.extra.join(",")));
        }
        if self.reordered {
            parts.push("its columns are in another order than the writer's".to_string());
        }
        f.write_str(&parts.join("; "))
    }
}

impl Finding {
    /// Whether this finding fails the check (an older known version does not).
    pub fn fails(&self) -> bool {
        !matches!(self.what, What::Older { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.what {
            What::Older { retired, columns } => {
                write!(f, "{path}: older header ({}): {columns}", retired.since)
            }
            What::Lags(columns) => write!(f, "{path}: lags the writer: {columns}"),
            What::MissingFile => write!(f, "{path}: missing (the experiment writes it)"),
            What::Unloadable(why) => write!(f, "{path}: no longer loads: {why}"),
        }
    }
}

/// Checks one results directory (holding `experiment.toml`) against the writer.
pub(crate) fn check_dir(dir: &Path) -> Result<Vec<Finding>> {
    let toml = dir.join("experiment.toml");
    // The header does not depend on the backend: a file naming one not compiled in (cuda) is
    // read as flex, so its results are checked on any build.
    let e = match experiment::load(&toml, Some(BackendName::Flex)) {
        Ok(e) => e,
        Err(invalid) => {
            let why = invalid.0.join(" / ");
            return Ok(vec![Finding { path: toml, what: What::Unloadable(why) }]);
        }
    };
    let mut out = vec![];
    for csv in written_csvs(&e) {
        let path = dir.join(&csv.file);
        if !path.exists() {
            out.push(Finding { path, what: What::MissingFile });
            continue;
        }
        let found = read_header(&path)?;
        let columns = Columns::between(super::runner_columns(&found), &csv.header);
        let what = match version(&csv.file, &found) {
            Some(Version::Current) => continue,
            Some(Version::Older(retired)) => What::Older { retired, columns },
            None => What::Lags(columns),
        };
        out.push(Finding { path, what });
    }
    Ok(out)
}

/// Checks every results directory under `root` (itself included), in path order.
pub fn check_tree(root: &Path) -> Result<Vec<Finding>> {
    let mut out = vec![];
    for dir in results_dirs(root)? {
        out.extend(check_dir(&dir)?);
    }
    Ok(out)
}

/// The older headers no finding used: entries that outlived their files.
pub fn unused(findings: &[Finding]) -> Vec<&'static Retired> {
    let used: Vec<&Retired> = findings
        .iter()
        .filter_map(|f| match &f.what {
            What::Older { retired, .. } => Some(*retired),
            _ => None,
        })
        .collect();
    super::retired::RETIRED.iter().filter(|r| !used.contains(r)).collect()
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
    fn columns_name_what_is_missing_extra_and_reordered() {
        let c = Columns::between(&names("a,x,b"), &names("a,b,c,d"));
        assert_eq!(c, Columns { missing: names("c,d"), extra: names("x"), reordered: false });
        assert!(Columns::between(&names("b,a"), &names("a,b")).reordered);
        let finding =
            Finding { path: PathBuf::from("results/gqa/throughput.csv"), what: What::Lags(c) };
        assert!(finding.fails());
        assert_eq!(
            finding.to_string(),
            "results/gqa/throughput.csv: lags the writer: lacks c,d (the writer adds them); has \
             x (the writer no longer writes them)"
        );
    }

    #[test]
    fn a_directory_is_checked_against_its_experiment() {
        let dir = std::env::temp_dir().join(format!("kvlab-headers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("experiment.toml"),
            "[experiment]\nname = \"t\"\nquestion = \"?\"\nmodel = \"seed-toy\"\n[sweep]\n\
             strategy = [\"concat\"]\ncontext = [8]\n[workload.memory]\n\
             [workload.walkthrough]\nprompt_tokens = 4\nsteps = 2\n",
        )
        .unwrap();
        let now = super::super::current("memory.csv").unwrap();
        std::fs::write(dir.join("memory.csv"), now.join(",") + "\n").unwrap();
        assert_eq!(
            check_dir(&dir).unwrap(),
            vec![Finding { path: dir.join("walkthrough.csv"), what: What::MissingFile }]
        );
        std::fs::write(dir.join("walkthrough.csv"), "experiment,run_id,generated\n").unwrap();
        let found = check_dir(&dir).unwrap();
        assert_eq!(found.len(), 1);
        let What::Lags(columns) = &found[0].what else { panic!("{found:?}") };
        assert!(columns.missing.contains(&"steps".to_string()), "{columns:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

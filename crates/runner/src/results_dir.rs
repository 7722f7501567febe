//! How a run replaces an experiment's results: it writes into a staging directory beside them
//! (`<out>/.<name>.partial`) and swaps it in only when every run has finished and the report is
//! drawn. So re-running an experiment replaces its results, as a benchmark tool's user
//! expects; an interrupted run (Ctrl-C, a kill, a crash) leaves the previous results as they
//! were, and its finished rows stay in the staging directory for `--resume`.
//!
//! `--resume` continues the staging directory if there is one, else starts from a copy of the
//! current results (so runs added to the file since are all that run).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An experiment's results directory and the staging directory a run writes into.
#[derive(Debug)]
pub struct Staged {
    pub results: PathBuf,
    pub staging: PathBuf,
}

/// The staging directory of `results` (`<parent>/.<name>.partial`).
pub(crate) fn staging_of(results: &Path) -> PathBuf {
    sibling(results, "partial")
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("results");
    dir.with_file_name(format!(".{name}.{suffix}"))
}

/// The directory `--resume` continues from: the staging directory of an unfinished run, else
/// the results themselves.
pub(crate) fn resumed_from(results: &Path) -> PathBuf {
    let staging = staging_of(results);
    if staging.is_dir() { staging } else { results.to_path_buf() }
}

/// Prepares the staging directory for a run that will replace `results`.
pub fn stage(results: &Path, resume: bool) -> Result<Staged> {
    let staging = staging_of(results);
    let continuing = resume && staging.is_dir();
    if staging.exists() && !continuing {
        eprintln!(
            "note: discarding the unfinished run in {} (pass --resume to finish it instead)",
            staging.display()
        );
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    if resume && !continuing && results.is_dir() {
        copy_files(results, &staging)?;
    }
    Ok(Staged { results: results.to_path_buf(), staging })
}

impl Staged {
    /// Replaces the results with the (complete) staging directory.
    pub fn commit(self) -> Result<()> {
        swap_in(&self.staging, &self.results)
    }
}

/// Replaces `dest` with `complete`: the old directory is moved aside first, so `dest` is at
/// every moment either the old results or the new ones.
pub fn swap_in(complete: &Path, dest: &Path) -> Result<()> {
    let moved = |from: &Path, to: &Path| {
        std::fs::rename(from, to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
    };
    if !dest.exists() {
        return moved(complete, dest);
    }
    let old = sibling(dest, "replaced");
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    moved(dest, &old)?;
    moved(complete, dest)?;
    std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))
}

/// Copies the plain files of `from` (CSVs, experiment.toml, shard.json; not the charts, which
/// the report redraws) into `to`.
fn copy_files(from: &Path, to: &Path) -> Result<()> {
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            let target = to.join(path.file_name().expect("a file has a name"));
            std::fs::copy(&path, &target).with_context(|| {
                format!("cannot copy {} to {}", path.display(), target.display())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("kvlab-results-dir-{tag}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_committed_stage_replaces_the_results_and_an_abandoned_one_leaves_them() {
        let root = scratch("swap");
        let results = root.join("x");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(results.join("memory.csv"), "old\n").unwrap();
        // Abandoned: the results are untouched, the stage stays for --resume.
        let staged = stage(&results, false).unwrap();
        std::fs::write(staged.staging.join("memory.csv"), "half\n").unwrap();
        drop(staged);
        assert_eq!(std::fs::read_to_string(results.join("memory.csv")).unwrap(), "old\n");
        // --resume continues it; commit swaps it in.
        let staged = stage(&results, true).unwrap();
        assert_eq!(std::fs::read_to_string(staged.staging.join("memory.csv")).unwrap(), "half\n");
        std::fs::write(staged.staging.join("memory.csv"), "new\n").unwrap();
        staged.commit().unwrap();
        assert_eq!(std::fs::read_to_string(results.join("memory.csv")).unwrap(), "new\n");
        assert!(!staging_of(&results).exists() && !sibling(&results, "replaced").exists());
        // --resume without a stage starts from the results; a fresh run from nothing.
        let staged = stage(&results, true).unwrap();
        assert!(staged.staging.join("memory.csv").is_file());
        let staged = stage(&results, false).unwrap();
        assert!(!staged.staging.join("memory.csv").exists());
        std::fs::remove_dir_all(&root).ok();
    }
}

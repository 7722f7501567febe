//! `runner headers`: the header of every CSV an experiment writes, without running it; with
//! `--check DIR`, every results directory under DIR checked against the writer.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::check;
use crate::backend::BackendName;
use crate::experiment::{self, Invalid};

/// Prints `# name (path)` and then `file: columns` for each CSV of each experiment.
pub fn print(files: &[PathBuf], backend: Option<BackendName>) -> Result<()> {
    let mut text = String::new();
    let mut errors = vec![];
    for path in files {
        match experiment::load(path, backend) {
            Ok(e) => {
                text += &format!("# {} ({})\n", e.name(), path.display());
                for csv in super::written_csvs(&e) {
                    text += &format!("{}: {}\n", csv.file, csv.header.join(","));
                }
            }
            Err(Invalid(lines)) => errors.extend(lines),
        }
    }
    if !errors.is_empty() {
        bail!(Invalid(errors));
    }
    print!("{text}");
    Ok(())
}

/// Prints one line per CSV under `root` that is not on the writer's current header (older
/// versions included, marked as such), then a summary; fails if any lags.
pub fn check(root: &Path) -> Result<()> {
    let dirs = check::results_dirs(root)?;
    let findings = check::check_tree(root)?;
    for f in &findings {
        println!("{f}");
    }
    let lagging = findings.iter().filter(|f| f.fails()).count();
    let older = findings.len() - lagging;
    println!(
        "{} results director{}: {lagging} CSV(s) lag the writer, {older} on an older header \
         the readers take",
        dirs.len(),
        if dirs.len() == 1 { "y" } else { "ies" }
    );
    if lagging > 0 {
        bail!("{lagging} CSV(s) under {} lag the writer", root.display());
    }
    Ok(())
}

//! Append-only CSV results: one row per finished run, written and flushed as it finishes.
//!
//! The file is never rewritten: the header is written only when the file is created, rows are
//! appended one `write` each, and `--resume` reads the run ids already present to skip them.
//! The one exception is a last line without its newline (a row cut off mid-write by a kill):
//! it is not a finished row, and is cut off before appending. A workload's side CSV (rows a run
//! writes before its own row: per-iteration samples, per-case rows) is also trimmed on
//! `--resume` to the runs that finished ([`retain_runs`]).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug)]
pub struct CsvSink {
    path: PathBuf,
    file: File,
    header: Vec<String>,
    done: HashSet<String>,
    /// Rows found in the file when it was opened.
    pub existing: Vec<Vec<String>>,
}

/// Keeps only the rows of `path` whose run id `finished` accepts (rewriting the file only if
/// some go). A side CSV's rows are written before the run's own row, so a run killed between
/// the two runs again on `--resume`; without this its rows would appear twice.
pub(crate) fn retain_runs(
    path: &Path,
    header: &[String],
    finished: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let sink = CsvSink::open(path, header, true)?;
    let Some(col) = header.iter().position(|h| h == "run_id") else { return Ok(()) };
    let kept: Vec<&Vec<String>> =
        sink.existing.iter().filter(|r| r.get(col).is_some_and(|id| finished(id))).collect();
    if kept.len() == sink.existing.len() {
        return Ok(());
    }
    let mut text = encode(header)?;
    for row in kept {
        text += &encode(row)?;
    }
    let partial = path.with_extension("csv.tmp");
    fs::write(&partial, text).with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, path).with_context(|| format!("cannot replace {}", path.display()))
}

impl CsvSink {
    /// Opens (creating with `header`) `path`. An existing file must have exactly `header`; if it
    /// holds rows, `resume` must be set (else nothing is appended and the file is untouched).
    pub fn open(path: &Path, header: &[String], resume: bool) -> Result<Self> {
        let header: Vec<String> = header.to_vec();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut existing = vec![];
        let exists = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if exists {
            let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let complete = match text.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => 0,
            };
            let mut reader =
                csv::ReaderBuilder::new().has_headers(true).from_reader(&text[..complete]);
            let found: Vec<String> = reader
                .headers()
                .with_context(|| format!("{}: unreadable CSV header", path.display()))?
                .iter()
                .map(String::from)
                .collect();
            if complete > 0 && found != header {
                bail!(
                    "{} has other columns than this experiment writes\n  file:       {}\n  \
                     experiment: {}\nwrite elsewhere with --out DIR, or move the file away",
                    path.display(),
                    found.join(","),
                    header.join(",")
                );
            }
            for (i, record) in reader.records().enumerate() {
                let record = record
                    .with_context(|| format!("{}: unreadable row {}", path.display(), i + 1))?;
                existing.push(record.iter().map(String::from).collect::<Vec<_>>());
            }
            if !existing.is_empty() && !resume {
                bail!(
                    "{} already holds {} finished run(s); pass --resume to skip them and run \
                     the rest, or write elsewhere with --out DIR",
                    path.display(),
                    existing.len()
                );
            }
            if complete < text.len() {
                eprintln!(
                    "warning: {}: dropping an unfinished last line (a run cut off mid-write)",
                    path.display()
                );
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(complete as u64)?;
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if file.metadata()?.len() == 0 {
            file.write_all(encode(&header)?.as_bytes())?;
            file.flush()?;
        }
        let id_col = header.iter().position(|h| h == "run_id");
        let done = match id_col {
            Some(c) => existing.iter().filter_map(|r| r.get(c).cloned()).collect(),
            None => HashSet::new(),
        };
        Ok(Self { path: path.to_path_buf(), file, header, done, existing })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Whether a row with this run id is already in the file.
    pub fn contains(&self, run_id: &str) -> bool {
        self.done.contains(run_id)
    }

    /// Appends one row (as many fields as the header) and flushes it.
    pub fn append(&mut self, row: &[String]) -> Result<()> {
        if row.len() != self.header.len() {
            bail!("internal: row of {} fields for {} columns", row.len(), self.header.len());
        }
        self.file.write_all(encode(row)?.as_bytes())?;
        self.file.flush()?;
        if let Some(c) = self.header.iter().position(|h| h == "run_id") {
            self.done.insert(row[c].clone());
        }
        Ok(())
    }
}

fn encode(fields: &[String]) -> Result<String> {
    let mut w =
        csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(vec![]);
    w.write_record(fields)?;
    Ok(String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?)
}

/// Reads a CSV into its header and rows (for reports).
pub fn read(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut reader = csv::ReaderBuilder::new().from_reader(&text[..complete]);
    let header = reader.headers()?.iter().map(String::from).collect();
    let mut rows = vec![];
    for r in reader.records() {
        rows.push(r?.iter().map(String::from).collect());
    }
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_runs_drops_the_rows_of_unfinished_runs_only() {
        let dir = std::env::temp_dir().join(format!("kvlab-retain-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("side.csv");
        let header: Vec<String> = ["run_id", "step"].map(String::from).to_vec();
        let mut sink = CsvSink::open(&path, &header, false).unwrap();
        for (id, step) in [("a", "0"), ("a", "1"), ("b", "0")] {
            sink.append(&[id.to_string(), step.to_string()]).unwrap();
        }
        drop(sink);
        retain_runs(&path, &header, &|id| id == "a").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "run_id,step\na,0\na,1\n");
        // Nothing to drop: the file is left as it is.
        retain_runs(&path, &header, &|_| true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "run_id,step\na,0\na,1\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! Append-only CSV results: one row per finished run, written and flushed as it finishes.
//!
//! The file is never rewritten: the header is written only when the file is created, rows are
//! appended one `write` each, and `--resume` reads the run ids already present to skip them.
//! The one exception is a last line without its newline (a row cut off mid-write by a kill):
//! it is not a finished row, and is cut off before appending.

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

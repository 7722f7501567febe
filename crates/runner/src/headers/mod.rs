//! The CSVs an experiment writes and the header the current writer gives each, known without
//! running anything (`runner headers EXPERIMENT.toml`), and which version of a file's header a
//! committed CSV carries: the current one, or an older one the readers still take
//! ([`retired`]). [`check`] walks the committed results with them (`runner headers --check
//! results`, `tests/results_headers.rs`).

pub mod check;
pub mod command;
pub mod retired;

use crate::experiment::Experiment;
use crate::rows::Metrics;
use crate::sweep::Workload;
use crate::workloads::{fragmentation, retrieval};

pub use self::retired::Retired;

/// One CSV an experiment writes: its file name in the results directory and its header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrittenCsv {
    pub file: String,
    pub header: Vec<String>,
}

/// The columns `scripts/gpu-check.sh` appends to every CSV the runner wrote on a CUDA machine
/// (the device's name and driver, from nvidia-smi): a file ending in them is the runner's
/// header followed by the script's.
pub(crate) const GPU_CHECK_COLUMNS: [&str; 2] = ["gpu_name", "gpu_driver"];

/// The CSVs one workload writes: its own, then its side CSV (per-iteration series,
/// per-haystack cases) where it has one.
pub(crate) fn csvs_of(w: Workload) -> Vec<WrittenCsv> {
    let mut out =
        vec![WrittenCsv { file: format!("{}.csv", w.name()), header: crate::engine::header(w) }];
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
    out
}

/// Every CSV `e` writes, in run order.
pub(crate) fn written_csvs(e: &Experiment) -> Vec<WrittenCsv> {
    e.workloads().into_iter().flat_map(csvs_of).collect()
}

/// The header the current writer gives the CSV named `file` (None: not a file the runner
/// writes).
pub fn current(file: &str) -> Option<Vec<String>> {
    Workload::ALL.into_iter().flat_map(csvs_of).find(|c| c.file == file).map(|c| c.header)
}

/// Which version of `file`'s header a CSV carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Version {
    /// What the writer writes now.
    Current,
    /// An older header the readers still take.
    Older(&'static Retired),
}

/// The version of `file`'s header `header` is (None: neither the current nor a known older
/// one). `scripts/gpu-check.sh`'s columns at the end are the script's and do not count.
pub fn version(file: &str, header: &[String]) -> Option<Version> {
    let header = runner_columns(header);
    if current(file).is_some_and(|c| c == header) {
        return Some(Version::Current);
    }
    retired::find(file, header).map(Version::Older)
}

/// `header` without the columns a script appended after the runner's.
pub(crate) fn runner_columns(header: &[String]) -> &[String] {
    let n = header.len().saturating_sub(GPU_CHECK_COLUMNS.len());
    if header[n..].iter().map(String::as_str).eq(GPU_CHECK_COLUMNS) { &header[..n] } else { header }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(columns: impl IntoIterator<Item = &'static str>) -> Vec<String> {
        columns.into_iter().map(String::from).collect()
    }

    #[test]
    fn current_and_older_headers_are_told_apart_and_script_columns_do_not_count() {
        let now = current("throughput.csv").unwrap();
        assert!(now.contains(&"attention".to_string()));
        assert_eq!(version("throughput.csv", &now), Some(Version::Current));
        let mut gpu = now.clone();
        gpu.extend(strings(GPU_CHECK_COLUMNS));
        assert_eq!(version("throughput.csv", &gpu), Some(Version::Current));
        let old = retired::RETIRED.iter().find(|r| r.file == "throughput.csv").unwrap();
        let old_header = strings(old.columns());
        assert_eq!(version("throughput.csv", &old_header), Some(Version::Older(old)));
        // An older header of one file is not a version of another.
        assert_eq!(version("memory.csv", &old_header), None);
        assert_eq!(version("throughput.csv", &now[1..]), None);
        assert_eq!(current("rounds.csv"), None);
    }

    #[test]
    fn no_retired_header_is_the_current_one() {
        for r in retired::RETIRED {
            let now = current(r.file).unwrap_or_else(|| panic!("{} is not a runner CSV", r.file));
            assert!(
                !strings(r.columns()).eq(&now),
                "{}: retired header is the current one",
                r.file
            );
        }
    }
}

//! `--resume` after a kill between a run's side rows and its own row. A fragmentation run
//! writes its series rows (`fragmentation_series.csv`) and a retrieval run its cases
//! (`retrieval_cases.csv`) before its row in the workload's CSV; a run killed between the two
//! has side rows but no row, so resuming runs it again, and its first side rows must go.

use std::path::Path;

use crate::common::{ok, runner, tempdir};
use runner::workloads::retrieval::{CASES_FILE, CaseRow, append_cases, open_cases};

const FRAGMENTATION: &str = r#"[experiment]
name = "frag"
question = "Does --resume keep one series per run?"
model = "seed-toy"

[sweep]
policy = ["reserve-exact", "paged"]
block_size = [16]
budget_tokens = [1024]

[workload.fragmentation]
trace = "chat"
requests = 20
max_seq_len = 512
"#;

/// Rows of a CSV with the `run_id` column's value of each.
fn rows_by_run(path: &Path) -> Vec<(String, Vec<String>)> {
    let (header, rows) = runner::csv_sink::read(path).unwrap();
    let id = header.iter().position(|h| h == "run_id").expect("a run_id column");
    rows.into_iter().map(|r| (r[id].clone(), r)).collect()
}

fn count(rows: &[(String, Vec<String>)], run: &str) -> usize {
    rows.iter().filter(|(id, _)| id == run).count()
}

#[test]
fn resume_drops_the_series_rows_of_a_run_killed_before_its_row() {
    let dir = tempdir();
    std::fs::write(dir.path().join("frag.toml"), FRAGMENTATION).unwrap();
    ok(&runner(&["frag.toml", "--out", "full", "--quiet"], dir.path()));
    let full = dir.path().join("full/frag");
    let series_full = rows_by_run(&full.join("fragmentation_series.csv"));

    // The kill: the last run wrote its series rows, not its row. Staged as an unfinished run
    // of `res` (what `--resume` continues).
    let staging = dir.path().join("res/.frag.partial");
    std::fs::create_dir_all(&staging).unwrap();
    let main = std::fs::read_to_string(full.join("fragmentation.csv")).unwrap();
    let mut lines: Vec<&str> = main.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two runs:\n{main}");
    let killed_line = lines.pop().unwrap();
    std::fs::write(staging.join("fragmentation.csv"), lines.join("\n") + "\n").unwrap();
    std::fs::copy(full.join("fragmentation_series.csv"), staging.join("fragmentation_series.csv"))
        .unwrap();
    let killed = rows_by_run(&full.join("fragmentation.csv")).pop().unwrap().0;
    assert!(killed_line.contains(&killed));
    let killed_rows = count(&series_full, &killed);
    assert!(killed_rows > 0, "the killed run has series rows");

    ok(&runner(&["frag.toml", "--out", "res", "--resume", "--quiet"], dir.path()));
    let series = rows_by_run(&dir.path().join("res/frag/fragmentation_series.csv"));
    assert_eq!(count(&series, &killed), killed_rows, "the killed run's series, once");
    let sorted = |mut rows: Vec<(String, Vec<String>)>| {
        rows.sort();
        rows
    };
    assert_eq!(sorted(series), sorted(series_full), "every run's series, each row once");
}

#[test]
fn resume_drops_the_cases_of_a_run_killed_before_its_row() {
    let dir = tempdir();
    let case = |run: &str, sample| CaseRow { run_id: run.into(), sample, ..CaseRow::default() };
    append_cases(dir.path(), &[case("finished", 0), case("finished", 1)]).unwrap();
    append_cases(dir.path(), &[case("killed", 0), case("killed", 1)]).unwrap();
    // Resuming opens the cases with the runs that have a row in `retrieval.csv` (as the
    // engine does), then runs the killed run again.
    drop(open_cases(dir.path(), true, &|id| id == "finished").unwrap());
    append_cases(dir.path(), &[case("killed", 0), case("killed", 1)]).unwrap();
    let cases = rows_by_run(&dir.path().join(CASES_FILE));
    assert_eq!(count(&cases, "finished"), 2);
    assert_eq!(count(&cases, "killed"), 2, "the killed run's cases, once");
}

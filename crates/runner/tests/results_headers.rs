//! CI's check that committed results never lag the code: every CSV the runner wrote under
//! `results/` (a directory holding `experiment.toml`) has the header the current writer gives
//! it for that experiment. Nothing is run; only headers are read.

use std::path::Path;

#[test]
fn every_committed_results_csv_has_the_writers_header() {
    // From the repository root, so each line names `results/...` as a reader finds it.
    std::env::set_current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    let results = Path::new("results");
    let dirs = runner::headers::results_dirs(&results).unwrap();
    // The walk must find the committed directories, or the check below checks nothing.
    assert!(dirs.iter().any(|d| d.ends_with("gqa")), "no results/gqa found");
    let lagging = runner::headers::check_tree(&results).unwrap();
    let lines: Vec<String> = lagging.iter().map(|m| m.to_string()).collect();
    assert!(
        lines.is_empty(),
        "{} committed CSV(s) lag the writer (re-run the experiment into results/, see \
         results/README.md):\n{}",
        lines.len(),
        lines.join("\n")
    );
}

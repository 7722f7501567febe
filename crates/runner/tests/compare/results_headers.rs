//! CI's check that committed results never lag the code: every CSV the runner wrote under
//! `results/` (a directory holding `experiment.toml`) has the header the current writer gives
//! it for that experiment, or an older version the readers still take
//! (`runner::headers::retired`); and every older version listed there is still carried by
//! some committed file. Nothing is run; only headers are read (well under a second).

use std::path::Path;

use runner::headers::check;

#[test]
fn every_committed_results_csv_has_a_header_the_writer_knows() {
    // From the repository root, so each line names `results/...` as a reader finds it.
    std::env::set_current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    let results = Path::new("results");
    let dirs = check::results_dirs(results).unwrap();
    // The walk must find the committed directories, or the check below checks nothing.
    assert!(dirs.iter().any(|d| d.ends_with("gqa")), "no results/gqa found");
    let findings = check::check_tree(results).unwrap();
    let lagging: Vec<String> =
        findings.iter().filter(|f| f.fails()).map(|f| f.to_string()).collect();
    assert!(
        lagging.is_empty(),
        "{} committed CSV(s) lag the writer: re-run the experiment into results/ (runner \
         EXPERIMENT.toml), or, where that is out of reach, list the old header in \
         crates/runner/src/headers/retired.rs saying why:\n{}",
        lagging.len(),
        lagging.join("\n")
    );
    let unused: Vec<String> =
        check::unused(&findings).iter().map(|r| format!("{}: {}", r.file, r.since)).collect();
    assert!(
        unused.is_empty(),
        "older header(s) in crates/runner/src/headers/retired.rs that no committed CSV carries \
         any more (remove them):\n{}",
        unused.join("\n")
    );
}

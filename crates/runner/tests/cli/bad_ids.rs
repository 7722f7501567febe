//! `runner generate` with a bad id list ends with one error line naming where the ids came from
//! (the `--ids-file` path, or `--ids`) and the bad id, before any model is loaded.

use crate::common::{failed, runner, tempdir};

#[test]
fn a_bad_ids_file_is_one_line_naming_the_file_and_the_id() {
    let dir = tempdir();
    std::fs::write(dir.path().join("ids.txt"), "1, 2, x3\n").unwrap();
    // No model directory: the ids are refused before weights are looked for.
    let err = failed(&runner(
        &["generate", "--ids-file", "ids.txt", "--cache-dir", "no-models-here"],
        dir.path(),
    ));
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    assert!(lines[0].contains("--ids-file ids.txt") && lines[0].contains("'x3'"), "{err}");
    let err = failed(&runner(&["generate", "--ids", "4,-1", "--cache-dir", "none"], dir.path()));
    assert!(err.contains("--ids") && err.contains("'-1'"), "{err}");
}

//! `report.md` snapshots: `runner::report::run` on small fixed results directories
//! (`tests/fixtures/report/<name>/`, trimmed from `results/`), compared byte for byte with the
//! committed `expected-report.md` beside them. After an intended change of the report, rewrite
//! the expected files with `UPDATE_SNAPSHOTS=1 cargo test -p runner --test report` and review
//! their diff.

mod common;

use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/report");
const EXPECTED: &str = "expected-report.md";

/// Copies the fixture's inputs (everything but the expected report) into `dest`.
fn copy_inputs(fixture: &Path, dest: &Path) {
    for entry in std::fs::read_dir(fixture).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().is_some_and(|n| n != EXPECTED) {
            std::fs::copy(&path, dest.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// The lines that differ, as `-expected` / `+actual` pairs with their line numbers.
fn line_diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..e.len().max(a.len()) {
        let (old, new) = (e.get(i), a.get(i));
        if old == new {
            continue;
        }
        if shown == 20 {
            out += "...\n";
            break;
        }
        out += &format!("line {}:\n", i + 1);
        if let Some(old) = old {
            out += &format!("-{old}\n");
        }
        if let Some(new) = new {
            out += &format!("+{new}\n");
        }
        shown += 1;
    }
    out
}

/// Runs the report on a copy of fixture `name` and compares its `report.md` with the snapshot;
/// returns the copy (for further checks) and the files the report wrote.
fn check_snapshot(name: &str) -> (common::TempDir, Vec<PathBuf>) {
    let fixture = Path::new(FIXTURES).join(name);
    let dir = common::tempdir();
    copy_inputs(&fixture, dir.path());
    let written = runner::report::run(dir.path()).unwrap();
    let actual = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let snapshot = fixture.join(EXPECTED);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &actual).unwrap();
        return (dir, written);
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        actual == expected,
        "{} differs from the report drawn now:\n{}\nIf the change is intended, rewrite the \
         snapshots with `UPDATE_SNAPSHOTS=1 cargo test -p runner --test report` and review \
         their diff.",
        snapshot.display(),
        line_diff(&expected, &actual)
    );
    (dir, written)
}

/// The chart stems `report.md` links to, in order.
fn linked_charts(report: &str) -> Vec<String> {
    report
        .split("](charts/")
        .skip(1)
        .filter_map(|rest| rest.split_once(".svg)").map(|(stem, _)| stem.to_string()))
        .collect()
}

#[test]
fn window_report_matches_its_snapshot() {
    check_snapshot("window");
}

#[test]
fn sink_report_matches_its_snapshot() {
    check_snapshot("sink");
}

#[test]
fn every_linked_chart_is_drawn_as_png_and_svg_and_nothing_else() {
    let (dir, written) = check_snapshot("window");
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let stems = linked_charts(&report);
    assert_eq!(stems, ["memory_vs_context", "ppl_vs_cache", "tradeoff"]);
    let mut expected: Vec<PathBuf> = stems
        .iter()
        .flat_map(|s| {
            ["png", "svg"].map(|ext| dir.path().join("charts").join(format!("{s}.{ext}")))
        })
        .collect();
    expected.push(dir.path().join("report.md"));
    let mut written = written;
    written.sort();
    expected.sort();
    assert_eq!(written, expected);
    let on_disk = std::fs::read_dir(dir.path().join("charts")).unwrap().count();
    assert_eq!(on_disk, 2 * stems.len());
    for png in written.iter().filter(|p| p.extension().is_some_and(|e| e == "png")) {
        let bytes = std::fs::read(png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }
}

#[test]
fn a_redrawn_report_is_identical_and_stale_charts_go() {
    let (dir, written) = check_snapshot("sink");
    let first: Vec<Vec<u8>> = written.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let stale = dir.path().join("charts/from_an_older_report.svg");
    std::fs::write(&stale, "<svg/>").unwrap();
    let again = runner::report::run(dir.path()).unwrap();
    assert_eq!(again, written);
    let second: Vec<Vec<u8>> = again.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(first == second, "redrawing changed a file");
    assert!(!stale.exists());
}

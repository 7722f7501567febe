//! `runner compare`: deterministic columns exact, perplexity within a tolerance, timings as
//! ratios, missing runs reported. Fixture directories are written here (nothing is run).

mod common;
#[path = "compare/results_headers.rs"]
mod results_headers;

use std::path::Path;
use std::process::{Command, Output};

fn compare(base: &Path, new: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("compare")
        .arg(base)
        .arg(new)
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

const MEMORY: &str = "\
experiment,run_id,git_commit,backend,device,model,strategy,batch,context,kv_allocated_bytes,process_peak_bytes
x,backend=flex;model=seed-toy;strategy=concat;batch=1;context=4,abc,flex,Cpu,seed-toy,concat,1,4,16384,999
x,backend=flex;model=seed-toy;strategy=static;batch=1;context=4,abc,flex,Cpu,seed-toy,static,1,4,32768,1234
";

const PPL: &str = "\
experiment,run_id,git_commit,backend,device,model,strategy,tokens,mean_nll,ppl,decode_tok_per_s
x,backend=flex;model=seed-toy;strategy=concat,abc,flex,Cpu,seed-toy,concat,16,4.605170,100.000000,200.0
";

fn write(dir: &Path, memory: &str, ppl: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("memory.csv"), memory).unwrap();
    std::fs::write(dir.join("perplexity.csv"), ppl).unwrap();
}

fn dirs() -> (common::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = common::tempdir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&a, MEMORY, PPL);
    (tmp, a, b)
}

#[test]
fn identical_dirs_pass_even_across_commit_backend_and_timing() {
    let (_t, a, b) = dirs();
    // Another commit and backend, a slower timing, another process peak: still a pass.
    let memory =
        MEMORY.replace(",abc,flex,", ",def,ndarray,").replace("backend=flex", "backend=ndarray");
    write(&b, &memory.replace(",999", ",5000"), &PPL.replace("200.0", "150.0"));
    let o = compare(&a, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PASS"), "{}", text(&o));
    assert!(text(&o).contains("1.33x slower"), "{}", text(&o));
    // The same slowdown fails with --max-slowdown 1.2.
    let o = compare(&a, &b, &["--max-slowdown", "1.2"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("slowdown 1.33x"), "{}", text(&o));
}

#[test]
fn changed_byte_count_fails() {
    let (_t, a, b) = dirs();
    write(&b, &MEMORY.replace("32768", "32769"), PPL);
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("kv_allocated_bytes") && t.contains("32769") && t.contains("FAIL"), "{t}");
}

#[test]
fn ppl_within_tolerance_passes_beyond_fails() {
    let (_t, a, b) = dirs();
    write(&b, MEMORY, &PPL.replace("100.000000", "100.005000")); // 5e-5 relative
    let o = compare(&a, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("within tolerance"), "{}", text(&o));
    write(&b, MEMORY, &PPL.replace("100.000000", "100.050000")); // 5e-4 relative
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("beyond tolerance"), "{}", text(&o));
    // A looser --ppl-tol accepts it.
    let o = compare(&a, &b, &["--ppl-tol", "1e-3"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn missing_runs_and_files_are_reported_and_fail() {
    let (_t, a, b) = dirs();
    let one_run: String = MEMORY.lines().take(2).map(|l| format!("{l}\n")).collect();
    write(&b, &one_run, PPL);
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("missing in new") && t.contains("strategy=static"), "{t}");
    assert!(t.contains("missing runs: 1 in new"), "{t}");
    // A run only in new, and a whole CSV only in baseline.
    write(&b, MEMORY, PPL);
    std::fs::remove_file(b.join("perplexity.csv")).unwrap();
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("perplexity.csv") && text(&o).contains("missing in new"));
    let o = compare(&b, &a, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("missing in baseline"), "{}", text(&o));
}

#[test]
fn only_compares_the_selected_runs() {
    let (_t, a, b) = dirs();
    // The new side ran only `--only strategy=static`: without the filter the concat runs are
    // missing; with it they are left out of both sides, and a change in them would not count.
    let static_only: String = MEMORY
        .lines()
        .filter(|l| !l.contains("strategy=concat"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ppl_header = format!("{}\n", PPL.lines().next().unwrap());
    write(&b, &static_only, &ppl_header);
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("missing in new"), "{}", text(&o));
    let o = compare(&a, &b, &["--only", "strategy=static"]);
    assert!(o.status.success(), "{}", text(&o));
    // The filter still checks what it keeps.
    write(&b, &static_only.replace("32768", "1"), &ppl_header);
    let o = compare(&a, &b, &["--only", "strategy=static"]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = compare(&a, &b, &["--only", "stratgy=static"]);
    assert!(
        !o.status.success() && text(&o).contains("'stratgy' is not a sweep key"),
        "{}",
        text(&o)
    );
}

/// A throughput CSV with `header` and one row: the same run id, 1 in every other column but
/// `two`, which holds 2.
fn throughput_csv(header: &[String], two: &str) -> String {
    let row: Vec<&str> = header
        .iter()
        .map(|c| match c.as_str() {
            "run_id" => "backend=flex;model=seed-toy;strategy=static",
            c if c == two => "2",
            _ => "1",
        })
        .collect();
    format!("{}\n{}\n", header.join(","), row.join(","))
}

#[test]
fn an_older_header_version_compares_its_shared_columns_and_other_headers_fail() {
    let tmp = common::tempdir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let older = runner::headers::retired::RETIRED
        .iter()
        .find(|r| r.file == "throughput.csv")
        .unwrap()
        .columns()
        .map(String::from)
        .collect::<Vec<_>>();
    let now = runner::headers::current("throughput.csv").unwrap();
    for (dir, header) in [(&a, &older), (&b, &now)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("throughput.csv"), throughput_csv(header, "")).unwrap();
    }
    let o = compare(&a, &b, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("another version of the writer's header"), "{}", text(&o));
    // A shared column that changed still fails.
    std::fs::write(b.join("throughput.csv"), throughput_csv(&now, "decode_tokens")).unwrap();
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success() && text(&o).contains("decode_tokens"), "{}", text(&o));
    // A header the writer never wrote (a column dropped) is a failure, as before.
    let dropped: Vec<String> = now.iter().filter(|c| *c != "decode_tok_per_s").cloned().collect();
    std::fs::write(b.join("throughput.csv"), throughput_csv(&dropped, "")).unwrap();
    let o = compare(&a, &b, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("column missing in new"), "{}", text(&o));
}

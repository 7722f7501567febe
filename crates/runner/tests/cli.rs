//! The binary end to end: CLI shape, resume, determinism, reports. Nothing here is timed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn runner(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner")).args(args).current_dir(cwd).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SMALL: &str = r#"# experiments/small.toml — test fixture
[experiment]
name = "small"
question = "Does resume work?"
model = "seed-toy"

[strategy]
sink_tokens = 1

[sweep]
strategy = ["concat", "static", "window", "sink"]
cache_tokens = [4, 8]
batch = [1, 2]
context = [6, 12]

[workload.memory]

[workload.perplexity]
tokens = 10
"#;

/// Columns that must not change between runs (no timings, no process measurements).
const DETERMINISTIC: &[&str] = &[
    "run_id",
    "kv_tokens",
    "kv_allocated_bytes",
    "kv_live_bytes",
    "kv_metadata_bytes",
    "formula_bytes",
    "bytes_per_token",
    "tokens",
    "mean_nll",
    "ppl",
    "ppl_delta_pct",
    "generated",
];

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    runner::csv_sink::read(path).unwrap()
}

fn deterministic(path: &Path) -> Vec<BTreeMap<String, String>> {
    let (h, rows) = read_csv(path);
    rows.iter()
        .map(|r| {
            h.iter()
                .zip(r)
                .filter(|(k, _)| DETERMINISTIC.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn subcommands_and_files_share_the_command_line() {
    let dir = common::tempdir();
    let list = ok(&runner(&["list"], dir.path()));
    assert!(list.contains("concat") && list.contains("smollm2-135m") && list.contains("flex"));
    let seed = repo().join("experiments/seed.toml");
    let v = ok(&runner(&["validate", seed.to_str().unwrap()], dir.path()));
    assert!(v.contains("ok (2 runs"), "{v}");
    // Global flags work after a subcommand too.
    ok(&runner(&["validate", seed.to_str().unwrap(), "--backend", "ndarray"], dir.path()));
    // A file and a subcommand do not mix; a subcommand without its argument fails cleanly.
    assert!(!runner(&["report"], dir.path()).status.success());
    let none = runner(&[], dir.path());
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no experiment file"));
    let dry = ok(&runner(&[seed.to_str().unwrap(), "--dry-run"], dir.path()));
    assert!(dry.contains("walkthrough#1\tbackend=flex;model=seed-toy;strategy=concat"), "{dry}");
    assert!(!dir.path().join("results").exists(), "--dry-run writes nothing");
    // --only keeps the runs that have every KEY=VALUE.
    let only =
        ok(&runner(&[seed.to_str().unwrap(), "--dry-run", "--only", "strategy=none"], dir.path()));
    assert!(only.contains("strategy=none") && !only.contains("strategy=concat"), "{only}");
}

#[test]
fn backend_not_compiled_in_is_a_one_line_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = common::tempdir();
    let seed = repo().join("experiments/seed.toml");
    let out = runner(&[seed.to_str().unwrap(), "--backend", "cuda"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--features cuda") && !err.contains("panicked"), "{err}");
}

#[test]
fn seed_walkthrough_prints_growing_shapes_and_matching_tokens() {
    let dir = common::tempdir();
    let seed = repo().join("experiments/seed.toml");
    let out = ok(&runner(&[seed.to_str().unwrap(), "--quiet", "--out", "res"], dir.path()));
    for (step, len) in [(1, 11), (2, 12), (3, 13)] {
        assert!(out.contains(&format!("step {step}: input [1, 1]")), "{out}");
        assert!(out.contains(&format!("cache k/v [1, 4, {len}, 64] per layer")), "{out}");
        assert!(out.contains(&format!("no cache (recomputes all {len} tokens)")), "{out}");
    }
    assert!(out.contains("step 0: input [1, 10]"), "{out}");
    assert!(out.contains("4096 bytes"), "{out}");
    assert!(out.contains("every strategy generated the same tokens"), "{out}");
}

#[test]
fn resume_after_interruption_finishes_without_duplicates_or_gaps() {
    let dir = common::tempdir();
    let toml = dir.path().join("small.toml");
    std::fs::write(&toml, SMALL).unwrap();
    let t = toml.to_str().unwrap();
    ok(&runner(&[t, "--quiet", "--out", "res"], dir.path()));
    let csv = dir.path().join("res/small/memory.csv");
    let full = deterministic(&csv);
    assert_eq!(full.len(), 2 * 2 * (2 + 2 + 2), "concat, static, window×2, sink×2 × batch × ctx");

    // A second plain run refuses to append duplicates and leaves the file alone.
    let before = std::fs::read(&csv).unwrap();
    let again = runner(&[t, "--quiet", "--out", "res"], dir.path());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert_eq!(std::fs::read(&csv).unwrap(), before);

    // Interrupt: keep the header and 5 rows, plus half of the 6th row.
    let text = String::from_utf8(before).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines[..6].join("\n") + "\n";
    cut += &lines[6][..lines[6].len() / 2];
    std::fs::write(&csv, cut).unwrap();
    let ppl = dir.path().join("res/small/perplexity.csv");
    let ppl_full = deterministic(&ppl);
    let ptext = std::fs::read_to_string(&ppl).unwrap();
    std::fs::write(&ppl, ptext.lines().take(3).collect::<Vec<_>>().join("\n") + "\n").unwrap();

    ok(&runner(&[t, "--quiet", "--out", "res", "--resume"], dir.path()));
    let resumed = deterministic(&csv);
    assert_eq!(resumed, full, "same rows, same order, none twice");
    assert_eq!(deterministic(&ppl), ppl_full);
}

#[test]
fn report_is_identical_when_redrawn() {
    let dir = common::tempdir();
    let toml = dir.path().join("small.toml");
    std::fs::write(&toml, SMALL).unwrap();
    ok(&runner(&[toml.to_str().unwrap(), "--quiet", "--out", "res"], dir.path()));
    let res = dir.path().join("res/small");
    let snapshot = |d: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        for sub in [d.to_path_buf(), d.join("charts")] {
            for e in std::fs::read_dir(&sub).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    files.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        files
    };
    ok(&runner(&["report", res.to_str().unwrap()], dir.path()));
    let first = snapshot(&res);
    ok(&runner(&["report", dir.path().join("res").to_str().unwrap()], dir.path()));
    let second = snapshot(&res);
    assert_eq!(first.keys().collect::<Vec<_>>(), second.keys().collect::<Vec<_>>());
    for (p, bytes) in &first {
        assert!(second[p] == *bytes, "{} changed on redraw", p.display());
    }
    let md = String::from_utf8(first[&res.join("report.md")].clone()).unwrap();
    assert!(md.contains("**Question.** Does resume work?"), "{md}");
    assert!(md.contains("charts/memory_vs_context.svg"), "{md}");
    assert!(md.contains("charts/ppl_vs_cache.svg"), "{md}");
    assert!(res.join("charts/memory_vs_context.png").is_file());
}

#[test]
fn smoke_is_deterministic() {
    let dir = common::tempdir();
    let smoke = repo().join("experiments/smoke.toml");
    let s = smoke.to_str().unwrap();
    ok(&runner(&[s, "--quiet", "--out", "a"], dir.path()));
    ok(&runner(&[s, "--quiet", "--out", "b"], dir.path()));
    for csv in ["memory.csv", "throughput.csv", "perplexity.csv"] {
        let a = deterministic(&dir.path().join("a/smoke").join(csv));
        let b = deterministic(&dir.path().join("b/smoke").join(csv));
        assert!(!a.is_empty(), "{csv}");
        assert_eq!(a, b, "{csv}");
    }
}

//! The binary end to end: CLI shape, resume, determinism, reports. Nothing here is timed.

#[path = "cli/bad_ids.rs"]
mod bad_ids;
mod common;
#[path = "cli/missing_gguf.rs"]
mod missing_gguf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok, runner};

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
fn rerunning_replaces_results_and_resume_finishes_an_interrupted_run() {
    let dir = common::tempdir();
    let toml = dir.path().join("small.toml");
    std::fs::write(&toml, SMALL).unwrap();
    let t = toml.to_str().unwrap();
    ok(&runner(&[t, "--quiet", "--out", "res"], dir.path()));
    let csv = dir.path().join("res/small/memory.csv");
    let ppl = dir.path().join("res/small/perplexity.csv");
    let full = deterministic(&csv);
    let ppl_full = deterministic(&ppl);
    assert_eq!(full.len(), 2 * 2 * (2 + 2 + 2), "concat, static, window×2, sink×2 × batch × ctx");

    // A second plain run replaces the results with the same rows (no duplicates appended).
    ok(&runner(&[t, "--quiet", "--out", "res"], dir.path()));
    assert_eq!(deterministic(&csv), full);
    let staging = dir.path().join("res/.small.partial");
    assert!(!staging.exists(), "a finished run leaves no staging directory");

    // An interrupted run: its rows are in the staging directory (5 rows and half of the 6th),
    // the results are untouched; --resume finishes it without duplicates or gaps.
    std::fs::create_dir_all(&staging).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..6].join("\n") + "\n" + &lines[6][..lines[6].len() / 2];
    std::fs::write(staging.join("memory.csv"), cut).unwrap();
    let ptext = std::fs::read_to_string(&ppl).unwrap();
    let ppl_cut = ptext.lines().take(3).collect::<Vec<_>>().join("\n") + "\n";
    std::fs::write(staging.join("perplexity.csv"), ppl_cut).unwrap();
    ok(&runner(&[t, "--quiet", "--out", "res", "--resume"], dir.path()));
    assert_eq!(deterministic(&csv), full, "same rows, same order, none twice");
    assert_eq!(deterministic(&ppl), ppl_full);
    assert!(!staging.exists());
}

#[test]
fn interrupted_halfway_leaves_the_previous_results_intact() {
    let dir = common::tempdir();
    let toml = dir.path().join("small.toml");
    // Long enough to be interrupted: more perplexity tokens per run.
    std::fs::write(&toml, SMALL.replace("tokens = 10", "tokens = 200")).unwrap();
    let t = toml.to_str().unwrap();
    ok(&runner(&[t, "--quiet", "--out", "res"], dir.path()));
    let results = dir.path().join("res/small");
    let before: Vec<(PathBuf, Vec<u8>)> = ["memory.csv", "perplexity.csv", "report.md"]
        .iter()
        .map(|f| (results.join(f), std::fs::read(results.join(f)).unwrap()))
        .collect();
    let memory_rows = deterministic(&results.join("memory.csv"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([t, "--quiet", "--out", "res"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the new run has written rows of its own. SIGTERM rather than SIGINT: the
    // runner handles neither (both end it where it stands, as Ctrl-C or `scancel` would), but
    // a process started in the background by a non-interactive shell inherits SIGINT ignored,
    // and so would run to completion under such a CI.
    let staged = dir.path().join("res/.small.partial/memory.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&staged).map_or(0, |s| s.lines().count()) < 3 {
        assert!(started.elapsed().as_secs() < 120, "the run wrote no rows");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was interrupted");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(!status.success(), "interrupted before it finished");
    for (path, bytes) in &before {
        assert!(std::fs::read(path).unwrap() == *bytes, "{} changed", path.display());
    }
    // The interrupted rows wait for --resume, which completes and swaps the results in.
    ok(&runner(&[t, "--quiet", "--out", "res", "--resume"], dir.path()));
    assert!(!dir.path().join("res/.small.partial").exists());
    assert_eq!(deterministic(&results.join("memory.csv")), memory_rows);
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

/// The keep-policies compose with the other levers through the same TOML keys: H2O, TOVA and
/// key-norm over converted heads and an int8 store, streamed past their budget. With a budget
/// of the whole text they keep every token: their perplexity is the full cache's.
#[test]
fn keep_policies_compose_with_heads_and_bits_from_toml() {
    let dir = common::tempdir();
    let toml = r#"[experiment]
name = "evict"
question = "Do keep-policies compose?"
model = "seed-toy"

[sweep]
strategy = ["concat", "h2o", "tova", "key-norm"]
cache_tokens = [8, 64]
kv_heads = [2]
bits = [8]

[workload.perplexity]
tokens = 40
mode = "streaming"
"#;
    std::fs::write(dir.path().join("evict.toml"), toml).unwrap();
    ok(&runner(&["evict.toml", "--quiet", "--out", "out"], dir.path()));
    let (h, rows) = read_csv(&dir.path().join("out/evict/perplexity.csv"));
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let ppl = |row: &Vec<String>| row[col("ppl")].parse::<f64>().unwrap();
    let concat = rows.iter().find(|r| r[col("strategy")] == "concat").expect("the full cache");
    for policy in ["h2o", "tova", "key-norm"] {
        let run = |budget: &str| {
            rows.iter()
                .find(|r| r[col("strategy")] == policy && r[col("cache_tokens")] == budget)
                .unwrap_or_else(|| panic!("{policy} at {budget}"))
        };
        let (small, whole) = (run("8"), run("64"));
        assert_eq!((&small[col("kv_heads")], &small[col("bits")]), (&"2".into(), &"8".into()));
        // int8 against the f32 full cache: close, not equal; every token kept at 64.
        assert!((ppl(whole) - ppl(concat)).abs() / ppl(concat) < 0.02, "{policy} at 64");
        assert!(ppl(small) != ppl(whole), "{policy}: an 8-token budget changes nothing");
    }
}

/// `draws` scores each run again under perturbations of the model: the columns are filled, the
/// f32 cache barely moves, and a 4-bit cache's perplexity spreads (its codes flip).
#[test]
fn perplexity_draws_fill_their_columns_and_spread_a_quantized_cache() {
    let dir = common::tempdir();
    let toml = r#"[experiment]
name = "draws"
question = "How much does one perplexity move under a nudge?"
model = "seed-toy"

[sweep]
strategy = ["static"]
bits = [32, 4]

[workload.perplexity]
tokens = 40
mode = "streaming"
draws = 3
draw_scale = 0.01
"#;
    std::fs::write(dir.path().join("draws.toml"), toml).unwrap();
    ok(&runner(&["draws.toml", "--quiet", "--out", "out"], dir.path()));
    let (h, rows) = read_csv(&dir.path().join("out/draws/perplexity.csv"));
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let num = |row: &Vec<String>, name: &str| row[col(name)].parse::<f64>().unwrap();
    let run = |bits: &str| rows.iter().find(|r| r[col("bits")] == bits).unwrap();
    for bits in ["32", "4"] {
        assert_eq!(run(bits)[col("draws")], "3", "bits {bits}");
        let (ppl, mean) = (num(run(bits), "ppl"), num(run(bits), "ppl_draw_mean"));
        assert!((mean / ppl - 1.0).abs() < 0.05, "bits {bits}: {mean} vs {ppl}");
    }
    assert!(num(run("4"), "ppl_draw_sd_pct") > 0.0, "the draws of a 4-bit cache differ");
}

//! Sharded sweeps end to end: `runner plan`, `runner EXP --shard I/N`, `runner merge`.
//! The merge of the shards must equal one process's run in every deterministic column and in
//! row order; a missing or duplicated run is refused by name; a killed shard resumes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{failed, ok, runner};

const SWEEP: &str = r#"# a sweep of every workload on the toy model
[experiment]
name = "sharded"
question = "Do shards merge into one process's results?"
model = "seed-toy"

[strategy]
sink_tokens = 1

[sweep]
strategy = ["none", "concat", "window", "sink", "paged"]
cache_tokens = [8, 16]
block_size = [4]
batch = [1, 2]
context = [6, 12]
policy = ["reserve-max", "paged"]
budget_tokens = [256]

[workload.walkthrough]
prompt_tokens = 4
steps = 3

[workload.memory]

[workload.throughput]
decode_tokens = 2
repeats = 1
warmup = 0

[workload.perplexity]
tokens = 12

[workload.fragmentation]
requests = 20
max_seq_len = 128
"#;

/// Timings and process measurements differ between any two runs; everything else must not.
fn measured(column: &str) -> bool {
    column.ends_with("_per_s")
        || column.ends_with("_s")
        || column.ends_with("_ms")
        || column.starts_with("ms_")
        || column.starts_with("process_")
        || column.starts_with("device_bytes")
}

/// A CSV with its measured columns blanked: header and rows in file order.
fn deterministic(path: &Path) -> Vec<Vec<String>> {
    let (header, rows) = runner::csv_sink::read(path).unwrap();
    let keep: Vec<bool> = header.iter().map(|h| !measured(h)).collect();
    std::iter::once(header.clone())
        .chain(rows)
        .map(|r| r.into_iter().zip(&keep).map(|(v, &k)| if k { v } else { "-".into() }).collect())
        .collect()
}

fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
}

fn assert_same_results(single: &Path, merged: &Path) {
    let (a, b) = (csv_files(single), csv_files(merged));
    let names =
        |v: &[PathBuf]| v.iter().map(|p| p.file_name().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    assert!(a.len() >= 5, "every workload wrote a CSV: {a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(deterministic(x), deterministic(y), "{} vs {}", x.display(), y.display());
    }
    assert!(merged.join("report.md").is_file(), "the merge draws the report");
    assert!(!merged.join("shard.json").exists(), "a merged directory is not a shard");
}

/// Runs shards `0..n` of `toml` into `root/shard-I`; returns the shard directories.
fn run_shards(toml: &str, n: usize, root: &Path) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let dir = root.join(format!("shard-{i}"));
            let shard = format!("{i}/{n}");
            ok(&runner(
                &[toml, "--shard", &shard, "--out", dir.to_str().unwrap(), "--quiet"],
                root,
            ));
            assert!(dir.join("sharded/shard.json").is_file());
            dir
        })
        .collect()
}

/// Writes the sweep into `root` and runs it in one process into `root/single`; returns the
/// experiment file's path.
fn sweep_run_in_one_process(root: &Path) -> String {
    let toml = root.join("sharded.toml");
    std::fs::write(&toml, SWEEP).unwrap();
    let t = toml.to_str().unwrap().to_string();
    ok(&runner(&[&t, "--out", "single", "--quiet"], root));
    t
}

fn merge(dirs: &[PathBuf], out: &Path, cwd: &Path) -> Output {
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    runner(&args, cwd)
}

#[test]
fn plan_is_stable_covers_every_run_once_and_balances_cost() {
    let dir = common::tempdir();
    let toml = dir.path().join("sharded.toml");
    std::fs::write(&toml, SWEEP).unwrap();
    let t = toml.to_str().unwrap();
    let json = ok(&runner(&["plan", t, "--shards", "3", "--json"], dir.path()));
    assert_eq!(json, ok(&runner(&["plan", t, "--shards", "3", "--json"], dir.path())));
    let plans: serde_json::Value = serde_json::from_str(&json).unwrap();
    let runs = plans[0]["runs"].as_array().unwrap();
    // Every run of the dry run is planned exactly once, in the same (pinned) order.
    let dry = ok(&runner(&[t, "--dry-run"], dir.path()));
    let dry_ids: Vec<&str> = dry.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    let plan_ids: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(plan_ids, dry_ids);
    let mut loads = [0f64; 3];
    let mut max_cost = 0f64;
    for r in runs {
        let cost = r["cost"].as_f64().unwrap();
        loads[r["shard"].as_u64().unwrap() as usize] += cost;
        max_cost = max_cost.max(cost);
    }
    let mean = loads.iter().sum::<f64>() / 3.0;
    for l in loads {
        assert!(l <= mean + max_cost, "{loads:?}, costliest run {max_cost}");
    }
    // A shard's dry run lists exactly its planned runs.
    let shard1 = ok(&runner(&[t, "--dry-run", "--shard", "1/3"], dir.path()));
    let shard1_ids: Vec<&str> = shard1.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    let planned1: Vec<&str> =
        runs.iter().filter(|r| r["shard"] == 1).map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(shard1_ids, planned1);
    // Bad shard specs are refused by clap, naming the value.
    let err = failed(&runner(&[t, "--shard", "3/3"], dir.path()));
    assert!(err.contains("'3/3'"), "{err}");
}

#[test]
fn merged_shards_equal_a_single_process_run_and_refuse_gaps_and_duplicates() {
    let dir = common::tempdir();
    let root = dir.path();
    let t = &sweep_run_in_one_process(root);
    let shards = run_shards(t, 3, root);
    let out = root.join("merged");
    ok(&merge(&shards, &out, root));
    assert_same_results(&root.join("single/sharded"), &out.join("sharded"));
    // compare agrees, and a second merge into the same place replaces the first.
    ok(&runner(&["compare", "single/sharded", "merged/sharded"], root));
    ok(&merge(&shards, &out, root));

    // A shard left out: each of its runs is named, and nothing is written.
    let elsewhere = root.join("partial");
    let err = failed(&merge(&shards[..2], &elsewhere, root));
    assert!(err.contains("missing") && err.contains("no directory of shard 2/3"), "{err}");
    assert!(err.contains("run backend=flex;model=seed-toy;"), "{err}");
    assert!(!elsewhere.join("sharded").exists());

    // The same shard twice: the duplicated run is named.
    let twice = [shards[0].clone(), shards[0].clone(), shards[1].clone(), shards[2].clone()];
    let err = failed(&merge(&twice, &elsewhere, root));
    assert!(err.contains("is duplicated") && err.contains("run backend=flex;"), "{err}");

    // A row copied into another shard's CSV is a duplicate too.
    let (src, dst) = (shards[0].join("sharded/memory.csv"), shards[1].join("sharded/memory.csv"));
    let row = std::fs::read_to_string(&src).unwrap().lines().nth(1).unwrap().to_string();
    let mut text = std::fs::read_to_string(&dst).unwrap();
    text += &format!("{row}\n");
    std::fs::write(&dst, text).unwrap();
    let err = failed(&merge(&shards, &elsewhere, root));
    let id = row.split(',').nth(1).unwrap();
    assert!(err.contains(&format!("run {id} (memory) is duplicated")), "{err}");

    // Shards of another plan (another N) do not mix.
    let other = root.join("other");
    ok(&runner(&[t, "--shard", "0/2", "--out", other.to_str().unwrap(), "--quiet"], root));
    let err = failed(&merge(&[shards[1].clone(), other], &elsewhere, root));
    assert!(err.contains("different plans"), "{err}");
}

#[test]
fn a_killed_shard_resumes_and_then_merges() {
    let dir = common::tempdir();
    let root = dir.path();
    let t = &sweep_run_in_one_process(root);
    let mut shards = run_shards(t, 2, root);
    // Shard 0 again from scratch, killed once its first rows are written.
    let victim = root.join("victim");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([t, "--shard", "0/2", "--out", victim.to_str().unwrap(), "--quiet"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let memory = victim.join("sharded/memory.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&memory).map_or(0, |s| s.lines().count()) < 2
        && started.elapsed().as_secs() < 120
        && child.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    // Whether or not the kill landed mid-sweep, leave the shard as a kill mid-write would: its
    // rows still in the staging directory, the last CSV with one finished row and half the next.
    let staging = victim.join(".sharded.partial");
    if victim.join("sharded").exists() {
        std::fs::rename(victim.join("sharded"), &staging).unwrap();
    }
    let csvs = csv_files(&staging);
    let last = csvs.iter().rev().find(|p| std::fs::read_to_string(p).unwrap().lines().count() > 2);
    if let Some(path) = last {
        let text = std::fs::read_to_string(path).unwrap();
        let keep: Vec<&str> = text.lines().take(3).collect();
        let cut = format!("{}\n{}\n{}", keep[0], keep[1], &keep[2][..keep[2].len() / 2]);
        std::fs::write(path, cut).unwrap();
    }
    // Merging now names the unfinished shard; --resume on the same directory finishes it.
    shards[0] = victim.clone();
    let err = failed(&merge(&shards, &root.join("merged"), root));
    assert!(err.contains("shard 0/2 of experiment 'sharded' has not finished"), "{err}");
    assert!(err.contains("plus --resume"), "{err}");
    ok(&runner(
        &[t, "--shard", "0/2", "--out", victim.to_str().unwrap(), "--quiet", "--resume"],
        root,
    ));
    assert!(!staging.exists() && victim.join("sharded/shard.json").is_file());
    // Resuming into a shard directory of another plan is refused.
    let err = failed(&runner(
        &[t, "--shard", "1/2", "--out", victim.to_str().unwrap(), "--resume"],
        root,
    ));
    assert!(err.contains("shard.json was written for shard 0/2"), "{err}");
    ok(&merge(&shards, &root.join("merged"), root));
    assert_same_results(&root.join("single/sharded"), &root.join("merged/sharded"));
}

/// The plan of the smoke experiment over 4 shards, as committed: a plan depends on the file
/// and N only (integer costs, ties broken by pinned order), so it is the same on any machine.
/// After an intended change of the smoke experiment or of the cost model, rewrite it with
/// `UPDATE_SNAPSHOTS=1 cargo test -p runner --test shard` and review the diff.
#[test]
fn the_smoke_plan_matches_its_snapshot() {
    let dir = common::tempdir();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let smoke = repo.join("experiments/smoke.toml");
    let plan = ok(&runner(&["plan", smoke.to_str().unwrap(), "--shards", "4"], dir.path()));
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/smoke-4.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &plan).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap();
    assert!(plan == expected, "the smoke plan changed; see the doc comment to update");
}

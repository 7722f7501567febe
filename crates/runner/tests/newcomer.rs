//! What a newcomer met, one test each: a run that cannot fit in memory, a window streaming
//! past the model's positions, a perplexity reference that depended on run order and `--only`,
//! a `.gguf` model's corpus tokenized with another model's tokenizer, and global flags before
//! a subcommand. Each failed on the main branch before its fix.

mod common;

use std::path::Path;
use std::process::Output;

use common::{ok, runner};

/// The single error line of a failed command (exit 1, no panic).
fn error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
    err
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_cache_that_cannot_fit_is_refused_before_anything_runs() {
    let dir = common::tempdir();
    // The report's case: a static cache of 4,000 × 32,000 tokens (5.9 TB of KV) was killed by
    // the kernel's OOM killer, leaving a header-only CSV.
    let toml = write(
        dir.path(),
        "oom.toml",
        r#"[experiment]
name = "oom"
question = "Is a cache that cannot fit refused?"
model = "smollm2-135m"
[sweep]
strategy = ["static"]
batch = [4000]
context = [32000]
[workload.memory]
"#,
    );
    for args in [vec!["validate", &toml], vec![&toml]] {
        let err = error_line(&runner(&args, dir.path()));
        assert!(err.contains("oom.toml: run memory#0 ([smollm2-135m] static batch=4000"), "{err}");
        assert!(err.contains("needs 329516084120064 bytes") && err.contains("bytes ("), "{err}");
        assert!(err.contains("are available (MemAvailable"), "{err}");
    }
    assert!(!dir.path().join("results").exists(), "nothing is written");

    // --max-memory caps what a shared machine grants: the toy walkthrough needs ~11 MB.
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/seed.toml");
    let seed = seed.to_str().unwrap();
    let one = &[seed, "--only", "strategy=concat", "--max-memory", "1M"];
    let err = error_line(&runner(one, dir.path()));
    assert!(err.contains("run walkthrough#1 ([seed-toy] concat) needs "), "{err}");
    assert!(err.contains("but 1048576 bytes (1.0 MiB) are available (--max-memory)"), "{err}");
    assert!(!dir.path().join("results").exists(), "nothing is written");
    ok(&runner(&["validate", seed, "--max-memory", "1G"], dir.path()));
}

#[test]
fn a_window_streaming_past_the_models_positions_fails_validation() {
    let dir = common::tempdir();
    let toml = |strategy: &str| {
        write(
            dir.path(),
            &format!("{strategy}.toml"),
            &format!(
                r#"[experiment]
name = "long"
question = "q?"
model = "seed-toy"
[strategy]
sink_tokens = 4
[sweep]
strategy = ["{strategy}"]
cache_tokens = [64]
[workload.perplexity]
tokens = 40000
"#
            ),
        )
    };
    // seed-toy has 32,768 positions: a window keeps original positions and would index past
    // the rotary table (a panic in rope.rs); sink re-assigns them inside its budget.
    for strategy in ["window", "shift-window"] {
        let err = error_line(&runner(&["validate", &toml(strategy)], dir.path()));
        assert!(err.contains("40000 tokens exceed the model's max_positions = 32768"), "{err}");
    }
    ok(&runner(&["validate", &toml("sink")], dir.path()));
}

/// `ppl_delta_pct` of every perplexity row, by run id.
fn deltas(csv: &Path) -> Vec<(String, String)> {
    let (header, rows) = runner::csv_sink::read(csv).unwrap();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    rows.iter().map(|r| (r[col("run_id")].clone(), r[col("ppl_delta_pct")].clone())).collect()
}

#[test]
fn the_perplexity_reference_is_the_checkpoint_whatever_runs_first() {
    let dir = common::tempdir();
    let toml = write(
        dir.path(),
        "heads.toml",
        r#"[experiment]
name = "heads"
question = "What does converting heads cost?"
model = "seed-toy"
[sweep]
strategy = ["concat"]
kv_heads = [1, 4]
head_reduction = ["mean-pool"]
[workload.perplexity]
tokens = 24
"#,
    );
    ok(&runner(&[&toml, "--quiet", "--out", "all"], dir.path()));
    let all = deltas(&dir.path().join("all/heads/perplexity.csv"));
    // MQA converted from the toy model's 4 KV heads changes its perplexity; 4 heads is exact.
    assert_eq!(all.len(), 2);
    assert_ne!(all[0].1.parse::<f64>().unwrap(), 0.0, "{all:?}");
    assert_eq!(all[1].1.parse::<f64>().unwrap(), 0.0, "{all:?}");
    // The MQA run alone (--only) gets the same delta: it is not compared with itself.
    ok(&runner(&[&toml, "--quiet", "--out", "one", "--only", "kv_heads=1"], dir.path()));
    assert_eq!(deltas(&dir.path().join("one/heads/perplexity.csv")), all[..1]);
}

/// The pinned SmolLM2 GGUF (fetched into the shared cache on first use, as the model's tests do).
fn smollm2() -> String {
    let path = kvlab_model::assets::smollm2_gguf(None).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn global_flags_work_before_the_subcommand() {
    let dir = common::tempdir();
    let model = smollm2();
    let args = ["--model", &model, "generate", "--prompt", "hi", "--new-tokens", "2"];
    let out = ok(&runner(&args, dir.path()));
    assert!(out.starts_with("hi"), "{out}");
}

#[test]
fn a_gguf_models_corpus_is_tokenized_with_its_own_tokenizer() {
    let dir = common::tempdir();
    let model = smollm2();
    // The run's model is a .gguf path; --model names a file that does not exist, so reading
    // any tokenizer but the run's own fails.
    let toml = write(
        dir.path(),
        "gguf.toml",
        &format!(
            r#"[experiment]
name = "gguf"
question = "q?"
model = "{model}"
weights = "pretrained"
[sweep]
strategy = ["concat"]
[workload.perplexity]
corpus = "shakespeare:hamlet"
tokens = 8
"#
        ),
    );
    let args = [toml.as_str(), "--quiet", "--out", "res", "--model", "/nonexistent/other.gguf"];
    ok(&runner(&args, dir.path()));
    let rows = deltas(&dir.path().join("res/gguf/perplexity.csv"));
    assert_eq!(rows.len(), 1);
}

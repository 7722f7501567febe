//! Corrupt inputs end the runner with a clear one-line error and a non-zero exit, never a
//! panic: a GGUF with the wrong magic, a truncated GGUF, a missing corpus file.

use std::path::PathBuf;
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kvlab-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs the runner; returns (success, stderr).
fn runner(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_clean_failure(args: &[&str], needle: &str) {
    let (ok, stderr) = runner(args);
    assert!(!ok, "{args:?} should fail");
    assert!(stderr.contains(needle), "{args:?}: stderr lacks {needle:?}:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
}

#[test]
fn wrong_magic_is_a_clear_error() {
    let path = scratch("wrong-magic.gguf");
    std::fs::write(&path, b"GGML\x03\x00\x00\x00 not a gguf file at all").unwrap();
    assert_clean_failure(&["logits", "--model", path.to_str().unwrap(), "--ids", "1,2"], "magic");
}

#[test]
fn a_missing_gguf_is_named_once() {
    let path = scratch("no-such-model.gguf");
    let (ok, stderr) = runner(&["logits", "--model", path.to_str().unwrap(), "--ids", "1,2"]);
    assert!(!ok);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(lines[0].contains("no-such-model.gguf"), "{stderr}");
    // The OS's reason appears once (it used to be printed by the error and again as its cause).
    assert_eq!(lines[0].matches("os error 2").count(), 1, "{stderr}");
}

#[test]
fn truncated_gguf_is_a_clear_error() {
    let path = scratch("truncated.gguf");
    // Magic and version 3, then the header stops inside the tensor count.
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00\x05\x00").unwrap();
    assert_clean_failure(
        &["generate", "--model", path.to_str().unwrap(), "--ids", "1"],
        "truncated",
    );
}

#[test]
fn a_missing_corpus_file_fails_validation() {
    let toml = scratch("missing-corpus.toml");
    std::fs::write(
        &toml,
        r#"[experiment]
name = "missing-corpus"
question = "Does a missing corpus file stop the run before it starts?"
model = "seed-toy"

[sweep]
strategy = ["concat"]

[workload.perplexity]
corpus = "file:/nonexistent/kvlab/play.txt"
tokens = 16
mode = "streaming"
"#,
    )
    .unwrap();
    assert_clean_failure(&["validate", toml.to_str().unwrap()], "/nonexistent/kvlab/play.txt");
}

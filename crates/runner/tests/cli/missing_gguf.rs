//! An experiment whose GGUF does not exist ends the runner with one error line that names the
//! file once, and a non-zero exit: a `.gguf` path as the experiment's `model` (refused when the
//! experiment is read), or a preset's pretrained weights from `--model` (refused when loaded).

use crate::common::{failed, runner, tempdir};

fn experiment(model: &str, weights: &str) -> String {
    format!(
        r#"[experiment]
name = "missing"
question = "Is a missing GGUF one line?"
model = "{model}"
weights = "{weights}"

[sweep]
strategy = ["concat"]
context = [8]

[workload.memory]
"#
    )
}

/// One line, naming `path` and the OS's reason once each.
fn assert_one_line_naming_once(stderr: &str, path: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert_eq!(lines[0].matches(path).count(), 1, "the path once:\n{stderr}");
    assert_eq!(lines[0].matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn an_experiments_missing_gguf_model_is_one_line_naming_it_once() {
    let dir = tempdir();
    let gguf = dir.path().join("no-such-model.gguf");
    let gguf = gguf.to_str().unwrap();
    std::fs::write(dir.path().join("missing.toml"), experiment(gguf, "pretrained")).unwrap();
    let err = failed(&runner(&["missing.toml", "--out", "res", "--quiet"], dir.path()));
    assert_one_line_naming_once(&err, gguf);
    assert!(err.starts_with("error: missing.toml: model: "), "{err}");
}

#[test]
fn a_missing_gguf_given_with_model_is_one_line_naming_it_once() {
    let dir = tempdir();
    let gguf = dir.path().join("no-such-weights.gguf");
    let gguf = gguf.to_str().unwrap();
    std::fs::write(dir.path().join("missing.toml"), experiment("smollm2-135m", "pretrained"))
        .unwrap();
    let args = ["missing.toml", "--out", "res", "--quiet", "--model", gguf];
    let err = failed(&runner(&args, dir.path()));
    assert_one_line_naming_once(&err, gguf);
}

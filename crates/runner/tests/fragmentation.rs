//! The fragmentation workload through the runner: rows, side series, report, and errors that
//! name their cause instead of panicking.

mod common;
#[path = "fragmentation/resume_side_rows.rs"]
mod resume_side_rows;

use std::path::Path;
use std::process::{Command, Output};

fn runner(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner")).args(args).current_dir(cwd).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn experiment(trace: &str, budget: &str, extra: &str) -> String {
    format!(
        r#"# test fixture
[experiment]
name = "frag"
question = "Does the fragmentation workload run?"
model = "seed-toy"

[sweep]
policy = ["reserve-max", "reserve-exact", "paged"]
block_size = [8, 16]
{budget}

[workload.fragmentation]
trace = "{trace}"
{extra}
"#
    )
}

fn column(path: &Path, name: &str) -> Vec<String> {
    let (h, rows) = runner::csv_sink::read(path).unwrap();
    let i = h.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[i].clone()).collect()
}

#[test]
fn runs_writes_rows_series_and_report_deterministically() {
    let tmp = common::tempdir();
    let f = tmp.path().join("frag.toml");
    std::fs::write(
        &f,
        experiment("chat", "budget_tokens = [1024, 2048]", "requests = 40\nmax_seq_len = 512"),
    )
    .unwrap();
    let o = runner(&["frag.toml", "--out", "a", "-q"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("a/frag");
    // 2 budgets × (reserve-max, reserve-exact, paged × 2 block sizes).
    assert_eq!(column(&dir.join("fragmentation.csv"), "policy").len(), 8);
    assert_eq!(column(&dir.join("fragmentation.csv"), "requests"), vec!["40"; 8]);
    // Every policy serves the same requests (the too-long ones are rejected by all).
    let done = column(&dir.join("fragmentation.csv"), "completed");
    assert!(done.iter().all(|c| *c == done[0] && c != "0"), "{done:?}");
    let series = column(&dir.join("fragmentation_series.csv"), "running");
    assert!(!series.is_empty());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Comparison with the vLLM paper"), "{report}");
    for chart in
        ["memory_split_1024.svg", "concurrency_2048.svg", "tokens_per_iteration_vs_budget.svg"]
    {
        assert!(dir.join("charts").join(chart).is_file(), "{chart}");
    }
    // A second run compares clean against the first.
    let o = runner(&["frag.toml", "--out", "b", "-q"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let o = runner(&["compare", "a/frag", "b/frag"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn malformed_trace_row_names_the_line() {
    let tmp = common::tempdir();
    std::fs::write(
        tmp.path().join("t.csv"),
        "arrival_time,prompt_tokens,output_tokens\n0,10,5\n1,ten,5\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("frag.toml"),
        experiment("file:t.csv", "budget_tokens = 512", ""),
    )
    .unwrap();
    for cmd in [vec!["validate", "frag.toml"], vec!["frag.toml", "--out", "o"]] {
        let o = runner(&cmd, tmp.path());
        assert!(!o.status.success(), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains("line 3") && t.contains("`ten`") && !t.contains("panicked"), "{t}");
    }
}

#[test]
fn too_long_requests_are_recorded_as_rejections() {
    let tmp = common::tempdir();
    std::fs::write(
        tmp.path().join("t.csv"),
        "arrival_time,prompt_tokens,output_tokens\n0,10,5\n0,100,100\n1,20,4\n",
    )
    .unwrap();
    let toml = experiment("file:t.csv", "budget_tokens = 512", "max_seq_len = 64");
    std::fs::write(tmp.path().join("frag.toml"), toml).unwrap();
    let o = runner(&["frag.toml", "--out", "o", "-q"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let csv = tmp.path().join("o/frag/fragmentation.csv");
    assert_eq!(column(&csv, "rejected_too_long"), vec!["1"; 4]);
    assert_eq!(column(&csv, "completed"), vec!["2"; 4]);
}

#[test]
fn budget_smaller_than_a_request_is_an_error_or_a_rejection() {
    let tmp = common::tempdir();
    std::fs::write(
        tmp.path().join("t.csv"),
        "arrival_time,prompt_tokens,output_tokens\n0,10,5\n0,100,100\n",
    )
    .unwrap();
    // 64 tokens: reserve-max (max_seq_len 128) can never fit a request; exact fits the small one.
    let toml = experiment("file:t.csv", "budget_tokens = 64", "max_seq_len = 256");
    std::fs::write(tmp.path().join("frag.toml"), &toml).unwrap();
    let o = runner(&["frag.toml", "--out", "o", "-q"], tmp.path());
    let t = text(&o);
    assert!(!t.contains("panicked"), "{t}");
    if o.status.success() {
        let csv = tmp.path().join("o/frag/fragmentation.csv");
        let never: Vec<String> = column(&csv, "rejected_never_fits");
        assert_eq!(never[never.len() - 4..].to_vec()[..1], ["2".to_string()], "{never:?}");
    } else {
        assert!(t.contains("smaller than"), "{t}");
    }
    // A budget below one block is an error naming the run, not a panic or a hang.
    let toml = experiment("file:t.csv", "budget_bytes = 100", "");
    std::fs::write(tmp.path().join("frag.toml"), &toml).unwrap();
    let o = runner(&["frag.toml", "--out", "p", "-q"], tmp.path());
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("smaller than") && t.contains("run fragmentation"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn budget_must_be_given_once() {
    let tmp = common::tempdir();
    std::fs::write(tmp.path().join("frag.toml"), experiment("chat", "", "")).unwrap();
    let o = runner(&["validate", "frag.toml"], tmp.path());
    assert!(!o.status.success() && text(&o).contains("budget_tokens"), "{}", text(&o));
    let toml = experiment("chat", "budget_tokens = 64\nbudget_bytes = 64", "");
    std::fs::write(tmp.path().join("frag.toml"), toml).unwrap();
    let o = runner(&["validate", "frag.toml"], tmp.path());
    assert!(!o.status.success() && text(&o).contains("exactly one"), "{}", text(&o));
}

/// Sharing, swap and the cost model through the runner: a run per trace kind and mode, the
/// report's sharing and preemption sections, and each bad key named by `validate`.
#[test]
fn sharing_swap_and_cost_profiles_run_and_bad_keys_are_named() {
    let tmp = common::tempdir();
    let f = tmp.path().join("frag.toml");
    let sweep = "budget_tokens = [512]\ntrace_kind = [\"system-prompt\", \"samples\"]\n\
                 sharing = [\"off\", \"on\"]\npreemption = [\"recompute\", \"swap\"]\n\
                 swap_tokens = [4096]\ncost = [\"slow\"]";
    let extra = "requests = 30\nmax_seq_len = 1024\nprefix_tokens = 64\n\
                 [workload.fragmentation.cost.slow]\ndecode_step_ms = 10\n\
                 prefill_tok_per_s = 1000\nswap_gb_per_s = 1\nswap_block_us = 5";
    std::fs::write(&f, experiment("chat", sweep, extra)).unwrap();
    let o = runner(&["frag.toml", "--out", "a", "-q", "--only", "policy=paged"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("a/frag");
    let csv = dir.join("fragmentation.csv");
    let saved = column(&csv, "sharing_saved_pct");
    let sharing = column(&csv, "sharing");
    assert!(
        saved.iter().zip(&sharing).all(|(s, on)| (on == "on") == (s.parse::<f64>().unwrap() > 0.0)),
        "{saved:?} {sharing:?}"
    );
    assert!(column(&csv, "ttft_s_p99").iter().all(|v| v.parse::<f64>().unwrap() > 0.0));
    let swaps = column(&csv, "swap_outs");
    let modes = column(&csv, "preemption");
    assert!(swaps.iter().zip(&modes).any(|(n, m)| m == "swap" && n != "0"), "{swaps:?}");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("## Shared prefixes") && report.contains("## Preemption"), "{report}");

    for (bad, named) in [
        ("cost = [\"fast\"]", "sweep.cost = \"fast\": no [workload.fragmentation.cost.fast]"),
        ("prompt_tokens = [0]", "prompt_tokens"),
        ("sharing = [\"yes\"]", "sharing"),
    ] {
        let sweep = format!("budget_tokens = [512]\n{bad}");
        std::fs::write(&f, experiment("chat", &sweep, extra.split_once("prefix").unwrap().0))
            .unwrap();
        let o = runner(&["validate", "frag.toml"], tmp.path());
        assert!(!o.status.success() && text(&o).contains(named), "{bad}: {}", text(&o));
    }
    let bad_cost = extra.replace("swap_gb_per_s = 1", "swap_gb_per_s = 0");
    std::fs::write(&f, experiment("system-prompt", "budget_tokens = [512]", &bad_cost)).unwrap();
    let o = runner(&["validate", "frag.toml"], tmp.path());
    assert!(
        text(&o)
            .contains("workload.fragmentation.cost.slow.swap_gb_per_s = 0: expected a number > 0"),
        "{}",
        text(&o)
    );
    std::fs::write(&f, experiment("chat", "budget_tokens = [512]", "prefix_tokens = 64")).unwrap();
    let o = runner(&["validate", "frag.toml"], tmp.path());
    assert!(
        text(&o).contains("prefix_tokens: read by trace = \"system-prompt\" only"),
        "{}",
        text(&o)
    );
}

/// A keep-policy on the paged pool runs (stranded columns and series, the report's section),
/// and the sweeps it cannot run are named by `validate`.
#[test]
fn keep_policies_on_the_pool_run_and_impossible_sweeps_are_named() {
    let tmp = common::tempdir();
    let f = tmp.path().join("frag.toml");
    let exp = |sweep: &str, extra: &str| {
        experiment("long-output", sweep, extra)
            .replace("policy = [\"reserve-max\", \"reserve-exact\", \"paged\"]\n", "")
    };
    let sweep = "policy = [\"paged\"]\nbudget_tokens = [1024]\nevict = [\"window\", \"sink\", \"shift-window\"]\n\
                 keep_tokens = [64]\ncompaction = [\"off\", \"on\"]";
    std::fs::write(&f, exp(sweep, "requests = 20\nmax_seq_len = 2048")).unwrap();
    let o = runner(&["frag.toml", "--out", "a", "-q"], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("a/frag");
    let stranded = column(&dir.join("fragmentation.csv"), "stranded_pct");
    assert!(stranded.iter().any(|v| v.parse::<f64>().unwrap() > 0.0), "{stranded:?}");
    assert!(!column(&dir.join("fragmentation_series.csv"), "stranded_blocks").is_empty());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("## Keep-policies on the paged pool"), "{report}");

    for (sweep, named) in [
        (
            "policy = [\"reserve-exact\", \"paged\"]\nbudget_tokens = [1024]\nevict = [\"window\"]\nkeep_tokens = [64]",
            "a keep-policy evicts from paged memory only",
        ),
        (
            "policy = [\"paged\"]\nbudget_tokens = [1024]\nevict = [\"window\"]",
            "needs sweep.keep_tokens",
        ),
        (
            "policy = [\"paged\"]\nbudget_tokens = [1024]\nevict = [\"sink\"]\nkeep_tokens = [4]",
            "sweep.keep_tokens = 4: keep-policy `sink` on the paged pool: sink_tokens = 4",
        ),
        (
            "policy = [\"paged\"]\nbudget_tokens = [1024]\nevict = [\"h2o\"]\nkeep_tokens = [64]",
            "expected one of off, window, shift-window, sink",
        ),
        (
            "policy = [\"paged\"]\nbudget_tokens = [1024]\nevict = [\"window\"]\nkeep_tokens = [64]\nsharing = [\"on\"]",
            "runs without sharing and with recompute preemption",
        ),
    ] {
        std::fs::write(&f, exp(sweep, "requests = 20")).unwrap();
        let o = runner(&["validate", "frag.toml"], tmp.path());
        assert!(!o.status.success() && text(&o).contains(named), "{sweep}: {}", text(&o));
    }
}

/// A machine without fonts cannot draw the report: the run still swaps its finished CSVs in,
/// exits non-zero, and says how to draw the report later.
#[test]
fn a_report_that_cannot_be_drawn_keeps_the_rows() {
    let tmp = common::tempdir();
    let conf = tmp.path().join("fonts.conf");
    let cache = tmp.path().join("fccache");
    std::fs::write(
        &conf,
        format!(
            "<?xml version=\"1.0\"?><fontconfig><cachedir>{}</cachedir></fontconfig>",
            cache.display()
        ),
    )
    .unwrap();
    let f = tmp.path().join("frag.toml");
    let extra = "requests = 10\nmax_seq_len = 512";
    std::fs::write(&f, experiment("chat", "budget_tokens = [1024]", extra)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["frag.toml", "--out", "a", "-q"])
        .current_dir(tmp.path())
        .env("FONTCONFIG_FILE", &conf)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("its CSVs are in") && text(&o).contains("runner report"),
        "{}",
        text(&o)
    );
    let rows = column(&tmp.path().join("a/frag/fragmentation.csv"), "policy");
    assert_eq!(rows.len(), 4, "every run's row is in the results");
}

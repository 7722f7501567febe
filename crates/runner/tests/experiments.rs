//! Experiment files: the sweep's pinned order, validation messages, shipped files.

use runner::experiment::{self, Invalid};
use runner::sweep::Workload;

const BASE: &str = r#"
[experiment]
name = "t"
question = "q?"
model = "seed-toy"
"#;

fn parse(extra: &str) -> Result<experiment::Experiment, Invalid> {
    experiment::parse("t.toml", &format!("{BASE}{extra}"), None)
}

fn error(extra: &str) -> String {
    match parse(extra) {
        Ok(_) => panic!("expected a validation error for:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn expansion_order_is_pinned_and_inapplicable_keys_are_not_multiplied() {
    let e = parse(
        r#"
[strategy]
sink_tokens = 2

[sweep]
strategy = ["concat", "window", "sink"]
cache_tokens = [8, 4]
batch = [1, 2]
context = [16]

[workload.memory]
"#,
    )
    .unwrap();
    let ids: Vec<String> = e.runs(Workload::Memory).iter().map(|r| r.id("flex")).collect();
    let p = "backend=flex;model=seed-toy;strategy=";
    let expected: Vec<String> = [
        "concat;batch=1;context=16",
        "concat;batch=2;context=16",
        "window;cache_tokens=8;batch=1;context=16",
        "window;cache_tokens=8;batch=2;context=16",
        "window;cache_tokens=4;batch=1;context=16",
        "window;cache_tokens=4;batch=2;context=16",
        "sink;cache_tokens=8;sink_tokens=2;batch=1;context=16",
        "sink;cache_tokens=8;sink_tokens=2;batch=2;context=16",
        "sink;cache_tokens=4;sink_tokens=2;batch=1;context=16",
        "sink;cache_tokens=4;sink_tokens=2;batch=2;context=16",
    ]
    .iter()
    .map(|s| format!("{p}{s}"))
    .collect();
    assert_eq!(ids, expected);
    // Columns that do not apply stay empty.
    let concat = &e.runs(Workload::Memory)[0];
    assert_eq!(concat.get("cache_tokens"), None);
    assert_eq!(concat.get("sink_tokens"), None);
}

#[test]
fn every_shipped_experiment_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let e = experiment::load(&path, None).unwrap_or_else(|e| panic!("{e}"));
            assert!(!e.file.experiment.question.is_empty());
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("# experiments/"), "{}: header comment", path.display());
            n += 1;
        }
    }
    for name in ["seed", "smoke", "gqa", "window", "sink", "paged", "quant"] {
        assert!(
            std::path::Path::new(dir).join(format!("{name}.toml")).is_file(),
            "experiments/{name}.toml"
        );
    }
    assert!(n >= 7);
}

#[test]
fn unknown_keys_are_named() {
    let e = error("[sweep]\ncache_tokenz = [1]\n[workload.memory]\n");
    assert!(e.contains("t.toml") && e.contains("sweep.cache_tokenz: unknown key"), "{e}");
    let e = error("[workload.memory]\nfoo = 1\n");
    assert!(e.contains("t.toml") && e.contains("unknown field `foo`"), "{e}");
    let e = error("[strategy]\nbitz = 4\n[workload.memory]\n");
    assert!(e.contains("strategy.bitz: unknown key"), "{e}");
}

#[test]
fn wrong_types_are_named() {
    let e = error("[sweep]\ncontext = [16, \"x\"]\n[workload.memory]\n");
    assert!(e.contains("sweep.context[1] = \"x\": expected an integer ≥ 1"), "{e}");
    let e = error("[sweep]\nstrategy = [\"concat\", \"lru\"]\ncontext = [4]\n[workload.memory]\n");
    assert!(e.contains("sweep.strategy[1] = \"lru\": expected a strategy kind"), "{e}");
    // Typed sections: toml's message shows the offending line with the key.
    let e = error("[workload.throughput]\nrepeats = \"three\"\n");
    assert!(e.contains("repeats") && e.contains("invalid type"), "{e}");
}

#[test]
fn out_of_range_values_are_named() {
    let e = error(
        "[sweep]\ncache_tokens = [8, 4, 0]\nstrategy = [\"window\"]\n[workload.perplexity]\n",
    );
    assert!(e.contains("sweep.cache_tokens[2] = 0: expected an integer ≥ 1"), "{e}");
    let e = error("[sweep]\ncontext = [4]\n[workload.throughput]\nrepeats = 0\n");
    assert!(e.contains("workload.throughput.repeats = 0"), "{e}");
    let e = error("[workload.perplexity]\nmode = \"chunked\"\nchunk = 8\ndraws = 3\n");
    assert!(e.contains("workload.perplexity.draws = 3: only read by mode = \"streaming\""), "{e}");
    let e = error("[workload.perplexity]\ndraws = 1000000000000\n");
    assert!(e.contains("workload.perplexity.draws = 1000000000000: at most 100"), "{e}");
    let e = error("[workload.perplexity]\ndraws = 3\ndraw_scale = -1.0\n");
    assert!(e.contains("workload.perplexity.draw_scale = -1: expected a number > 0"), "{e}");
    let e = error(
        "[sweep]\nstrategy = [\"static\"]\nbits = [4]\nkey_bits = [32]\nquery_bits = [8]\n\
         [workload.perplexity]\n",
    );
    assert!(e.contains("query_bits = 8") && e.contains("these keys are f32"), "{e}");
}

#[test]
fn impossible_combinations_name_the_run() {
    let e = error(
        "[sweep]\nstrategy = [\"sink\"]\ncache_tokens = [8, 4]\nsink_tokens = [4]\n\
         [workload.perplexity]\n",
    );
    assert!(e.contains("run perplexity#1 ([seed-toy] sink cache_tokens=4 sink_tokens=4)"), "{e}");
    assert!(e.contains("sink_tokens = 4: must be < cache_tokens = 4"), "{e}");
    assert!(!e.contains("perplexity#0"), "{e}");
    let e = error("[sweep]\nstrategy = [\"window\"]\n[workload.perplexity]\n");
    assert!(e.contains("cache_tokens = missing"), "{e}");
}

#[test]
fn axes_nobody_reads_and_missing_context_are_errors() {
    let e = error("[sweep]\ncontext = [4]\n[workload.perplexity]\n");
    assert!(e.contains("sweep.context: no workload of this experiment reads it"), "{e}");
    let e = error("[workload.memory]\n");
    assert!(e.contains("sweep.context: required by workload.memory"), "{e}");
}

#[test]
fn a_block_format_runs_only_under_its_own_bits() {
    let e = parse(
        r#"
[sweep]
strategy = ["static"]
bits = [8, 4]
scheme = ["symmetric", "q8_0", "q4_0", "q4_1"]

[workload.perplexity]
"#,
    )
    .unwrap();
    let schemes: Vec<String> = e
        .runs(Workload::Perplexity)
        .iter()
        .map(|r| format!("{}:{}", r.usize("bits").unwrap(), r.get("scheme").unwrap()))
        .collect();
    assert_eq!(schemes, ["8:symmetric", "8:q8_0", "4:symmetric", "4:q4_0", "4:q4_1"]);
    // A format whose width is never swept would run nothing: named, not silently dropped.
    let e = error(
        "[sweep]\nstrategy = [\"static\"]\nbits = [4]\nscheme = [\"q8_0\", \"q4_0\"]\n\
         [workload.perplexity]\n",
    );
    assert!(e.contains("sweep.scheme = \"q8_0\": a 8-bit format, but bits never takes 8"), "{e}");
    assert!(!e.contains("q4_0"), "{e}");
    // A single [strategy] value that contradicts is an error of the run, naming the key.
    let e = error(
        "[strategy]\nkind = \"static\"\nbits = 8\nscheme = \"q4_1\"\n[workload.perplexity]\n",
    );
    assert!(e.contains("bits never takes 4"), "{e}");
}

#[test]
fn only_for_sweeps_a_parameter_for_the_listed_kinds_alone() {
    let e = parse(
        r#"
[sweep]
strategy = ["static", "window"]
cache_tokens = [8]
bits = [32, 8]

[sweep.only_for]
bits = ["static"]

[workload.perplexity]
"#,
    )
    .unwrap();
    let ids: Vec<String> = e.runs(Workload::Perplexity).iter().map(|r| r.id("flex")).collect();
    let p = "backend=flex;model=seed-toy;strategy=";
    let expected: Vec<String> = ["static;bits=32", "static;bits=8", "window;cache_tokens=8"]
        .iter()
        .map(|s| format!("{p}{s}"))
        .collect();
    assert_eq!(ids, expected);
    let e = error(
        "[sweep]\ncontext = [4]\n[sweep.only_for]\ncontext = [\"static\"]\n[workload.memory]\n",
    );
    assert!(e.contains("sweep.only_for.context: not a strategy parameter"), "{e}");
    let e = error("[sweep.only_for]\nbits = [\"lru\"]\n[workload.memory]\n");
    assert!(e.contains("sweep.only_for.bits[0] = \"lru\": expected a strategy kind"), "{e}");
}

#[test]
fn also_adds_points_the_main_product_cannot_express() {
    let e = parse(
        r#"
[sweep]
strategy = ["concat", "static"]
bits = [32, 8]

[sweep.only_for]
bits = ["static"]

# q4_0 at 4 bits alone, and a repeat of a main point (kept once).
[[sweep.also]]
strategy = ["static"]
bits = [4, 8]
scheme = ["q4_0"]

[workload.perplexity]
"#,
    )
    .unwrap();
    let ids: Vec<String> = e.runs(Workload::Perplexity).iter().map(|r| r.id("flex")).collect();
    let p = "backend=flex;model=seed-toy;strategy=";
    let expected: Vec<String> =
        ["concat", "static;bits=32", "static;bits=8", "static;bits=4;scheme=q4_0"]
            .iter()
            .map(|s| format!("{p}{s}"))
            .collect();
    assert_eq!(ids, expected);

    // Only strategy axes may be replaced; an entry must add a run; a format needs its bits.
    let e = error("[[sweep.also]]\ncontext = [4]\n[workload.memory]\n");
    assert!(e.contains("sweep.also[0].context: unknown key (allowed: strategy, "), "{e}");
    let e = error(
        "[sweep]\nstrategy = [\"static\"]\n[[sweep.also]]\nstrategy = [\"static\"]\n\
         [workload.perplexity]\n",
    );
    assert!(e.contains("sweep.also[0]: adds no run the main sweep does not already have"), "{e}");
    let e = error(
        "[[sweep.also]]\nstrategy = [\"static\"]\nbits = [8]\nscheme = [\"q4_0\"]\n\
         [workload.perplexity]\n",
    );
    assert!(e.contains("sweep.also[0].scheme = \"q4_0\": a 4-bit format, but bits never"), "{e}");
    let e = error("[sweep]\nalso = 3\n[workload.memory]\n");
    assert!(e.contains("sweep.also = 3: expected [[sweep.also]] tables"), "{e}");
}

#[test]
fn a_toml_error_is_one_line_naming_line_and_column() {
    // Fuzz input: an empty file (toml's own message adds a snippet under a caret, four lines).
    let e = experiment::parse("t.toml", "", None).unwrap_err().0;
    assert_eq!(e, ["t.toml: line 1, column 1 (``): missing field `experiment`"]);
    let e = error("[workload.memory]\nfoo = 1\n");
    assert!(!e.contains('\n') && e.contains("column 1 (`foo = 1`): unknown field `foo`"), "{e}");
}

#[test]
fn a_key_holding_a_newline_stays_on_one_line() {
    let e = parse("[strategy]\n\"bits\\nx\" = 4\n[workload.memory]\n").unwrap_err().0;
    assert!(e[0].contains("strategy.bits\\nx: unknown key"), "{e:?}");
    assert!(e.iter().all(|line| !line.contains('\n')), "{e:?}");
}

//! The passkey retrieval workload on SmolLM2-135M: haystacks of exact length with the needle
//! where the depth says, a run end to end (the full cache retrieves, a window retrieves only
//! what it still holds), and bad input refused by `validate` with the key and value named.

mod common;

use common::{failed, ok, runner, tempdir};
use runner::experiment::RetrievalParams;
use runner::model::ModelSource;
use runner::workloads::haystack::HaystackKind;
use runner::workloads::retrieval::haystacks;

fn params(haystack: HaystackKind) -> RetrievalParams {
    toml::from_str::<RetrievalParams>(&format!("haystack = \"{}\"", haystack.name())).unwrap()
}

#[test]
fn haystacks_have_their_length_and_the_needle_at_its_depth() {
    for kind in [HaystackKind::Corpus, HaystackKind::Filler] {
        let h = haystacks(&params(kind), "smollm2-135m", &ModelSource::default(), 0, 1024).unwrap();
        let mut last_start = 0;
        for depth in [0, 10, 50, 90, 100] {
            let case = h.case(1024, depth, 0).unwrap();
            assert_eq!(case.prompt().len(), 1024, "{kind:?} depth {depth}");
            let needle = h.tokenizer().decode(&case.context[case.needle.clone()]).unwrap();
            assert!(needle.contains(&format!("The pass key is {}.", case.key)), "{needle:?}");
            assert!((10_000..100_000).contains(&case.key));
            // The needle moves down the haystack with the depth.
            assert!(case.needle.start >= last_start, "{kind:?} depth {depth}");
            last_start = case.needle.start;
            let question = h.tokenizer().decode(&case.question).unwrap();
            assert!(question.ends_with("The pass key is"), "{question:?}");
            // Seeded: the same case again.
            assert_eq!(h.case(1024, depth, 0).unwrap(), case);
        }
        let top = h.case(1024, 0, 0).unwrap();
        let bottom = h.case(1024, 100, 0).unwrap();
        let intro = h.tokenizer().decode(&top.context[..top.needle.start]).unwrap();
        assert!(intro.ends_with("I will ask you for the pass key.\n\n"), "{intro:?}");
        assert_eq!(bottom.needle.end, bottom.context.len(), "depth 100: right before the question");
        // Samples of a length differ in their key (and, for the corpus, their text).
        assert_ne!(h.case(1024, 50, 0).unwrap().key, h.case(1024, 50, 1).unwrap().key);
    }
}

#[test]
fn the_full_cache_retrieves_and_a_window_only_what_it_keeps() {
    let dir = tempdir();
    let toml = dir.path().join("retrieval.toml");
    std::fs::write(
        &toml,
        r#"[experiment]
name = "retrieval-test"
question = "Does a 128-token window forget a needle at the start of 256 tokens?"
model = "smollm2-135m"
weights = "pretrained"

[sweep]
strategy = ["concat", "window"]
cache_tokens = [128]
context = [256]

[workload.retrieval]
depths = [0, 100]
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    ok(&runner(&[toml.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"], dir.path()));
    let results = out.join("retrieval-test");
    let cases = std::fs::read_to_string(results.join("retrieval_cases.csv")).unwrap();
    let rows: Vec<&str> = cases.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{cases}");
    let correct = |row: &str| row.split(',').rev().nth(1) == Some("true");
    let (full, window): (Vec<&str>, Vec<&str>) =
        rows.iter().partition(|r| r.contains("strategy=concat"));
    assert!(full.iter().all(|r| correct(r)), "the full cache retrieves at both depths:\n{cases}");
    // Depth 0: the needle is 100+ tokens before the window's last 128.
    let shallow = window.iter().find(|r| r.contains(",256,0,0,")).unwrap();
    assert!(!correct(shallow) && shallow.contains(",0.0,"), "{shallow}");
    let deep = window.iter().find(|r| r.contains(",256,100,0,")).unwrap();
    assert!(correct(deep) && deep.contains(",100.0,"), "{deep}");
    let report = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(report.contains("wholly outside the kept tokens (length@depth: 256@0%)"), "{report}");
    assert!(results.join("charts/retrieval_heatmap_0.svg").is_file());

    // The question fed after the prefilled context: a full cache answers the same.
    let text = std::fs::read_to_string(&toml).unwrap() + "question = \"after\"\n";
    std::fs::write(&toml, text).unwrap();
    let after = dir.path().join("after");
    let args = [toml.to_str().unwrap(), "--out", after.to_str().unwrap(), "--quiet"];
    ok(&runner(&[&args[..], &["--only", "strategy=concat"]].concat(), dir.path()));
    let after = std::fs::read_to_string(after.join("retrieval-test/retrieval_cases.csv")).unwrap();
    let answers = |csv: &str| -> Vec<String> {
        csv.lines()
            .filter(|l| l.contains("strategy=concat"))
            .map(|l| l.split(',').skip(9).take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(answers(&after), answers(&cases), "key, answer, correct");
}

#[test]
fn bad_retrieval_input_is_refused_by_validate() {
    let dir = tempdir();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "To be, or not to be, that is the question.\n".repeat(20)).unwrap();
    let cases = [
        ("context = [40000]", "", "sweep.context = 40000"),
        ("context = [512]", "depths = [50, 120]", "workload.retrieval.depths[1] = 120"),
        (
            "context = [1024]",
            &format!("corpus = \"file:{}\"", short.display()) as &str,
            "sweep.context = 1024 with workload.retrieval.corpus",
        ),
    ];
    for (sweep, workload, needle) in cases {
        let toml = dir.path().join("bad.toml");
        std::fs::write(
            &toml,
            format!(
                "[experiment]\nname = \"bad\"\nquestion = \"q\"\nmodel = \"smollm2-135m\"\n\
                 weights = \"pretrained\"\n[sweep]\nstrategy = [\"concat\"]\n{sweep}\n\
                 [workload.retrieval]\n{workload}\n"
            ),
        )
        .unwrap();
        let err = failed(&runner(&["validate", toml.to_str().unwrap()], dir.path()));
        assert!(err.contains(needle), "{sweep} {workload}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

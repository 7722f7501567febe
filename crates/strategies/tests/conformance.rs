//! The conformance suite: every kind in the registry, with nothing written here for any one of
//! them — a new entry is run by adding it. Each kind, on the article's toy model (GQA, 2 KV heads
//! for 4 query heads), batch 2:
//! - with room for every token, decoding equals recomputation (logits within 1e-4);
//! - its f32 bytes equal the formula `2 · layers · rows · kv_heads · head_dim · 4 · slots`, with
//!   `slots` what the kind holds (computed here from what it is, not read back from it), and
//!   what is live equals the same formula over the tokens kept;
//! - a step that does not fit is refused and changes nothing: the cache's bytes are as before,
//!   and decoding on from it gives the logits of a twin that never tried;
//! - its bad parameters are refused with an error naming the key.

mod common;
#[path = "conformance/readme_example.rs"]
mod readme_example;

use common::{B, assert_close, prompts, run, toy_model};
use kvlab_model::generate::{Sampling, generate};
use kvlab_model::model::tokens_tensor;
use kvlab_model::{KvCache, ModelConfig, NoCache};
use kvlab_strategies::PagedCache;
use kvlab_strategies::entry::Holds;
use kvlab_strategies::evict::policy::Scope;
use kvlab_strategies::{StrategyKind, StrategySpec};

const PROMPT: usize = 10;
const STEPS: usize = 8;
const BATCH: usize = 2;
const BLOCK: usize = 4;

/// `kind` with a budget of `budget` tokens: every parameter it reads gets a value from its key.
/// A kind with a parameter not known here fails with its name (give it a value below).
fn spec_with(kind: StrategyKind, budget: usize) -> StrategySpec {
    let mut spec = StrategySpec::new(kind);
    for param in kind.entry().parameters {
        match param.key {
            "cache_tokens" => spec.cache_tokens = Some(budget),
            "block_size" => spec.block_size = Some(BLOCK),
            "sink_tokens" => spec.sink_tokens = Some(2),
            "window" => spec.window = Some(2),
            "recent" => spec.recent = Some(budget / 2),
            "kernel" => spec.kernel = Some(3),
            other => assert!(
                param.default.is_some(),
                "{kind}: give the required parameter '{other}' a value in spec_with"
            ),
        }
    }
    spec.validate().unwrap_or_else(|e| panic!("{kind}: spec_with made an invalid spec: {e}"));
    spec
}

fn build(spec: &StrategySpec, config: &ModelConfig, max_seq: usize) -> Box<dyn KvCache<B>> {
    spec.build::<B>(config, BATCH, max_seq, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", spec.kind))
}

#[test]
fn every_kind_with_room_for_every_token_equals_recompute() {
    let (config, model) = toy_model(2);
    let prompts = prompts(BATCH, PROMPT);
    let (want_tokens, want) = run(&model, &mut NoCache::new(BATCH), &prompts, STEPS);
    for kind in StrategyKind::all() {
        let mut cache = build(&spec_with(kind, PROMPT + STEPS), &config, PROMPT + STEPS);
        let (tokens, got) = run(&model, cache.as_mut(), &prompts, STEPS);
        assert_eq!(tokens, want_tokens, "{kind}: greedy tokens differ from recomputation");
        assert_close(kind.name(), &got, &want);
    }
}

/// Slots per row the kind allocates for `max_seq` tokens and a budget of `budget`.
fn slots_per_row(spec: &StrategySpec, max_seq: usize, budget: usize, seen: usize) -> usize {
    match spec.kind.entry().holds {
        Holds::Nothing => 0,
        // Grown to what it has seen.
        Holds::Concat => seen,
        Holds::Static => max_seq,
        // The pool's blocks shared by the rows, per row.
        Holds::Paged => PagedCache::<B>::blocks_for(BATCH, max_seq, BLOCK) * BLOCK / BATCH,
        // Every-step policies hold their budget; a prompt policy holds the prompt until it cuts.
        Holds::Policy(_) => match spec.probe_policy().map(|p| p.scope()) {
            Some(Scope::Prompt) => max_seq.max(budget),
            _ => budget,
        },
    }
}

#[test]
fn every_kind_holds_the_bytes_of_the_formula() {
    let (config, model) = toy_model(2);
    let (max_seq, budget) = (PROMPT + STEPS, PROMPT + STEPS);
    // One f32 K and V slot per row, over every layer: 2 · layers · kv_heads · head_dim · 4.
    let per_slot = 2 * config.n_layers * config.n_kv_heads * config.head_dim * 4;
    for kind in StrategyKind::all() {
        let spec = spec_with(kind, budget);
        let mut cache = build(&spec, &config, max_seq);
        run(&model, cache.as_mut(), &prompts(BATCH, PROMPT), STEPS);
        // The last sampled token is never fed.
        let seen = PROMPT + STEPS - 1;
        let memory = cache.memory();
        let slots = slots_per_row(&spec, max_seq, budget, seen);
        assert_eq!(memory.allocated_bytes, BATCH * slots * per_slot, "{kind}: allocated bytes");
        // With room, a cache keeps every token it saw (recomputation keeps none).
        let kept = if matches!(kind.entry().holds, Holds::Nothing) { 0 } else { seen };
        assert_eq!(memory.live_bytes, BATCH * kept * per_slot, "{kind}: live bytes");
    }
}

/// Logits of `steps` greedy steps after `prompts` have been fed to `cache`.
fn decode_on(
    model: &kvlab_model::Model<B>,
    cache: &mut dyn KvCache<B>,
    prompts: &[Vec<u32>],
    steps: usize,
) -> Vec<Vec<f32>> {
    let mut logits = Vec::new();
    generate(model, cache, prompts, steps, &Sampling::Greedy, |s| {
        logits.push(s.logits.clone().into_data().to_vec::<f32>().unwrap());
    })
    .unwrap();
    logits
}

#[test]
fn a_step_that_does_not_fit_changes_nothing() {
    let (config, model) = toy_model(2);
    // 8 tokens per row at most (a budget of 6 for the keep-policies); 4 seen, then 5 at once.
    let (max_seq, budget, seen, step) = (8, 6, 4, 5);
    let prompt = prompts(BATCH, seen);
    let device = Default::default();
    let mut refused = 0;
    for kind in StrategyKind::all() {
        let spec = spec_with(kind, budget);
        let mut cache = build(&spec, &config, max_seq);
        let mut twin = build(&spec, &config, max_seq);
        for c in [&mut cache, &mut twin] {
            kvlab_model::generate::feed_pending(&model, c.as_mut(), &prompt, &device).unwrap();
        }
        let before = cache.memory();
        let too_many = prompts(BATCH, step);
        let rows: Vec<&[u32]> = too_many.iter().map(|r| r.as_slice()).collect();
        if model.forward_last(tokens_tensor(&rows, &device), cache.as_mut()).is_ok() {
            // Only a cache without a bound may take it.
            assert!(
                matches!(kind.entry().holds, Holds::Nothing | Holds::Concat),
                "{kind}: took {step} tokens after {seen} with room for {max_seq} (budget {budget})"
            );
            continue;
        }
        refused += 1;
        assert_eq!(cache.memory(), before, "{kind}: a refused step changed the cache's bytes");
        // Both go on from the same 4 tokens with a fifth (prompts extend one another): the
        // refused step left no trace in what they read.
        let longer = prompts(BATCH, seen + 1);
        let got = decode_on(&model, cache.as_mut(), &longer, 2);
        let want = decode_on(&model, twin.as_mut(), &longer, 2);
        assert_close(&format!("{kind} after a refused step"), &got, &want);
    }
    let bounded = StrategyKind::all()
        .filter(|k| !matches!(k.entry().holds, Holds::Nothing | Holds::Concat))
        .count();
    assert_eq!(refused, bounded, "every bounded kind refuses the step");
}

#[test]
fn bad_parameters_are_refused_naming_the_key() {
    for kind in StrategyKind::all() {
        for param in kind.entry().parameters {
            let mut spec = spec_with(kind, 16);
            let key = param.key;
            // Each kind's parameters are fields of the spec: clear or zero one through serde,
            // so this test needs no line per parameter.
            let mut json = serde_json::to_value(&spec).unwrap();
            if param.default.is_none() {
                json[key] = serde_json::Value::Null;
                spec = serde_json::from_value(json.clone()).unwrap();
                let err = spec.validate().expect_err(&format!("{kind}: {key} missing accepted"));
                assert!(err.to_string().starts_with(&format!("{key} = missing")), "{kind}: {err}");
            }
            if param.min >= 1 {
                json[key] = 0.into();
                spec = serde_json::from_value(json).unwrap();
                let err = spec.validate().expect_err(&format!("{kind}: {key} = 0 accepted"));
                assert!(err.to_string().starts_with(&format!("{key} = 0")), "{kind}: {err}");
                let config = ModelConfig::seed_toy();
                assert!(spec.build::<B>(&config, 1, 8, &Default::default()).is_err());
            }
        }
    }
    let unknown = "no-such-kind".parse::<StrategyKind>().unwrap_err().to_string();
    for kind in StrategyKind::all() {
        assert!(unknown.contains(kind.name()), "the unknown-kind error lists {kind}: {unknown}");
    }
}

//! Validation of an experiment file: every key, every value and every run checked before
//! anything runs; every message names the file, the key and the value.

use std::path::PathBuf;

use super::invalid::Invalid;
use super::schema::{ExperimentFile, RetrievalParams};
use super::sweep_table;
use super::validate_fragmentation::check_fragmentation;
use super::validate_perplexity::check_perplexity;
use super::validated::Experiment;
use crate::workloads::haystack::HaystackKind;
use kvlab_model::printable::printable;

use crate::backend::BackendName;
use crate::sweep::{self, AXES, AxisValues, Role, Run, Value, ValueKind, Workload};

/// Validates experiment text; `shown` names it in messages.
pub fn parse(
    shown: &str,
    source: &str,
    backend: Option<BackendName>,
) -> Result<Experiment, Invalid> {
    let file: ExperimentFile = toml::from_str(source)
        .map_err(|e| Invalid(vec![format!("{shown}: {}", toml_error_line(source, &e))]))?;
    let mut errors = vec![];
    // Messages quote keys and values from the file: escaped, each stays one line.
    let mut err = |msg: String| errors.push(format!("{shown}: {}", printable(&msg)));

    let backend = check_header(&file, backend, &mut err);
    let (axes, also) = sweep_axes(&file, &mut err);
    let experiment = Experiment {
        path: PathBuf::from(shown),
        source: source.to_string(),
        file: file.clone(),
        backend,
        axes,
        also,
    };
    let workloads = experiment.workloads();
    check_also_adds(&experiment, &workloads, &mut err);
    check_workload_axes(&experiment, &workloads, &mut err);
    check_workload_params(&experiment, &mut err);
    // Models.
    for m in experiment.axes.get("model").unwrap_or_default() {
        if let Err(why) = crate::model::check(&m.to_string(), file.experiment.weights) {
            // A GGUF's error leads with its path: the model is named once.
            let m = m.to_string();
            let named = if why.contains(&m) { String::new() } else { format!(" {m}") };
            err(format!("model{named}: {why}"));
        }
    }
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }
    check_runs(shown, &experiment, &workloads)?;
    Ok(experiment)
}

/// `[experiment]`'s name and question; returns the backend (`--backend` over the file's).
fn check_header(
    file: &ExperimentFile,
    backend: Option<BackendName>,
    err: &mut impl FnMut(String),
) -> BackendName {
    let ex = &file.experiment;
    if ex.name.is_empty()
        || !ex.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        err(format!(
            "experiment.name = {:?}: expected a non-empty name of letters, digits, '-' and '_' \
         (it names the results directory)",
            ex.name
        ));
    }
    if ex.question.trim().is_empty() {
        err("experiment.question: must state the question the experiment answers".into());
    }
    let backend = backend.or(ex.backend).unwrap_or(BackendName::Flex);
    if let Err(e) = backend.ensure_compiled_in() {
        err(e);
    }
    backend
}

/// The sweep's axis values: `[sweep]` arrays over `[strategy]` defaults over built-in
/// fallbacks; and the `[[sweep.also]]` entries.
fn sweep_axes(
    file: &ExperimentFile,
    err: &mut impl FnMut(String),
) -> (AxisValues, Vec<AxisValues>) {
    let ex = &file.experiment;
    let mut values: Vec<(&'static str, Vec<Value>)> = vec![];
    // [strategy] defaults: single values.
    let mut defaults: Vec<(&'static str, Value)> = vec![];
    for (key, v) in &file.strategy {
        let axis_key = if key == "kind" { "strategy" } else { key.as_str() };
        match sweep::axis_named(axis_key).filter(|a| matches!(a.role, Role::Kind | Role::Strategy))
        {
            None => err(format!(
                "strategy.{key}: unknown key (allowed: kind, {})",
                AXES.iter()
                    .filter(|a| a.role == Role::Strategy)
                    .map(|a| a.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(axis) => match axis.kind.parse(v) {
                Ok(value) => defaults.push((axis.key, value)),
                Err(why) => err(format!("strategy.{key} = {v}: {why}")),
            },
        }
    }
    // [sweep] arrays, only_for and also.
    let parsed = sweep_table::parse_sweep(&file.sweep, err);
    let swept = parsed.swept;
    let only_for = parsed.only_for;
    for axis in AXES {
        let from_sweep = swept.iter().find(|(k, _)| *k == axis.key).map(|(_, v)| v.clone());
        let from_default =
            defaults.iter().find(|(k, _)| *k == axis.key).map(|(_, v)| vec![v.clone()]);
        let fallback = match axis.key {
            "model" => Some(vec![Value::Str(ex.model.clone())]),
            "strategy" => Some(vec![Value::Str("concat".into())]),
            "batch" => Some(vec![Value::Int(1)]),
            "policy" => Some(
                ["reserve-max", "reserve-pow2", "reserve-exact", "paged"]
                    .map(|p| Value::Str(p.into()))
                    .to_vec(),
            ),
            _ => None,
        };
        if let Some(v) = from_sweep.or(from_default).or(fallback) {
            values.push((axis.key, v));
        }
    }
    let axes = AxisValues { values, only_for };
    let also = sweep_table::also_axes(&axes, &parsed.also);
    check_formats_have_bits(&axes, "sweep", err);
    for (i, also) in also.iter().enumerate() {
        check_formats_have_bits(also, &format!("sweep.also[{i}]"), err);
    }
    if let Some(Value::Str(m)) = axes.get("model").and_then(|v| v.first())
        && file.sweep.get("model").is_none()
        && ValueKind::Model.parse(&m.clone().into()).is_err()
    {
        err(format!("experiment.model = {m:?}: expected {}", ValueKind::Model.allowed()));
    }
    (axes, also)
}

/// An `also` entry whose points are all the main sweep's (or all skipped) adds nothing; and
/// an experiment needs a workload.
fn check_also_adds(experiment: &Experiment, workloads: &[Workload], err: &mut impl FnMut(String)) {
    // An `also` entry whose points are all the main sweep's (or all skipped) adds nothing.
    for (i, axes) in experiment.also.iter().enumerate() {
        let main: Vec<Run> =
            workloads.iter().flat_map(|w| sweep::expand(&experiment.axes, *w)).collect();
        let adds = workloads
            .iter()
            .flat_map(|w| sweep::expand(axes, *w))
            .any(|run| !main.iter().any(|m| m.params == run.params && m.workload == run.workload));
        if !adds {
            err(format!("sweep.also[{i}]: adds no run the main sweep does not already have"));
        }
    }
    if workloads.is_empty() {
        err("no workload: add at least one of [workload.walkthrough], [workload.memory], \
         [workload.throughput], [workload.perplexity], [workload.fragmentation], \
         [workload.retrieval]"
            .into());
    }
}

/// Workload axes must be read by some workload; memory/throughput need a context.
fn check_workload_axes(
    experiment: &Experiment,
    workloads: &[Workload],
    err: &mut impl FnMut(String),
) {
    for axis in AXES.iter().filter(|a| a.role == Role::Workload) {
        let readers: Vec<&str> =
            workloads.iter().filter(|w| w.axes().contains(&axis.key)).map(|w| w.name()).collect();
        if experiment.file.sweep.contains_key(axis.key) && readers.is_empty() {
            err(format!(
                "sweep.{}: no workload of this experiment reads it (read by: {})",
                axis.key,
                Workload::ALL
                    .iter()
                    .filter(|w| w.axes().contains(&axis.key))
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if axis.key == "context" && !readers.is_empty() && experiment.axes.get("context").is_none()
        {
            err(format!("sweep.context: required by workload.{}", readers[0]));
        }
    }
}

/// Each configured workload's parameters.
fn check_workload_params(experiment: &Experiment, err: &mut impl FnMut(String)) {
    let w = &experiment.file.workload;
    if let Some(p) = &w.walkthrough {
        if p.prompt_tokens == 0 {
            err("workload.walkthrough.prompt_tokens = 0: expected an integer ≥ 1".into());
        }
        if p.steps == 0 {
            err("workload.walkthrough.steps = 0: expected an integer ≥ 1".into());
        }
    }
    if let Some(p) = &w.throughput {
        for (key, v) in [("decode_tokens", p.decode_tokens), ("repeats", p.repeats)] {
            if v == 0 {
                err(format!("workload.throughput.{key} = 0: expected an integer ≥ 1"));
            }
        }
    }
    if let Some(p) = &w.perplexity {
        check_perplexity(p, err);
    }
    if let Some(p) = &w.retrieval {
        check_retrieval(p, experiment, err);
    }
    if let Some(p) = &w.fragmentation {
        check_fragmentation(p, experiment, err);
    }
}

/// Every run: a valid, buildable strategy that fits the model's positions.
fn check_runs(shown: &str, experiment: &Experiment, workloads: &[Workload]) -> Result<(), Invalid> {
    let mut errors = vec![];
    for workload in workloads {
        for (i, run) in experiment.runs(*workload).iter().enumerate() {
            if let Err(why) = check_run(experiment, run) {
                let line = format!("run {workload}#{i} ({}): {why}", run.label());
                errors.push(format!("{shown}: {}", printable(&line)));
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Invalid(errors)) }
}

/// A TOML syntax or schema error as one line, `line L, column C (`the line`): what`: toml's
/// own text adds the line and a caret under the column on lines of their own.
fn toml_error_line(source: &str, e: &toml::de::Error) -> String {
    let what = printable(e.message().trim_end());
    let Some(start) = e.span().map(|span| span.start).filter(|&s| source.is_char_boundary(s))
    else {
        return what;
    };
    let (before, after) = source.split_at(start);
    let line = before.matches('\n').count() + 1;
    let head = before.rsplit('\n').next().unwrap_or_default();
    let text = format!("{head}{}", after.split('\n').next().unwrap_or_default());
    let column = head.chars().count() + 1;
    format!("line {line}, column {column} (`{}`): {what}", printable(text.trim()))
}

/// The retrieval workload's keys; with a valid model and corpus, whether the corpus holds the
/// longest haystack (tokenized with each model's tokenizer, fetched as a run would fetch it).
fn check_retrieval(p: &RetrievalParams, e: &Experiment, err: &mut impl FnMut(String)) {
    if e.file.experiment.weights != crate::model::Weights::Pretrained {
        err("workload.retrieval: needs weights = \"pretrained\" (random weights retrieve nothing \
             and have no tokenizer)"
            .into());
        return;
    }
    if p.depths.is_empty() {
        err("workload.retrieval.depths = []: expected at least one depth".into());
    }
    for (i, d) in p.depths.iter().enumerate() {
        if *d > 100 {
            err(format!("workload.retrieval.depths[{i}] = {d}: expected a percent in 0..=100"));
        }
    }
    for (key, v) in [("samples", p.samples), ("answer_tokens", p.answer_tokens)] {
        if v == 0 {
            err(format!("workload.retrieval.{key} = 0: expected an integer ≥ 1"));
        }
    }
    if p.haystack == HaystackKind::Corpus
        && let Err(why) = super::schema::check_corpus(&p.corpus)
    {
        err(format!("workload.retrieval.corpus = {:?}: {why}", p.corpus));
        return;
    }
    let lengths: Vec<usize> =
        e.axes.get("context").unwrap_or_default().iter().filter_map(Value::as_usize).collect();
    let source = crate::model::ModelSource::default();
    for m in e.axes.get("model").unwrap_or_default() {
        let m = m.to_string();
        // A haystack beyond the model's positions is named here, not as a short corpus.
        let Ok(config) = crate::model::config_of(&m) else { continue };
        let (fit, beyond): (Vec<usize>, Vec<usize>) =
            lengths.iter().partition(|&&len| len + p.answer_tokens <= config.max_positions);
        for len in beyond {
            err(format!(
                "sweep.context = {len}: a {len}-token haystack and {} answer tokens exceed model \
                 {m:?}'s max_positions = {}",
                p.answer_tokens, config.max_positions
            ));
        }
        let Some(&longest) = fit.iter().max() else { continue };
        let haystacks = crate::workloads::retrieval::haystacks(p, &m, &source, e.seed(), longest);
        match haystacks {
            Err(why) => err(format!("workload.retrieval (model {m:?}): {why:#}")),
            Ok(h) => {
                for len in &fit {
                    if let Err(why) = h.check(*len) {
                        let key = match p.haystack {
                            HaystackKind::Corpus => format!("corpus = {:?}", p.corpus),
                            HaystackKind::Filler => "haystack = \"filler\"".into(),
                        };
                        err(format!("sweep.context = {len} with workload.retrieval.{key}: {why}"));
                    }
                }
            }
        }
    }
}

/// A llama.cpp block format in `scheme` runs only under its own bit width (the sweep skips the
/// others), so a format whose width `bits` never takes would silently run nothing.
fn check_formats_have_bits(axes: &AxisValues, name: &str, err: &mut impl FnMut(String)) {
    let bits: Vec<usize> =
        axes.get("bits").unwrap_or_default().iter().filter_map(Value::as_usize).collect();
    for v in axes.get("scheme").unwrap_or_default() {
        let scheme: Result<kvlab_strategies::quant::Scheme, _> =
            serde_json::from_value(v.to_json());
        if let Ok(Some(b)) = scheme.map(|s| s.fixed_bits())
            && !bits.contains(&(b as usize))
        {
            err(format!(
                "{name}.scheme = \"{v}\": a {b}-bit format, but bits never takes {b} (bits: {bits:?})"
            ));
        }
    }
}

fn check_run(experiment: &Experiment, run: &Run) -> Result<(), String> {
    if run.get("strategy").is_none() {
        return Ok(()); // chunked perplexity: no cache strategy
    }
    let spec = run.spec()?;
    spec.validate().map_err(|e| e.to_string())?;
    if let Some(bits) = spec.bits.filter(|&b| b < 32)
        && !experiment.backend.holds_u8()
    {
        return Err(format!(
            "bits = {bits}: backend {} cannot hold a quantized cache (its shaders have no 8-bit \
             integers for the codes); run quantized caches on flex, ndarray or cuda",
            experiment.backend
        ));
    }
    let config = crate::model::config_of(run.model())?;
    if let Some(k) = spec.kv_heads {
        kvlab_strategies::heads::check_kv_heads(config.n_heads, config.n_kv_heads, k)
            .map_err(|e| e.to_string())?;
    }
    let longest = longest_sequence(experiment, run);
    // Only a policy that rotates keys by their rank in the cache (sink) keeps positions inside
    // its budget; every other strategy (a window too) rotates each key by its position in the
    // stream, so the rotary table must cover it all. Checked before a cache is built: a cache
    // of `longest` slots may not fit in memory.
    if !spec.rotates_in_cache() && longest > config.max_positions {
        return Err(format!(
            "{longest} tokens exceed the model's max_positions = {}",
            config.max_positions
        ));
    }
    // A count of tokens the model cannot reach (its positions end first) is refused before a
    // cache holding that many slots is built.
    let token_counts = [
        ("cache_tokens", spec.cache_tokens),
        ("block_size", spec.block_size),
        ("residual", spec.residual),
    ];
    let applicable = spec.applicable();
    for (key, value) in token_counts {
        if let Some(n) = value.filter(|&n| n > config.max_positions && applicable.contains(&key)) {
            return Err(format!(
                "{key} = {n}: exceeds the model's max_positions = {}",
                config.max_positions
            ));
        }
    }
    crate::model::check_buildable(&spec, longest)?;
    if spec.cuts_prompt() && run.workload == Workload::Perplexity {
        return Err(format!(
            "strategy = \"{}\": cuts a prompt prefilled in one forward, but perplexity streams one \
             token per step, so it would keep every token (score it with the retrieval workload)",
            spec.kind
        ));
    }
    Ok(())
}

/// The most tokens a run's cache is asked to hold per row (its `max_seq`).
pub(crate) fn longest_sequence(experiment: &Experiment, run: &Run) -> usize {
    let w = &experiment.file.workload;
    match run.workload {
        Workload::Walkthrough => {
            w.walkthrough.as_ref().map_or(0, |p| p.prompt_tokens.saturating_add(p.steps))
        }
        Workload::Memory => run.usize("context").unwrap_or(0),
        Workload::Throughput => {
            let decode = w.throughput.as_ref().map_or(0, |p| p.decode_tokens);
            run.usize("context").unwrap_or(0).saturating_add(decode)
        }
        Workload::Perplexity => w.perplexity.as_ref().map_or(0, |p| p.tokens),
        Workload::Fragmentation => 0, // no cache strategy; the simulation checks its own
        Workload::Retrieval => {
            let answer = w.retrieval.as_ref().map_or(0, |p| p.answer_tokens);
            run.usize("context").unwrap_or(0).saturating_add(answer)
        }
    }
}

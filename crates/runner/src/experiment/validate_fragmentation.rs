//! Validation of `[workload.fragmentation]` against the sweep: the budget, the traces and
//! prompt lengths it names, cost profiles, and keep-policies on the paged pool.

use kvlab_serving::config::Eviction;
use kvlab_strategies::StrategyKind;

use super::schema::FragmentationParams;
use super::validated::Experiment;

/// The fragmentation workload's keys, with every trace, prompt length and cost profile the
/// sweep names.
pub(super) fn check_fragmentation(
    p: &FragmentationParams,
    e: &Experiment,
    err: &mut impl FnMut(String),
) {
    let (tokens, bytes) = (e.axes.get("budget_tokens"), e.axes.get("budget_bytes"));
    if tokens.is_some() == bytes.is_some() {
        err("workload.fragmentation: give the KV budget as exactly one of sweep.budget_tokens \
             (tokens of the model's KV) or sweep.budget_bytes"
            .into());
    }
    if p.max_seq_len == 0 {
        err("workload.fragmentation.max_seq_len = 0: expected an integer ≥ 1".into());
    }
    if p.requests == Some(0) {
        err("workload.fragmentation.requests = 0: expected an integer ≥ 1".into());
    }
    // Every trace and prompt length the sweep names, and every cost profile.
    let values = |key: &'static str| -> Vec<Option<String>> {
        let v = e.axes.get(key).unwrap_or_default();
        if v.is_empty() { vec![None] } else { v.iter().map(|x| Some(x.to_string())).collect() }
    };
    let traces = values("trace_kind");
    'traces: for trace in &traces {
        for prompt in values("prompt_tokens") {
            let prompt = prompt.and_then(|n| n.parse().ok());
            if let Err(why) = p.trace(e.file.experiment.seed, trace.as_deref(), prompt) {
                let name = trace.as_deref().unwrap_or(&p.trace);
                err(format!("workload.fragmentation.trace = {name:?}: {why}"));
                break 'traces;
            }
        }
    }
    let uses = |kind: &str| traces.iter().any(|t| t.as_deref().unwrap_or(&p.trace) == kind);
    if p.prefix_tokens.is_some() && !uses("system-prompt") {
        err("workload.fragmentation.prefix_tokens: read by trace = \"system-prompt\" only".into());
    }
    if p.samples.is_some() && !uses("samples") {
        err("workload.fragmentation.samples: read by trace = \"samples\" only".into());
    }
    for cost in values("cost") {
        if let Err(why) = p.cost_model(cost.as_deref()) {
            err(why);
        }
    }
    // Keep-policies on the paged pool: simulated, paged only, on their own.
    let evicts: Vec<String> =
        values("evict").into_iter().flatten().filter(|v| v != "off").collect();
    if let Some(rule) = evicts.first() {
        let named = |key: &'static str, bad: &str| values(key).iter().flatten().any(|v| v == bad);
        let reserved = values("policy").iter().flatten().any(|v| v != "paged");
        if reserved {
            err(format!(
                "sweep.evict = {rule:?}: a keep-policy evicts from paged memory only; set \
                 sweep.policy = [\"paged\"]"
            ));
        }
        if named("sharing", "on") || named("preemption", "swap") {
            err(format!(
                "sweep.evict = {rule:?}: runs without sharing and with recompute preemption"
            ));
        }
        if p.execute {
            err(format!("sweep.evict = {rule:?}: simulated only; remove execute = true"));
        }
        let keeps: Vec<usize> =
            values("keep_tokens").iter().flatten().filter_map(|v| v.parse().ok()).collect();
        match keeps.iter().min() {
            None => err(format!("sweep.evict = {rule:?} needs sweep.keep_tokens")),
            // The policy checks its own parameters (a sink cache needs room past its sinks).
            Some(&keep_tokens) => {
                for policy in evicts.iter().filter_map(|e| e.parse::<StrategyKind>().ok()) {
                    let ev =
                        Eviction { policy, sink_tokens: p.sinks, keep_tokens, compaction: false };
                    if let Err(e) = kvlab_serving::keep_policy(&ev) {
                        err(format!("sweep.keep_tokens = {keep_tokens}: {e}"));
                    }
                }
            }
        }
    }
    for (name, params) in &p.cost {
        if let Err(why) = params.model(name) {
            err(why);
        }
    }
}

//! Sweep axes and their expansion into runs.
//!
//! # Expansion order (pinned)
//!
//! Runs are expanded per workload, in the order of [`Workload::ALL`]. Within one workload the
//! runs are the cartesian product of the axes in the order of [`AXES`] (the first axis is the
//! outermost loop, the last the innermost), with the values in the order the experiment file
//! lists them. An axis is only multiplied in where it applies: a strategy parameter only for
//! the strategy kinds whose [`StrategyKind::parameters`] name it, a workload axis only for the
//! workloads that read it. Where an axis does not apply, the run leaves its column empty. A
//! value that contradicts the keys before it (`StrategySpec::contradicts`: a llama.cpp block
//! format under another bit width) is skipped.
//!
//! # Adding a strategy parameter
//!
//! Add one line to [`AXES`] with [`Role::Strategy`]: the runner validates its values, multiplies
//! it in for the specs whose `StrategySpec::applicable()` lists it, passes it to `StrategySpec` by name (serde) and writes it
//! as a CSV column.

use kvlab_strategies::{StrategyKind, StrategySpec};

pub use crate::axes::*;
pub use crate::workload::Workload;

/// One run: a workload and one value (or none, where it does not apply) for each of its axis
/// columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub workload: Workload,
    /// `(axis, value)` for every axis column of the workload, in [`AXES`] order.
    pub params: Vec<(&'static str, Option<Value>)>,
}

impl Run {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.params.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.as_ref())
    }

    pub fn usize(&self, key: &str) -> Option<usize> {
        self.get(key).and_then(Value::as_usize)
    }

    pub fn model(&self) -> &str {
        match self.get("model") {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    pub fn kind(&self) -> StrategyKind {
        match self.get("strategy") {
            Some(Value::Str(s)) => s.parse().unwrap_or(StrategyKind::CONCAT),
            _ => StrategyKind::CONCAT,
        }
    }

    /// The `attention` axis: the fused kernel where the run asks for it, else the dense
    /// reference.
    pub fn fused_attention(&self) -> bool {
        matches!(self.get("attention"), Some(Value::Str(s)) if s == "fused")
    }

    /// Batch size (1 where the workload has no batch axis).
    pub fn batch(&self) -> usize {
        self.usize("batch").unwrap_or(1)
    }

    /// The strategy spec, built from the strategy parameters by name.
    pub fn spec(&self) -> Result<StrategySpec, String> {
        let mut map = serde_json::Map::new();
        for (key, value) in &self.params {
            let Some(axis) = axis_named(key) else { continue };
            match (axis.role, value) {
                (Role::Kind, Some(v)) => {
                    map.insert("kind".into(), v.to_json());
                }
                (Role::Strategy, Some(v)) => {
                    map.insert((*key).into(), v.to_json());
                }
                _ => {}
            }
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    }

    /// The canonical string of the run's parameters (its identity in CSVs, for `--resume`):
    /// `backend=flex;model=seed-toy;strategy=sink;cache_tokens=64;sink_tokens=4`. Only the
    /// parameters that apply appear, in [`AXES`] order.
    pub fn id(&self, backend: &str) -> String {
        let mut parts = vec![format!("backend={backend}")];
        parts
            .extend(self.params.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))));
        parts.join(";")
    }

    /// A short human label: `sink cache_tokens=64 sink_tokens=4 batch=1`.
    pub fn label(&self) -> String {
        let mut parts = vec![];
        for (k, v) in &self.params {
            match (axis_named(k).map(|a| a.role), v) {
                (Some(Role::Kind), Some(v)) => parts.push(v.to_string()),
                (Some(Role::Model), Some(v)) => parts.push(format!("[{v}]")),
                (_, Some(v)) => parts.push(format!("{k}={v}")),
                _ => {}
            }
        }
        parts.join(" ")
    }
}

/// The values of every axis after validation: swept lists or the single default.
#[derive(Debug, Clone, Default)]
pub struct AxisValues {
    /// `(axis key, values)`; an axis absent here has no value (for a strategy parameter: none
    /// given; the strategy's validation says if it needs one).
    pub values: Vec<(&'static str, Vec<Value>)>,
    /// `[sweep.only_for]`: a strategy parameter swept only for the listed strategy kinds (the
    /// others leave it unset, their default), so one file can quantize `static` without
    /// multiplying every other slot store by the bit widths.
    pub only_for: Vec<(&'static str, Vec<StrategyKind>)>,
}

impl AxisValues {
    pub fn get(&self, key: &str) -> Option<&[Value]> {
        self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_slice())
    }

    /// Whether `[sweep.only_for]` lets axis `key` apply to strategy `kind`.
    pub(crate) fn sweeps_for(&self, key: &str, kind: StrategyKind) -> bool {
        self.only_for.iter().find(|(k, _)| *k == key).is_none_or(|(_, kinds)| kinds.contains(&kind))
    }
}

/// Expands the axes into the runs of `workload` (see the module docs for the order).
pub(crate) fn expand(axes: &AxisValues, workload: Workload) -> Vec<Run> {
    let mut runs = vec![];
    let mut current: Vec<(&'static str, Option<Value>)> = vec![];
    recurse(axes, workload, 0, &mut current, &mut runs);
    runs
}

fn recurse(
    axes: &AxisValues,
    workload: Workload,
    depth: usize,
    current: &mut Vec<(&'static str, Option<Value>)>,
    out: &mut Vec<Run>,
) {
    let Some(axis) = AXES.get(depth) else {
        out.push(Run { workload, params: current.clone() });
        return;
    };
    if !workload.has_column(axis) {
        return recurse(axes, workload, depth + 1, current, out);
    }
    let applies = match axis.role {
        Role::Model | Role::Kind | Role::Workload => true,
        // The serving policies: block_size only for `paged`.
        Role::Strategy if workload == Workload::Fragmentation => current
            .iter()
            .any(|(k, v)| *k == "policy" && v.as_ref().is_some_and(|v| v.to_string() == "paged")),
        Role::Strategy => {
            // Ask the spec built from the keys chosen so far (bits only applies to slot stores,
            // group_size only once bits quantizes, ...).
            // A preset's config also tells whether head_reduction matters (fewer KV heads than
            // the checkpoint); a .gguf path is not opened here.
            let partial = Run { workload, params: current.clone() };
            let config = kvlab_model::ModelConfig::preset(partial.model()).ok();
            axes.sweeps_for(axis.key, partial.kind())
                && partial.spec().is_ok_and(|spec| match &config {
                    Some(c) => spec.applicable_to(c).contains(&axis.key),
                    None => spec.applicable().contains(&axis.key),
                })
        }
    };
    let values = axes.get(axis.key).filter(|v| !v.is_empty());
    match (applies, values) {
        (true, Some(values)) => {
            for v in values {
                current.push((axis.key, Some(v.clone())));
                // A value that contradicts an earlier key (a 4-bit format under bits = 8) is
                // skipped, not run.
                let partial = Run { workload, params: current.clone() };
                let contradicts = axis.role == Role::Strategy
                    && partial.spec().is_ok_and(|spec| spec.contradicts());
                if !contradicts {
                    recurse(axes, workload, depth + 1, current, out);
                }
                current.pop();
            }
        }
        _ => {
            current.push((axis.key, None));
            recurse(axes, workload, depth + 1, current, out);
            current.pop();
        }
    }
}

//! The sweep axes: every key an experiment can sweep, what role it plays, which values it
//! accepts, and the values of one run. One line per key in [`AXES`].

use std::fmt;

use kvlab_strategies::StrategyKind;

/// What an axis is a parameter of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The model preset (or GGUF path): runs are grouped by it, the model loads once per group.
    Model,
    /// The strategy kind itself.
    Kind,
    /// A `StrategySpec` field, applied where `StrategyKind::parameters()` lists it.
    Strategy,
    /// Read by the workloads that list it in [`Workload::axes`].
    Workload,
}

/// What values an axis accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A model preset name or a path ending in `.gguf`.
    Model,
    /// A strategy kind name.
    Strategy,
    /// An integer ≥ 1.
    Positive,
    /// An integer ≥ 0.
    NonNegative,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A quantization scheme's name (the strategies crate's `Scheme::ALL`).
    Scheme,
    /// A name the experiment defines elsewhere (checked there).
    Name,
    /// `off`, or a keep-policy the serving simulator runs (one that decides from positions).
    SimulatedKeep,
}

impl ValueKind {
    pub fn allowed(self) -> String {
        match self {
            Self::Model => format!(
                "a model preset ({}) or a path to a .gguf file",
                kvlab_model::config::PRESETS.join(", ")
            ),
            Self::Strategy => format!(
                "a strategy kind ({})",
                StrategyKind::all().map(|k| k.name()).collect::<Vec<_>>().join(", ")
            ),
            Self::Positive => "an integer ≥ 1".into(),
            Self::NonNegative => "an integer ≥ 0".into(),
            Self::OneOf(v) => format!("one of {}", v.join(", ")),
            Self::Scheme => format!("one of {}", scheme_names().join(", ")),
            Self::Name => "a name (a string of letters, digits, '-' and '_')".into(),
            Self::SimulatedKeep => format!("one of off, {}", simulated_keep_names().join(", ")),
        }
    }

    /// Checks one TOML value; `Err` says what is allowed.
    pub fn parse(self, v: &toml::Value) -> Result<Value, String> {
        let bad = || Err(format!("expected {}", self.allowed()));
        match self {
            Self::Positive | Self::NonNegative => match v.as_integer() {
                Some(i) if i >= 1 || (i == 0 && self == Self::NonNegative) => Ok(Value::Int(i)),
                _ => bad(),
            },
            Self::Strategy => match v.as_str().map(|s| s.parse::<StrategyKind>()) {
                Some(Ok(k)) => Ok(Value::Str(k.name().into())),
                _ => bad(),
            },
            Self::Model => match v.as_str() {
                Some(s) if kvlab_model::config::PRESETS.contains(&s) || s.ends_with(".gguf") => {
                    Ok(Value::Str(s.into()))
                }
                _ => bad(),
            },
            Self::Scheme => match v.as_str() {
                Some(s) if scheme_names().contains(&s) => Ok(Value::Str(s.into())),
                _ => bad(),
            },
            Self::SimulatedKeep => match v.as_str() {
                Some(s) if s == "off" || simulated_keep_names().contains(&s) => {
                    Ok(Value::Str(s.into()))
                }
                _ => bad(),
            },
            Self::OneOf(allowed) => match v.as_str() {
                Some(s) if allowed.contains(&s) => Ok(Value::Str(s.into())),
                _ => bad(),
            },
            Self::Name => match v.as_str() {
                Some(s)
                    if !s.is_empty()
                        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    Ok(Value::Str(s.into()))
                }
                _ => bad(),
            },
        }
    }
}

/// One sweep axis.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub key: &'static str,
    pub role: Role,
    pub kind: ValueKind,
    pub help: &'static str,
}

/// The keep-policies the serving simulator runs, by name.
fn simulated_keep_names() -> Vec<&'static str> {
    kvlab_serving::simulated_keep_policies().map(|k| k.name()).collect()
}

/// Every quantization scheme's name.
fn scheme_names() -> Vec<&'static str> {
    kvlab_strategies::quant::Scheme::ALL.iter().map(|s| s.name()).collect()
}

const fn axis(key: &'static str, role: Role, kind: ValueKind, help: &'static str) -> Axis {
    Axis { key, role, kind, help }
}

/// Every sweep axis, in expansion order (outermost first). One line per key.
pub(crate) const AXES: &[Axis] = &[
    axis("model", Role::Model, ValueKind::Model, "model preset or .gguf path"),
    axis("strategy", Role::Kind, ValueKind::Strategy, "KV-cache strategy kind"),
    axis(
        "cache_tokens",
        Role::Strategy,
        ValueKind::Positive,
        "token budget (window, sink, evicting kinds; snapkv/pyramidkv: of the prompt)",
    ),
    axis("sink_tokens", Role::Strategy, ValueKind::NonNegative, "first tokens kept (sink)"),
    axis("recent", Role::Strategy, ValueKind::NonNegative, "newest tokens h2o always keeps"),
    axis(
        "window",
        Role::Strategy,
        ValueKind::Positive,
        "last prompt queries that score the prompt (snapkv, pyramidkv)",
    ),
    axis("kernel", Role::Strategy, ValueKind::Positive, "max-pool width over snapkv's scores"),
    // The fragmentation workload's memory policy; before block_size, which applies to its
    // `paged` policy (as to the `paged` strategy).
    axis(
        "policy",
        Role::Workload,
        ValueKind::OneOf(&["reserve-max", "reserve-pow2", "reserve-exact", "paged"]),
        "serving KV memory policy (fragmentation)",
    ),
    axis("block_size", Role::Strategy, ValueKind::Positive, "tokens per block (paged)"),
    // A key another key depends on (bits → group_size, kv_heads → head_reduction) comes first:
    // applicability is asked of the spec built from the keys before it.
    axis("bits", Role::Strategy, ValueKind::Positive, "KV bits: 8, 4, 3, 2 (quantized) or 32"),
    axis("key_bits", Role::Strategy, ValueKind::Positive, "bits of keys alone (overrides bits)"),
    axis(
        "value_bits",
        Role::Strategy,
        ValueKind::Positive,
        "bits of values alone (overrides bits)",
    ),
    axis("group_size", Role::Strategy, ValueKind::Positive, "elements per quantization scale"),
    axis("quant_axis", Role::Strategy, ValueKind::OneOf(&["per-token", "kivi"]), "scale grouping"),
    axis(
        "scheme",
        Role::Strategy,
        ValueKind::Scheme,
        "quant scheme (q8_0/q4_0/q4_1: llama.cpp's block formats, each under its own bits; \
         lloyd-max: non-uniform levels for rotated vectors, bits 4/3/2)",
    ),
    axis(
        "key_scheme",
        Role::Strategy,
        ValueKind::Scheme,
        "scheme of keys alone (overrides scheme)",
    ),
    axis(
        "value_scheme",
        Role::Strategy,
        ValueKind::Scheme,
        "scheme of values alone (overrides scheme)",
    ),
    axis("residual", Role::Strategy, ValueKind::NonNegative, "recent tokens kept in f32"),
    axis(
        "rotation",
        Role::Strategy,
        ValueKind::OneOf(&["none", "hadamard"]),
        "head vectors rotated (in llama.cpp's blocks) before the store encodes them",
    ),
    axis(
        "rank",
        Role::Strategy,
        ValueKind::Positive,
        "dimensions per KV head a static cache holds (SVD of the K/V projections)",
    ),
    axis(
        "rank_basis",
        Role::Strategy,
        ValueKind::OneOf(&["weights", "calibrated"]),
        "low-rank bases from the projection weights, or from the model's K/V on calibration text",
    ),
    axis(
        "key_order",
        Role::Strategy,
        ValueKind::OneOf(&["half-split", "interleaved", "llama-cpp"]),
        "key channel order in a quantized store (llama-cpp: the one llama.cpp's cache holds)",
    ),
    axis(
        "query_bits",
        Role::Strategy,
        ValueKind::Positive,
        "32, or 8: queries rounded to q8_0 blocks among quantized keys, as llama.cpp's CPU attention does",
    ),
    axis("kv_heads", Role::Strategy, ValueKind::Positive, "KV heads after head conversion"),
    axis(
        "head_reduction",
        Role::Strategy,
        ValueKind::OneOf(&["mean-pool", "first-head"]),
        "how grouped KV heads become one",
    ),
    // New StrategySpec parameters go here: one line each.
    axis("batch", Role::Workload, ValueKind::Positive, "sequences per batch"),
    axis(
        "key_bucket",
        Role::Workload,
        ValueKind::NonNegative,
        "attention keys padded to a multiple of this (throughput; 0 = off; default per backend)",
    ),
    axis(
        "attention",
        Role::Workload,
        ValueKind::OneOf(&["dense", "fused"]),
        "attention's kernel: dense ops (the reference, default) or one fused pass over the \
         cache's K/V in place (flex; elsewhere dense) (throughput, executed serving)",
    ),
    axis(
        "context",
        Role::Workload,
        ValueKind::Positive,
        "tokens in the cache (prompt length; retrieval: the haystack length)",
    ),
    axis("budget_tokens", Role::Workload, ValueKind::Positive, "serving KV budget in tokens"),
    axis("budget_bytes", Role::Workload, ValueKind::Positive, "serving KV budget in bytes"),
    axis(
        "trace_kind",
        Role::Workload,
        ValueKind::OneOf(&["chat", "long-output", "system-prompt", "samples"]),
        "synthetic request trace (serving; default: workload.fragmentation.trace)",
    ),
    axis(
        "sharing",
        Role::Workload,
        ValueKind::OneOf(&["off", "on"]),
        "requests of a prefix group share its blocks (serving, paged; default off)",
    ),
    axis(
        "prompt_tokens",
        Role::Workload,
        ValueKind::Positive,
        "every synthetic prompt this long (serving; default: the trace's lengths)",
    ),
    axis(
        "evict",
        Role::Workload,
        ValueKind::SimulatedKeep,
        "keep-policy per request on the paged pool (serving; default off)",
    ),
    axis("keep_tokens", Role::Workload, ValueKind::Positive, "live tokens each request keeps"),
    axis(
        "compaction",
        Role::Workload,
        ValueKind::OneOf(&["off", "on"]),
        "move survivors into stranded slots to free blocks (serving; default off)",
    ),
    axis(
        "cost",
        Role::Workload,
        ValueKind::Name,
        "cost profile, a table of workload.fragmentation.cost (serving)",
    ),
    // Innermost: the two preemption modes of one case run back to back (executed runs are
    // timed; neighbours see the same machine).
    axis(
        "preemption",
        Role::Workload,
        ValueKind::OneOf(&["recompute", "swap"]),
        "how a preempted request comes back (serving; default recompute)",
    ),
    axis("swap_tokens", Role::Workload, ValueKind::NonNegative, "host swap pool in tokens"),
];

pub(crate) fn axis_named(key: &str) -> Option<&'static Axis> {
    AXES.iter().find(|a| a.key == key)
}

/// Parses a `--only KEY=VALUE` filter; the key must be a sweep axis.
pub(crate) fn parse_only(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("'{text}' is not KEY=VALUE (e.g. model=seed-toy)"));
    };
    if axis_named(key).is_none() {
        let keys: Vec<&str> = AXES.iter().map(|a| a.key).collect();
        return Err(format!("'{key}' is not a sweep key (one of {})", keys.join(", ")));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Whether a run id (`k=v;k=v;...`, with or without `backend=`) has every `(key, value)`.
pub(crate) fn id_matches(id: &str, only: &[(String, String)]) -> bool {
    // A compare key may end in ` @iteration N`: only the `k=v` before it counts.
    let pairs = || id.split(';').filter_map(|p| p.split(' ').next()?.split_once('='));
    only.iter().all(|(k, v)| pairs().any(|pair| pair == (k.as_str(), v.as_str())))
}

/// A value of one axis in one run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Int(i64),
    Str(String),
}

impl Value {
    pub fn as_usize(&self) -> Option<usize> {
        match self {
            Self::Int(i) => usize::try_from(*i).ok(),
            Self::Str(_) => None,
        }
    }
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use kvlab_strategies::StrategySpec;

    use super::*;

    #[test]
    fn every_strategy_parameter_is_an_axis() {
        // A StrategySpec field without an axis could never be set from an experiment.
        let spec = serde_json::to_value(StrategySpec::new(StrategyKind::CONCAT)).unwrap();
        for key in spec.as_object().unwrap().keys().filter(|k| *k != "kind") {
            let axis = axis_named(key).unwrap_or_else(|| panic!("add an axis for '{key}'"));
            assert_eq!(axis.role, Role::Strategy, "{key}");
        }
        for kind in StrategyKind::all() {
            let mut spec = StrategySpec::new(kind);
            spec.bits = Some(8);
            spec.kv_heads = Some(1);
            for p in spec.applicable() {
                assert!(axis_named(p).is_some(), "{kind} reads '{p}': add it to AXES");
            }
        }
    }
}

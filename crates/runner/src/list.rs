//! `runner list`: strategies with their parameters, sweep keys, workloads and their columns,
//! model presets, and the backends compiled into this binary.

use kvlab_model::ModelConfig;
use kvlab_strategies::{StrategyKind, StrategySpec};

use crate::backend::BackendName;
use crate::sweep::{AXES, Role, Workload};
use crate::workloads;

/// A kind's parameters, each with its default where it has one.
fn parameters(kind: StrategyKind) -> String {
    let params = kind.entry().parameters;
    if params.is_empty() {
        return "-".into();
    }
    let shown: Vec<String> = params
        .iter()
        .map(|p| match p.default {
            Some(d) => format!("{} (default {d})", p.key),
            None => p.key.to_string(),
        })
        .collect();
    shown.join(", ")
}

/// `runner list`.
pub fn list() -> String {
    let mut s = String::from("Strategies (sweep key `strategy`):\n");
    for kind in StrategyKind::all() {
        let params = kind.parameters();
        let mut probe = serde_json::json!({ "kind": kind.name() });
        let probes = [
            ("cache_tokens", 8),
            ("sink_tokens", 1),
            ("block_size", 4),
            ("recent", 4),
            ("window", 2),
            ("kernel", 3),
        ];
        for (k, v) in probes {
            if params.contains(&k) {
                probe[k] = v.into();
            }
        }
        let built = serde_json::from_value::<StrategySpec>(probe)
            .map_err(|e| e.to_string())
            .and_then(|spec| crate::model::check_buildable(&spec, 8));
        s += &format!(
            "  {:<13} {}{}\n  {:<13} parameters: {}\n",
            kind.name(),
            kind.summary(),
            if built.is_ok() { "" } else { "  [not built yet]" },
            "",
            parameters(kind)
        );
    }
    s += "\nSweep keys (expansion order, outermost first):\n";
    for a in AXES {
        let role = match a.role {
            Role::Model => "model",
            Role::Kind => "strategy",
            Role::Strategy => "strategy parameter",
            Role::Workload => "workload axis",
        };
        s += &format!("  {:<13} {} ({role}; {})\n", a.key, a.help, a.kind.allowed());
    }
    s += "\nWorkloads ([workload.<name>]):\n";
    for w in Workload::ALL {
        let cols = workloads::metric_columns(w).join(", ");
        s += &format!("  {:<13} reads: {:<16} writes: {cols}\n", w.name(), {
            let a = w.axes();
            if a.is_empty() { "-".to_string() } else { a.join(", ") }
        });
    }
    s += "\nModel presets (sweep key `model`, or [experiment] model):\n";
    for name in kvlab_model::config::PRESETS {
        if let Ok(c) = ModelConfig::preset(name) {
            let local = (0..c.n_layers).filter(|&l| c.layer_attention(l).window.is_some()).count();
            let window = c.arch.sliding_window.map_or(String::new(), |w| {
                format!(", {local} of them local ({}-token window)", w.tokens)
            });
            let weights = if kvlab_model::assets::PRETRAINED.contains(name) {
                "pretrained (pinned GGUF) or random weights"
            } else {
                "random weights"
            };
            s += &format!(
                "  {name:<19} {} layers{window}, {} heads / {} kv heads × {} dims, vocab {}: {} KV \
                 bytes per token (f32, every layer); {weights}\n",
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                c.vocab_size,
                c.kv_bytes_per_token(4)
            );
        }
    }
    s += "\nBackends (--backend or [experiment] backend):\n";
    for b in BackendName::ALL {
        let state = if b.compiled_in() {
            "compiled in".to_string()
        } else {
            format!("not compiled in (cargo feature `{}`)", b.feature().unwrap_or_default())
        };
        s += &format!("  {:<13} {state}\n", b.name());
    }
    s
}

//! "Does it hold on every model?": the findings other reports state on SmolLM2, checked on every
//! model of a multi-model experiment (`experiments/models.toml`), one row per claim and model,
//! with the numbers; and a per-model summary (KV bytes per token, decode speed, the full
//! cache's perplexity).
//!
//! A claim compares two configurations' `ppl_delta_pct` (perplexity change against the model's
//! own full cache) on one model, or bounds one configuration's. Configurations are picked by
//! their parameters; a model lacking either side gets no row (the report says nothing it did
//! not measure).

use std::fmt::Write as _;

use super::table::Table;
use crate::sweep::Workload;

/// A configuration, by the parameters that must all hold on its row.
#[derive(Debug, Clone, Copy)]
struct Pick {
    label: &'static str,
    keys: &'static [(&'static str, &'static str)],
}

#[derive(Debug, Clone, Copy)]
enum Test {
    /// `better`'s perplexity change is smaller than `worse`'s.
    Beats { better: Pick, worse: Pick },
    /// The configuration's perplexity change is below this many percent.
    Below { pick: Pick, pct: f64 },
    /// The configuration's perplexity change is above this many percent, where it holds
    /// fewer KV bytes than `unless_as_large_as` (a conversion to fewer heads that, on a model
    /// already at that many heads, converts nothing and gets no row).
    Above { pick: Pick, pct: f64, unless_as_large_as: Pick },
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    text: &'static str,
    /// Where kvlab states it.
    source: &'static str,
    test: Test,
}

const WINDOW: Pick =
    Pick { label: "window 128", keys: &[("strategy", "window"), ("cache_tokens", "128")] };
const PER_TOKEN_INT4: Pick = Pick {
    label: "int4 per-token",
    keys: &[
        ("strategy", "static"),
        ("bits", "4"),
        ("quant_axis", "per-token"),
        ("scheme", ""),
        ("rotation", "none"),
    ],
};
const Q4_0: Pick = Pick {
    label: "q4_0",
    keys: &[("strategy", "static"), ("scheme", "q4_0"), ("rotation", "none")],
};

const CLAIMS: &[Claim] = &[
    Claim {
        text: "H2O beats the window at an equal budget",
        source: "results/eviction",
        test: Test::Beats {
            better: Pick {
                label: "h2o 128",
                keys: &[("strategy", "h2o"), ("cache_tokens", "128")],
            },
            worse: WINDOW,
        },
    },
    Claim {
        text: "TOVA beats the window at an equal budget",
        source: "results/eviction",
        test: Test::Beats {
            better: Pick {
                label: "tova 128",
                keys: &[("strategy", "tova"), ("cache_tokens", "128")],
            },
            worse: WINDOW,
        },
    },
    Claim {
        text: "sinks rescue a window (4 sink tokens)",
        source: "results/sink",
        test: Test::Beats {
            better: Pick {
                label: "sink 128",
                keys: &[("strategy", "sink"), ("cache_tokens", "128")],
            },
            worse: WINDOW,
        },
    },
    Claim {
        text: "the Hadamard rotation helps int4 (per-token groups)",
        source: "results/quant",
        test: Test::Beats {
            better: Pick {
                label: "int4 per-token, rotated",
                keys: &[
                    ("strategy", "static"),
                    ("bits", "4"),
                    ("quant_axis", "per-token"),
                    ("scheme", ""),
                    ("rotation", "hadamard"),
                ],
            },
            worse: PER_TOKEN_INT4,
        },
    },
    Claim {
        text: "the Hadamard rotation helps llama.cpp's q4_0",
        source: "results/quant-llama-cpp",
        test: Test::Beats {
            better: Pick {
                label: "q4_0, rotated",
                keys: &[("strategy", "static"), ("scheme", "q4_0"), ("rotation", "hadamard")],
            },
            worse: Q4_0,
        },
    },
    Claim {
        text: "KIVI's per-channel keys beat per-token keys at int4",
        source: "results/quant",
        test: Test::Beats {
            better: Pick {
                label: "int4 KIVI",
                keys: &[
                    ("strategy", "static"),
                    ("bits", "4"),
                    ("quant_axis", "kivi"),
                    ("scheme", ""),
                    ("rotation", "none"),
                ],
            },
            worse: PER_TOKEN_INT4,
        },
    },
    Claim {
        text: "int8 per-token costs under 1% perplexity",
        source: "results/quant",
        test: Test::Below {
            pick: Pick {
                label: "int8 per-token",
                keys: &[
                    ("strategy", "static"),
                    ("bits", "8"),
                    ("quant_axis", "per-token"),
                    ("rotation", "none"),
                ],
            },
            pct: 1.0,
        },
    },
    Claim {
        text: "converting the checkpoint to one KV head without training breaks it (perplexity \
               more than doubles)",
        source: "results/gqa",
        test: Test::Above {
            pick: Pick {
                label: "one KV head, mean-pooled",
                keys: &[
                    ("strategy", "static"),
                    ("bits", "32"),
                    ("kv_heads", "1"),
                    ("head_reduction", ""),
                ],
            },
            pct: 100.0,
            unless_as_large_as: Pick {
                label: "the model's own heads",
                keys: &[
                    ("strategy", "static"),
                    ("bits", "32"),
                    ("rotation", "none"),
                    ("kv_heads", ""),
                ],
            },
        },
    },
];

/// The `ppl_delta_pct` of the one row matching `pick` (none, or several: `None`).
fn delta(t: &Table, pick: &Pick) -> Option<f64> {
    value(t, pick, "ppl_delta_pct")
}

/// Column `col` of the one row matching `pick` (none, or several: `None`).
fn value(t: &Table, pick: &Pick, col: &str) -> Option<f64> {
    let mut rows = t.rows.iter().filter(|row| pick.keys.iter().all(|(k, v)| t.get(row, k) == *v));
    let row = rows.next()?;
    if rows.next().is_some() {
        return None;
    }
    t.num(row, col)
}

/// The claims table over every model of `ppl`, or nothing for a single-model table.
fn claims_table(ppl: &Table) -> String {
    let models = ppl.models();
    if models.len() < 2 {
        return String::new();
    }
    let mut rows = String::new();
    for claim in CLAIMS {
        for model in &models {
            let one = ppl.only_model(model);
            let cells = match claim.test {
                Test::Beats { better, worse } => {
                    let (Some(b), Some(w)) = (delta(&one, &better), delta(&one, &worse)) else {
                        continue;
                    };
                    let numbers = format!("{} {b:+.2}% vs {} {w:+.2}%", better.label, worse.label);
                    (b < w, numbers)
                }
                Test::Below { pick, pct } => {
                    let Some(d) = delta(&one, &pick) else { continue };
                    (d < pct, format!("{} {d:+.3}% (bound {pct}%)", pick.label))
                }
                Test::Above { pick, pct, unless_as_large_as } => {
                    let bytes = |p: &Pick| value(&one, p, "kv_allocated_bytes");
                    let (Some(d), Some(b), Some(own)) =
                        (delta(&one, &pick), bytes(&pick), bytes(&unless_as_large_as))
                    else {
                        continue;
                    };
                    if b >= own {
                        continue;
                    }
                    (d > pct, format!("{} {d:+.1}% (bound {pct}%)", pick.label))
                }
            };
            let verdict = if cells.0 { "holds" } else { "**does not hold**" };
            let _ = writeln!(
                rows,
                "| {} ({}) | {model} | {verdict} | {} |",
                claim.text, claim.source, cells.1
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "## Does it hold on every model?\n\nEach finding another report states (on SmolLM2), \
         checked on every model of this experiment by its perplexity change against the \
         model's own full cache (`ppl_delta_pct`; lower is better).\n\n| claim (where stated) \
         | model | verdict | numbers |\n|---|---|---|---|\n{rows}\n"
    )
}

/// Per model: KV bytes per token (every layer global, and the model's own plan), static f32
/// decode speed, and the full cache's perplexity.
fn model_summary(tables: &[Table]) -> String {
    let find = |w: Workload| tables.iter().find(|t| t.workload == w);
    let Some(ppl) = find(Workload::Perplexity) else { return String::new() };
    let models = ppl.models();
    if models.len() < 2 {
        return String::new();
    }
    let f32_static: &[(&str, &str)] =
        &[("strategy", "static"), ("bits", "32"), ("rotation", "none"), ("kv_heads", "")];
    let pick_row = |t: &Table, keys: &[(&str, &str)], col: &str| -> Option<f64> {
        let row = t.rows.iter().find(|row| keys.iter().all(|(k, v)| t.get(row, k) == *v))?;
        t.num(row, col)
    };
    let mut md = String::from(
        "## The models\n\n| model | KV bytes per token, every layer | KV bytes per token, the \
         model's plan (measured context) | the plan at 4,096 tokens (formula) | static f32 \
         decode tok/s | full-cache perplexity |\n|---|---|---|---|---|---|\n",
    );
    for model in &models {
        let cell = |w: Workload, keys: &[(&str, &str)], col: &str, per_token: bool| {
            let t = find(w)?.only_model(model);
            let v = pick_row(&t, keys, col)?;
            let tokens = if per_token {
                pick_row(&t, keys, "context")? * pick_row(&t, keys, "batch").unwrap_or(1.0)
            } else {
                1.0
            };
            Some(v / tokens)
        };
        let show =
            |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        // The formula needs only the preset's config (a .gguf path is not opened here).
        let long = kvlab_model::ModelConfig::preset(model)
            .ok()
            .map(|c| c.kv_bytes_planned(4096, 1, 4) as f64 / 4096.0);
        let _ = writeln!(
            md,
            "| {model} | {} | {} | {} | {} | {} |",
            show(cell(Workload::Memory, f32_static, "formula_bytes", true), 0),
            show(cell(Workload::Memory, f32_static, "plan_formula_bytes", true), 0),
            show(long, 0),
            show(cell(Workload::Throughput, f32_static, "decode_tok_per_s", false), 1),
            show(cell(Workload::Perplexity, &[("strategy", "concat")], "ppl", false), 3),
        );
    }
    md += "\nOn a model with local layers the plan's bytes per token fall as the context grows \
           past the window, and a token budget acts on the global layers only (on Gemma 3 270M, \
           3 of 18 layers): eviction there saves far fewer bytes than on a model whose every \
           layer is global. Compare configurations by their `kv_allocated_bytes`, not by their \
           budget.\n\n";
    md
}

/// Both sections, or nothing for a single-model experiment.
pub fn section(tables: &[Table]) -> String {
    let mut md = model_summary(tables);
    if let Some(ppl) = tables.iter().find(|t| t.workload == Workload::Perplexity) {
        md += &claims_table(ppl);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppl(rows: &[(&str, &str, &str, &str, &str, &str, &str)]) -> Table {
        let header = [
            "model",
            "strategy",
            "cache_tokens",
            "bits",
            "quant_axis",
            "rotation",
            "ppl_delta_pct",
        ];
        Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| {
                    [r.0, r.1, r.2, r.3, r.4, r.5, r.6].iter().map(|c| c.to_string()).collect()
                })
                .collect(),
        }
    }

    #[test]
    fn a_claim_holds_on_one_model_and_not_on_another() {
        let t = ppl(&[
            ("a", "window", "128", "", "", "", "10.0"),
            ("a", "h2o", "128", "", "", "", "4.0"),
            ("b", "window", "128", "", "", "", "3.0"),
            ("b", "h2o", "128", "", "", "", "5.5"),
            ("b", "static", "", "8", "per-token", "none", "0.25"),
        ]);
        let md = claims_table(&t);
        assert!(md.contains("| H2O beats the window at an equal budget (results/eviction) | a | holds | h2o 128 +4.00% vs window 128 +10.00% |"), "{md}");
        assert!(
            md.contains("| b | **does not hold** | h2o 128 +5.50% vs window 128 +3.00% |"),
            "{md}"
        );
        assert!(md.contains("| b | holds | int8 per-token +0.250% (bound 1%) |"), "{md}");
        // Measured on neither model: no row, and nothing for model a's int8.
        assert!(!md.contains("TOVA") && !md.contains("| a | holds | int8"), "{md}");
        assert!(claims_table(&ppl(&[("a", "window", "128", "", "", "", "1.0")])).is_empty());
    }

    #[test]
    fn a_conversion_claim_has_a_row_only_where_heads_were_reduced() {
        let header = [
            "model",
            "strategy",
            "bits",
            "rotation",
            "kv_heads",
            "kv_allocated_bytes",
            "ppl_delta_pct",
        ];
        let rows = [
            ("a", "static", "32", "none", "", "300", "0.0"),
            ("a", "static", "32", "none", "1", "100", "4000.0"),
            ("b", "static", "32", "none", "", "200", "0.0"),
            ("b", "static", "32", "none", "1", "100", "40.0"),
            // One KV head already: the same bytes, nothing was converted.
            ("c", "static", "32", "none", "", "100", "0.0"),
            ("c", "static", "32", "none", "1", "100", "0.0"),
        ];
        let t = Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| {
                    [r.0, r.1, r.2, r.3, r.4, r.5, r.6].iter().map(|c| c.to_string()).collect()
                })
                .collect(),
        };
        let md = claims_table(&t);
        assert!(
            md.contains("| a | holds | one KV head, mean-pooled +4000.0% (bound 100%) |"),
            "{md}"
        );
        assert!(md.contains("| b | **does not hold** | one KV head, mean-pooled +40.0%"), "{md}");
        assert!(!md.contains("| c |"), "{md}");
    }
}

//! What rotating head vectors before encoding buys: each configuration's perplexity cost with
//! and without the Hadamard rotation, side by side, and the change per bit width and grouping
//! axis (does it help KIVI's per-channel keys as it helps per-token groups?).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::table::Table;

/// A change in `ppl_delta_pct` below this many points is called no material change.
const MATERIAL: f64 = 0.1;

/// The run id without its `rotation=...` part: what pairs a rotated run with its twin.
fn twin_key(run_id: &str) -> String {
    run_id.split(';').filter(|p| !p.starts_with("rotation=")).collect::<Vec<_>>().join(";")
}

/// A readable name of a configuration: bits, axis, scheme and residual where set.
fn configuration(t: &Table, row: &[String]) -> String {
    let mut parts = vec![format!("{}, int{}", t.get(row, "strategy"), t.get(row, "bits"))];
    for key in ["quant_axis", "scheme"] {
        let v = t.get(row, key);
        if !v.is_empty() {
            parts.push(v.to_string());
        }
    }
    for key in ["group_size", "residual"] {
        let v = t.get(row, key);
        if !v.is_empty() {
            parts.push(format!("{key}={v}"));
        }
    }
    parts.join(", ").replace("int32", "f32")
}

/// One configuration's cost without and with the rotation.
struct Twins {
    /// Empty when the table holds one model.
    model: String,
    name: String,
    /// `int4 \`kivi\``, or empty for f32.
    axis: String,
    plain: Option<f64>,
    rotated: Option<f64>,
}

/// The section, or nothing when the table has no run with and without rotation. With several
/// models, each row and each summary names its model (a rotation's effect is not averaged
/// across models).
pub fn section(t: &Table) -> String {
    let several = t.models().len() > 1;
    let mut pairs: BTreeMap<String, Twins> = BTreeMap::new();
    for row in &t.rows {
        let rotation = t.get(row, "rotation");
        let Some(delta) = t.num(row, "ppl_delta_pct") else { continue };
        let axis = t.get(row, "quant_axis");
        let entry = pairs.entry(twin_key(t.get(row, "run_id"))).or_insert_with(|| Twins {
            model: if several { t.get(row, "model").to_string() } else { String::new() },
            name: configuration(t, row),
            axis: if axis.is_empty() {
                String::new()
            } else {
                format!("int{} `{axis}`", t.get(row, "bits"))
            },
            plain: None,
            rotated: None,
        });
        match rotation {
            "none" => entry.plain = Some(delta),
            "hadamard" => entry.rotated = Some(delta),
            _ => {}
        }
    }
    let both: Vec<(&Twins, f64, f64)> =
        pairs.values().filter_map(|p| Some((p, p.plain?, p.rotated?))).collect();
    if both.is_empty() {
        return String::new();
    }
    let mut md = String::from("## Hadamard rotation before encoding\n\n");
    md += "The change in perplexity against the full cache (`ppl_delta_pct`, percent) of each \
           configuration without and with the rotation of head vectors by orthonormal Hadamard \
           blocks before they are encoded (llama.cpp's default for quantized caches, and its \
           blocks: keys by the head's largest power-of-two block, values by 64). With f32 \
           storage it must change nothing.\n\n";
    let model_col = if several { "model | " } else { "" };
    let _ = writeln!(md, "| {model_col}configuration | without | with | change (points) |");
    let _ = writeln!(md, "|{}---|---|---|---|", if several { "---|" } else { "" });
    for (p, plain, rotated) in &both {
        let model = if several { format!("{} | ", p.model) } else { String::new() };
        let _ = writeln!(
            md,
            "| {model}{} | {plain:+.3} | {rotated:+.3} | {:+.3} |",
            p.name,
            rotated - plain
        );
    }
    md.push('\n');
    // Per model, bits and grouping axis: the mean change of the quantized configurations.
    let mut by_axis: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for (p, plain, rotated) in &both {
        if !p.axis.is_empty() {
            by_axis.entry((p.model.as_str(), p.axis.as_str())).or_default().push(rotated - plain);
        }
    }
    for ((model, axis), changes) in by_axis {
        let mean = changes.iter().sum::<f64>() / changes.len() as f64;
        let on = if model.is_empty() { String::new() } else { format!("{model}: ") };
        let _ = writeln!(
            md,
            "- {on}{axis} groups: rotation changes the cost by {mean:+.3} points on average over \
             {} configuration(s) ({}).",
            changes.len(),
            match mean {
                m if m < -MATERIAL => "it helps",
                m if m > MATERIAL => "it hurts",
                _ => "no material change",
            }
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Workload;

    fn table(rows: &[[&str; 6]]) -> Table {
        let header = ["run_id", "strategy", "bits", "quant_axis", "rotation", "ppl_delta_pct"];
        Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    #[test]
    fn pairs_rotated_runs_with_their_twins_and_summarizes_per_axis() {
        let t = table(&[
            ["s;bits=4;quant_axis=kivi;rotation=none", "static", "4", "kivi", "none", "3.0"],
            [
                "s;bits=4;quant_axis=kivi;rotation=hadamard",
                "static",
                "4",
                "kivi",
                "hadamard",
                "1.0",
            ],
            [
                "s;bits=4;quant_axis=per-token;rotation=none",
                "static",
                "4",
                "per-token",
                "none",
                "7",
            ],
            [
                "s;bits=4;quant_axis=per-token;rotation=hadamard",
                "static",
                "4",
                "per-token",
                "hadamard",
                "8",
            ],
            ["s;bits=32;rotation=none", "static", "32", "", "none", "0"],
            ["s;bits=32;rotation=hadamard", "static", "32", "", "hadamard", "0.0001"],
            ["c", "concat", "", "", "", "0"],
        ]);
        let md = section(&t);
        assert!(md.contains("| static, int4, kivi | +3.000 | +1.000 | -2.000 |"), "{md}");
        assert!(md.contains("| static, f32 | +0.000 | +0.000 | +0.000 |"), "{md}");
        assert!(
            md.contains("int4 `kivi` groups: rotation changes the cost by -2.000 points"),
            "{md}"
        );
        let per_token = "int4 `per-token` groups: rotation changes the cost by +1.000 points on \
                         average over 1 configuration(s) (it hurts)";
        assert!(md.contains(per_token), "{md}");
        assert_eq!(md.matches("\n| static").count(), 3, "concat has no twin: {md}");
    }

    #[test]
    fn with_several_models_each_row_and_summary_names_its_model() {
        let header = ["run_id", "model", "strategy", "bits", "quant_axis", "rotation"];
        let mut rows = vec![];
        for (model, plain, rotated) in [("a", "5", "3"), ("b", "5", "900")] {
            for (rotation, delta) in [("none", plain), ("hadamard", rotated)] {
                let id = format!("model={model};s;bits=4;quant_axis=per-token;rotation={rotation}");
                rows.push(vec![
                    id,
                    model.into(),
                    "static".into(),
                    "4".into(),
                    "per-token".into(),
                    rotation.into(),
                    delta.into(),
                ]);
            }
        }
        let t = Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|s| s.to_string()).chain(["ppl_delta_pct".into()]).collect(),
            rows,
        };
        let md = section(&t);
        assert!(md.contains("| a | static, int4, per-token | +5.000 | +3.000 | -2.000 |"), "{md}");
        assert!(md.contains("- a: int4 `per-token` groups: rotation changes the cost by -2.000"));
        assert!(md.contains("- b: int4 `per-token` groups: rotation changes the cost by +895.000"));
    }

    #[test]
    fn no_rotation_column_no_section() {
        let t = table(&[["c", "concat", "", "", "", "0"]]);
        assert_eq!(section(&t), "");
    }
}

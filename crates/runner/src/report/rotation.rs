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

/// The section, or nothing when the table has no run with and without rotation.
pub fn section(t: &Table) -> String {
    let mut pairs: BTreeMap<String, (Option<f64>, Option<f64>, String, String)> = BTreeMap::new();
    for row in &t.rows {
        let rotation = t.get(row, "rotation");
        let Some(delta) = t.num(row, "ppl_delta_pct") else { continue };
        let axis = t.get(row, "quant_axis");
        let group = if axis.is_empty() {
            String::new()
        } else {
            format!("int{} `{axis}`", t.get(row, "bits"))
        };
        let entry = pairs.entry(twin_key(t.get(row, "run_id"))).or_insert((
            None,
            None,
            configuration(t, row),
            group,
        ));
        match rotation {
            "none" => entry.0 = Some(delta),
            "hadamard" => entry.1 = Some(delta),
            _ => {}
        }
    }
    let both: Vec<_> = pairs
        .values()
        .filter_map(|(plain, rotated, name, axis)| Some((name, axis, (*plain)?, (*rotated)?)))
        .collect();
    if both.is_empty() {
        return String::new();
    }
    let mut md = String::from("## Hadamard rotation before encoding\n\n");
    md += "The change in perplexity against the full cache (`ppl_delta_pct`, percent) of each \
           configuration without and with the rotation of every head vector by an orthonormal \
           Hadamard matrix before it is encoded (llama.cpp's default for quantized caches). With \
           f32 storage it must change nothing.\n\n";
    md += "| configuration | without | with | change (points) |\n|---|---|---|---|\n";
    for (name, _, plain, rotated) in &both {
        let _ = writeln!(md, "| {name} | {plain:+.3} | {rotated:+.3} | {:+.3} |", rotated - plain);
    }
    md.push('\n');
    // Per bits and grouping axis: the mean change of the quantized configurations.
    let mut by_axis: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (_, axis, plain, rotated) in &both {
        if !axis.is_empty() {
            by_axis.entry(axis.as_str()).or_default().push(rotated - plain);
        }
    }
    for (axis, changes) in by_axis {
        let mean = changes.iter().sum::<f64>() / changes.len() as f64;
        let _ = writeln!(
            md,
            "- {axis} groups: rotation changes the cost by {mean:+.3} points on average over {} \
             configuration(s) ({}).",
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
    fn no_rotation_column_no_section() {
        let t = table(&[["c", "concat", "", "", "", "0"]]);
        assert_eq!(section(&t), "");
    }
}

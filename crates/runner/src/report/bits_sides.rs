//! Keys or values: which tolerates fewer bits? Every pair of runs that swaps the two sides'
//! widths (K8V2 and K2V8, all else equal) says which side lost less when it was the narrow one;
//! the section counts the pairs each way, per model, and lists them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::bits_names::{configuration, side_bits};
use super::table::Table;

/// The run id without its widths: what a pair shares.
fn pair_key(run_id: &str) -> String {
    let widths = ["bits=", "key_bits=", "value_bits="];
    run_id
        .split(';')
        .filter(|p| !widths.iter().any(|w| p.starts_with(w)))
        .collect::<Vec<_>>()
        .join(";")
}

/// One run of a pair: its configuration's name and what it cost.
#[derive(Debug, Clone)]
struct Cost {
    name: String,
    ppl_delta: f64,
    kl: Option<f64>,
}

/// One swap: the run with the narrow values, the run with the narrow keys.
struct Swap {
    narrow_values: Cost,
    narrow_keys: Cost,
}

/// The section for one model's rows (`model` names it), or nothing without a swapped pair.
pub fn section(p: &Table, model: &str) -> String {
    // Per shared key, per (key bits, value bits): what the run cost.
    let mut runs: BTreeMap<String, BTreeMap<(u32, u32), Cost>> = BTreeMap::new();
    for row in &p.rows {
        let Some(delta) = p.num(row, "ppl_delta_pct") else { continue };
        let schemes_differ =
            !p.get(row, "key_scheme").is_empty() || !p.get(row, "value_scheme").is_empty();
        if schemes_differ {
            continue;
        }
        let entry =
            Cost { name: configuration(p, row), ppl_delta: delta, kl: p.num(row, "kl_mean") };
        runs.entry(pair_key(p.get(row, "run_id"))).or_default().insert(side_bits(p, row), entry);
    }
    let mut swaps = vec![];
    for widths in runs.values() {
        for (&(k, v), narrow_values) in widths {
            if k <= v {
                continue;
            }
            if let Some(narrow_keys) = widths.get(&(v, k)) {
                swaps.push(Swap {
                    narrow_values: narrow_values.clone(),
                    narrow_keys: narrow_keys.clone(),
                });
            }
        }
    }
    if swaps.is_empty() {
        return String::new();
    }
    let values_win =
        swaps.iter().filter(|s| s.narrow_values.ppl_delta < s.narrow_keys.ppl_delta).count();
    let verdict = match values_win {
        n if n == swaps.len() => {
            "**values tolerate fewer bits than keys** in every pair".to_string()
        }
        0 => "**keys tolerate fewer bits than values** in every pair".to_string(),
        n => {
            format!("values tolerate fewer bits in {n} of {} pairs, keys in the rest", swaps.len())
        }
    };
    let mut md = format!("## Keys or values: which tolerates fewer bits? ({model})\n\n");
    let _ = writeln!(
        md,
        "Each pair swaps the widths of keys and values, all else equal; the side that can be the \
         narrow one costs less when it is. On {model}, {verdict}.\n"
    );
    md += "| narrow values | ppl change % | KL | narrow keys | ppl change % | KL |\n\
           |---|---|---|---|---|---|\n";
    let kl = |k: Option<f64>| k.map_or("—".into(), |k| format!("{k:.4}"));
    for s in &swaps {
        let _ = writeln!(
            md,
            "| {} | {:+.2} | {} | {} | {:+.2} | {} |",
            s.narrow_values.name,
            s.narrow_values.ppl_delta,
            kl(s.narrow_values.kl),
            s.narrow_keys.name,
            s.narrow_keys.ppl_delta,
            kl(s.narrow_keys.kl)
        );
    }
    md.push('\n');
    md
}

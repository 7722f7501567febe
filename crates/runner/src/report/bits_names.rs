//! How the bits sections name a configuration: `int4 kivi`, `K8V4 per-token`, `int3 lloyd-max
//! +H`, `rank 32 int8`, `h2o@256 int4 kivi`: the strategy keys that are set, in a few words.

use super::table::Table;

/// The bits of keys and of values a row ran with (32: f32).
pub(super) fn side_bits(t: &Table, row: &[String]) -> (u32, u32) {
    let bits = |key: &str| t.get(row, key).parse::<u32>().ok();
    let base = bits("bits").unwrap_or(32);
    (bits("key_bits").unwrap_or(base), bits("value_bits").unwrap_or(base))
}

/// Whether the row keeps every value of every token in f32 (the reference a share is of).
pub(super) fn is_full_precision(t: &Table, row: &[String]) -> bool {
    side_bits(t, row) == (32, 32)
        && t.get(row, "rank").is_empty()
        && t.get(row, "cache_tokens").is_empty()
        && matches!(t.get(row, "strategy"), "static" | "concat")
}

/// A short name of the row's configuration.
pub(super) fn configuration(t: &Table, row: &[String]) -> String {
    let mut parts = vec![];
    match (t.get(row, "strategy"), t.get(row, "cache_tokens")) {
        ("static" | "concat", _) => {}
        (kind, "") => parts.push(kind.to_string()),
        (kind, budget) => parts.push(format!("{kind}@{budget}")),
    }
    let rank = t.get(row, "rank");
    if !rank.is_empty() {
        parts.push(format!("rank {rank}"));
    }
    let (k, v) = side_bits(t, row);
    let apart = !t.get(row, "key_bits").is_empty() || !t.get(row, "value_bits").is_empty();
    parts.push(match (k, v) {
        (32, 32) => "f32".to_string(),
        _ if apart || k != v => format!("K{k}V{v}"),
        _ => format!("int{k}"),
    });
    if (k, v) != (32, 32) {
        let axis = t.get(row, "quant_axis");
        if !axis.is_empty() {
            parts.push(axis.to_string());
        }
        // Groups of 32 are the default; another width changes the metadata's bytes.
        match t.get(row, "group_size") {
            "" | "32" => {}
            g => parts.push(format!("g{g}")),
        }
        let scheme = |key: &str| match t.get(row, key) {
            "" => t.get(row, "scheme"),
            s => s,
        };
        let (ks, vs) = (scheme("key_scheme"), scheme("value_scheme"));
        match (ks, vs) {
            ("", "") | ("asymmetric", "asymmetric") => {}
            _ if ks == vs => parts.push(ks.to_string()),
            _ => parts.push(format!("{}/{}", nonempty(ks), nonempty(vs))),
        }
        let residual = t.get(row, "residual");
        if !matches!(residual, "" | "0") {
            parts.push(format!("residual {residual}"));
        }
    }
    if t.get(row, "rotation") == "hadamard" {
        parts.push("+H".into());
    }
    parts.join(" ")
}

/// The family a row's point joins in a chart: its configuration without the widths and the
/// rank (which move it along the bytes axis).
pub(super) fn family(t: &Table, row: &[String]) -> String {
    let mut words: Vec<String> = configuration(t, row)
        .split(' ')
        .filter(|w| !(w.starts_with("int") || w.starts_with('K') && w.contains('V')))
        .map(String::from)
        .collect();
    if let Some(i) = words.iter().position(|w| w == "rank") {
        words.drain(i..=i + 1);
        words.insert(0, "low-rank".into());
    }
    let (k, v) = side_bits(t, row);
    if k != v || !t.get(row, "key_bits").is_empty() || !t.get(row, "value_bits").is_empty() {
        // A line per value width: its points are the key widths.
        words.insert(0, format!("K/V apart, V{v},"));
    }
    match words.join(" ") {
        w if w.is_empty() || w == "f32" => "f32".into(),
        w => w.replace("f32 ", ""),
    }
}

fn nonempty(s: &str) -> &str {
    if s.is_empty() { "asymmetric" } else { s }
}

//! How a serving run is named in legends and tables: its policy, then the serving axes that
//! differ from their defaults.

use super::table::Table;

/// The serving axes a legend names, after the policy: column, and how its value reads
/// (`None`: the default, left out).
pub(super) type Reading = fn(&str) -> Option<String>;
pub(super) const LABELLED: [(&str, Reading); 9] = [
    ("trace_kind", |v| Some(v.to_string())),
    ("sharing", |v| (v == "on").then(|| "shared".into())),
    ("preemption", |v| (v == "swap").then(|| "swap".into())),
    ("prompt_tokens", |v| Some(format!("prompt {v}"))),
    ("evict", |v| (v != "off").then(|| v.to_string())),
    ("keep_tokens", |v| Some(format!("keep {v}"))),
    ("compaction", |v| (v == "on").then(|| "compacted".into())),
    ("cost", |v| Some(format!("({v})"))),
    ("attention", |v| (v == "fused").then(|| "fused".into())),
];

/// A run's legend name: `paged-16`, `reserve-max`, `paged-16 samples shared`,
/// `paged-16 sink keep 256 compacted`, `paged-16 swap prompt 1024 (gpu)`.
pub(crate) fn policy_label(t: &Table, r: &[String]) -> String {
    let col = |c: &str| if t.header.iter().any(|h| h == c) { t.get(r, c) } else { "" };
    named_policy(t.get(r, "policy"), t.get(r, "block_size"), LABELLED.map(|(c, _)| col(c)))
}

/// A serving table row's first cells: `| model | trace | budget_tokens | run label |`.
pub(crate) fn lead_cells(t: &Table, r: &[String]) -> String {
    format!(
        "| {} | {} | {} | {} |",
        t.get(r, "model"),
        t.get(r, "trace"),
        t.get(r, "kv_budget_tokens"),
        policy_label(t, r)
    )
}

/// `paged-16` (or `reserve-max`), then each non-default value of [`LABELLED`], in its order.
pub(super) fn named_policy(
    policy: &str,
    block_size: &str,
    values: [&str; LABELLED.len()],
) -> String {
    let mut name = match block_size {
        "" => policy.to_string(),
        b => format!("{policy}-{b}"),
    };
    for ((_, read), value) in LABELLED.iter().zip(values) {
        if let Some(piece) = (!value.is_empty()).then(|| read(value)).flatten() {
            name += " ";
            name += &piece;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_named_with_their_block_size() {
        assert_eq!(named_policy("paged", "16", [""; 9]), "paged-16");
        let plain = ["", "off", "recompute", "", "off", "", "off", "", "dense"];
        assert_eq!(named_policy("reserve-max", "", plain), "reserve-max");
        assert_eq!(
            named_policy(
                "paged",
                "16",
                ["samples", "on", "swap", "1024", "", "", "", "gpu", "fused"]
            ),
            "paged-16 samples shared swap prompt 1024 (gpu) fused"
        );
        assert_eq!(
            named_policy("paged", "16", ["", "", "", "", "sink", "256", "on", "", ""]),
            "paged-16 sink keep 256 compacted"
        );
    }
}

//! Keep-policies beside their papers: at each cache budget, the policies ranked by how much of
//! the full cache's quality they keep, and each paper's headline claim checked against the
//! ranking (held at which budgets, missed at which, by how much).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::table::Table;

/// The policies this section ranks, in the order the papers came.
const POLICIES: [&str; 5] = ["window", "sink", "h2o", "tova", "key-norm"];

/// Per (model, budget), per policy: (ppl_delta_pct, kl_mean, top1_agree_pct). The model is
/// empty when the table holds one: policies are never ranked across models.
type Scores = BTreeMap<(String, u64), BTreeMap<&'static str, (f64, Option<f64>, Option<f64>)>>;

/// `128`, or `128 on gemma3-270m` when the table holds several models.
fn label((model, budget): &(String, u64)) -> String {
    if model.is_empty() { budget.to_string() } else { format!("{budget} on {model}") }
}

fn scores(t: &Table) -> Scores {
    let several = t.models().len() > 1;
    let mut out: Scores = BTreeMap::new();
    for row in &t.rows {
        let Some(policy) = POLICIES.iter().find(|&&p| p == t.get(row, "strategy")) else {
            continue;
        };
        let (Some(budget), Some(delta)) = (t.num(row, "cache_tokens"), t.num(row, "ppl_delta_pct"))
        else {
            continue;
        };
        let kl = t.num(row, "kl_mean");
        let top1 = t.num(row, "top1_agree_pct");
        let model = if several { t.get(row, "model").to_string() } else { String::new() };
        out.entry((model, budget as u64)).or_default().insert(policy, (delta, kl, top1));
    }
    out
}

/// A claim "`better` beats `worse`" at every budget where both ran: where it holds, where not.
fn beats(s: &Scores, better: &str, worse: &str) -> Option<String> {
    let (mut held, mut missed) = (vec![], vec![]);
    for (at, row) in s {
        let (Some(b), Some(w)) = (row.get(better), row.get(worse)) else { continue };
        let line = format!("{} ({:+.1}% vs {:+.1}%)", label(at), b.0, w.0);
        if b.0 < w.0 { held.push(line) } else { missed.push(line) }
    }
    (!held.is_empty() || !missed.is_empty()).then(|| verdict(&held, &missed))
}

fn verdict(held: &[String], missed: &[String]) -> String {
    match (held.is_empty(), missed.is_empty()) {
        (false, true) => format!("**holds** at every budget: {}", held.join(", ")),
        (true, false) => format!("**does not hold** at any budget: {}", missed.join(", ")),
        _ => format!("holds at {}; **not** at {}", held.join(", "), missed.join(", ")),
    }
}

/// The section, or nothing when the table ranks no attention-scored policy beside a window.
pub fn section(t: &Table) -> String {
    let s = scores(t);
    let has = |p: &str| s.values().any(|row| row.contains_key(p));
    if !has("window") || !["h2o", "tova", "key-norm"].iter().any(|p| has(p)) {
        return String::new();
    }
    let several = s.keys().any(|(model, _)| !model.is_empty());
    let mut md = String::from(
        "## Keep-policies beside their papers\n\nPerplexity change against the full cache \
         (lower is better), mean KL(full ‖ policy) and top-1 agreement, per budget; the \
         policies ranked by perplexity change.\n\n",
    );
    md += if several { "| model " } else { "" };
    md += "| budget | rank | policy | ppl Δ% | KL mean | top-1 % |\n";
    md += if several { "|---" } else { "" };
    md += "|---:|---:|---|---:|---:|---:|\n";
    for ((model, budget), row) in &s {
        let model = if several { format!("| {model} ") } else { String::new() };
        let mut ranked: Vec<_> = row.iter().collect();
        ranked.sort_by(|a, b| a.1.0.total_cmp(&b.1.0));
        for (rank, (policy, (delta, kl, top1))) in ranked.into_iter().enumerate() {
            let kl = kl.map_or("".into(), |k| format!("{k:.4}"));
            let top1 = top1.map_or("".into(), |a| format!("{a:.1}"));
            let _ = writeln!(
                md,
                "{model}| {budget} | {} | {policy} | {delta:+.2} | {kl} | {top1} |",
                rank + 1
            );
        }
    }
    md += "\nThe papers' claims, checked here (budget: policy's ppl Δ vs the other's):\n\n";
    let claims = [
        (
            "h2o",
            "window",
            "H2O (Zhang et al., 2023): heavy hitters plus recent tokens beat the recent window alone",
        ),
        (
            "tova",
            "window",
            "TOVA (Oren et al., 2024): dropping the least-attended token beats the window",
        ),
        ("tova", "h2o", "TOVA (Oren et al., 2024): and beats H2O at equal budget"),
        ("sink", "window", "StreamingLLM (Xiao et al., 2024): a few sink tokens rescue the window"),
        (
            "key-norm",
            "window",
            "key-norm (Devoto et al., 2024): low-norm keys are a better keep-set than the newest",
        ),
    ];
    for (better, worse, claim) in claims {
        if let Some(v) = beats(&s, better, worse) {
            let _ = writeln!(md, "- {claim}: {v}.");
        }
    }
    // StreamingLLM's figure puts sink on a par with H2O once the budget is large: the largest
    // budget where both ran, per model.
    let mut largest: BTreeMap<&str, (&(String, u64), f64, f64)> = BTreeMap::new();
    for (at, row) in &s {
        if let (Some(sink), Some(h2o)) = (row.get("sink"), row.get("h2o")) {
            largest.insert(at.0.as_str(), (at, sink.0, h2o.0));
        }
    }
    for (at, sink, h2o) in largest.into_values() {
        let _ = writeln!(
            md,
            "- StreamingLLM (Xiao et al., 2024): sink ≈ H2O at large budgets: at {}, sink \
             {sink:+.2}% vs H2O {h2o:+.2}% ({:.2} points apart).",
            label(at),
            (sink - h2o).abs()
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Workload;

    fn table(rows: &[[&str; 4]]) -> Table {
        let header = ["strategy", "cache_tokens", "ppl_delta_pct", "top1_agree_pct"];
        Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    #[test]
    fn ranks_per_budget_and_checks_each_claim_where_both_ran() {
        let t = table(&[
            ["concat", "", "0", "100"],
            ["window", "128", "40", "50"],
            ["h2o", "128", "10", "70"],
            ["window", "256", "20", "60"],
            ["h2o", "256", "25", "58"],
            ["sink", "256", "24", "59"],
        ]);
        let md = section(&t);
        assert!(md.contains("| 128 | 1 | h2o | +10.00 |  | 70.0 |"), "{md}");
        assert!(md.contains("| 256 | 1 | window | +20.00 |"), "{md}");
        assert!(md.contains("beat the recent window alone: holds at 128 (+10.0% vs +40.0%); **not** at 256 (+25.0% vs +20.0%)."), "{md}");
        assert!(md.contains("at 256, sink +24.00% vs H2O +25.00% (1.00 points apart)"), "{md}");
        assert!(!md.contains("TOVA"), "no TOVA run, no TOVA claim: {md}");
    }

    #[test]
    fn ranks_each_model_apart() {
        let header = ["model", "strategy", "cache_tokens", "ppl_delta_pct"];
        let rows = [
            ["a", "window", "128", "40"],
            ["a", "h2o", "128", "10"],
            ["b", "window", "128", "5"],
            ["b", "h2o", "128", "9"],
        ];
        let t = Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        };
        let md = section(&t);
        assert!(md.contains("| a | 128 | 1 | h2o | +10.00 |"), "{md}");
        assert!(md.contains("| b | 128 | 1 | window | +5.00 |"), "{md}");
        assert!(md.contains("holds at 128 on a (+10.0% vs +40.0%); **not** at 128 on b"), "{md}");
    }

    #[test]
    fn says_nothing_without_a_scored_policy_beside_a_window() {
        assert!(
            section(&table(&[["window", "128", "40", "50"], ["sink", "128", "9", "80"]]))
                .is_empty()
        );
    }
}

//! A results CSV read back as a [`Table`]: rows in a fixed order, the columns that tell rows
//! apart, and the labels that name a row in a chart.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use kvlab_strategies::StrategyKind;

use crate::csv_sink;
use crate::sweep::{AXES, Workload};

/// Bytes in a MiB: byte columns are shown in MiB.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// A CSV as read back: header and rows, sorted by parameters.
#[derive(Debug, Clone)]
pub struct Table {
    pub workload: Workload,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Reads `<dir>/<workload>.csv`, rows sorted by (backend, axis columns in AXES order, run_id).
pub fn read_table(dir: &Path, workload: Workload) -> Result<Option<Table>> {
    let path = dir.join(format!("{}.csv", workload.name()));
    if !path.is_file() {
        return Ok(None);
    }
    let (header, mut rows) = csv_sink::read(&path)?;
    let mut keys: Vec<String> = vec!["backend".into()];
    keys.extend(AXES.iter().map(|a| a.key.to_string()));
    keys.push("mode".into());
    keys.push("run_id".into());
    let idx: Vec<(String, usize)> = keys
        .into_iter()
        .filter_map(|k| header.iter().position(|h| *h == k).map(|i| (k, i)))
        .collect();
    rows.sort_by(|a, b| {
        idx.iter()
            .map(|(k, i)| cmp_values(k, &a[*i], &b[*i]))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    Ok(Some(Table { workload, header, rows }))
}

/// Strategies in their declaration order (simplest first), numbers by value, the rest as text.
fn cmp_values(col: &str, a: &str, b: &str) -> Ordering {
    if col == "strategy" {
        let pos = |s: &str| StrategyKind::all().position(|k| k.name() == s);
        return pos(a).cmp(&pos(b)).then_with(|| a.cmp(b));
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

impl Table {
    pub(super) fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The cell of `row` in column `name`; empty where the column is absent.
    pub(super) fn get<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        self.col(name).and_then(|i| row.get(i)).map_or("", String::as_str)
    }

    pub(super) fn num(&self, row: &[String], name: &str) -> Option<f64> {
        self.get(row, name).parse().ok()
    }

    /// The parameter columns of this table (backend, sweep axes, perplexity's mode), in order.
    fn parameter_columns(&self) -> impl Iterator<Item = String> + '_ {
        let mode = (self.workload == Workload::Perplexity).then(|| "mode".to_string());
        std::iter::once("backend".to_string())
            .chain(AXES.iter().map(|a| a.key.to_string()))
            .chain(mode)
            .filter(|n| self.col(n).is_some())
    }

    /// The distinct values of `col`, empty cells included.
    fn values(&self, col: &str) -> BTreeSet<&str> {
        self.rows.iter().map(|r| self.get(r, col)).collect()
    }

    /// Parameter columns whose value varies across rows (an empty cell counts as a value: it
    /// says the parameter does not apply), and always the strategy: the markdown table's
    /// columns.
    pub(super) fn varying(&self) -> Vec<String> {
        self.parameter_columns().filter(|n| self.values(n).len() > 1 || n == "strategy").collect()
    }

    /// What a chart label names: parameter columns with two or more distinct non-empty values,
    /// and a column set on some rows only (`scheme = q4_0`, `kv_heads = 1` beside the model's
    /// own heads) where two rows would otherwise get one label and be drawn as one series.
    /// A key set to one value wherever it applies (`group_size = 32`) tells no series apart.
    pub(super) fn label_keys(&self) -> Vec<String> {
        let columns: Vec<String> = self.parameter_columns().collect();
        let non_empty = |n: &str| self.values(n).into_iter().filter(|v| !v.is_empty()).count();
        let mut keys: Vec<&str> =
            columns.iter().map(String::as_str).filter(|n| non_empty(n) > 1).collect();
        // Words (`q4_0`) before numbers (`group_size=32`): the first column that tells two
        // rows apart is the one named.
        let mut partial: Vec<&str> = columns
            .iter()
            .map(String::as_str)
            .filter(|n| non_empty(n) == 1 && self.values(n).contains(""))
            .collect();
        partial.sort_by_key(|n| self.rows.iter().any(|r| self.num(r, n).is_some()));
        for column in partial {
            if self.tells_apart(&keys, column) {
                keys.push(column);
            }
        }
        columns.iter().filter(|c| keys.contains(&c.as_str())).cloned().collect()
    }

    /// Whether two rows equal on every one of `keys` differ in whether `column` is set.
    fn tells_apart(&self, keys: &[&str], column: &str) -> bool {
        fn signature<'r>(t: &Table, keys: &[&str], r: &'r [String]) -> Vec<&'r str> {
            keys.iter().map(|k| t.get(r, k)).collect()
        }
        let (set, unset): (Vec<&Vec<String>>, Vec<&Vec<String>>) =
            self.rows.iter().partition(|r| !self.get(r, column).is_empty());
        let unset: BTreeSet<Vec<&str>> = unset.iter().map(|r| signature(self, keys, r)).collect();
        set.iter().any(|r| unset.contains(&signature(self, keys, r)))
    }

    /// The legend text of `row`: its values of `keys` except `except`, as [`label_of`] words
    /// them; the row's strategy where no key is left, so a lone series still has a name.
    pub(super) fn label(&self, row: &[String], keys: &[String], except: &[&str]) -> String {
        let pairs: Vec<(&str, &str)> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| !except.contains(k))
            .map(|k| (k, self.get(row, k)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        match label_of(&pairs) {
            label if !label.is_empty() => label,
            _ => match self.get(row, "strategy") {
                "" => "all".into(),
                strategy => strategy.into(),
            },
        }
    }

    /// The models of the rows, sorted.
    pub(super) fn models(&self) -> Vec<String> {
        let models: BTreeSet<&str> = self.values("model");
        models.into_iter().map(String::from).collect()
    }

    /// The rows of one model: each model gets its own charts, as their scales differ by
    /// orders of magnitude.
    pub(super) fn only_model(&self, model: &str) -> Table {
        Table {
            workload: self.workload,
            header: self.header.clone(),
            rows: self.rows.iter().filter(|r| self.get(r, "model") == model).cloned().collect(),
        }
    }
}

/// `key=value` for numbers and `none` (a bare `4` or `none` says nothing), the value alone for names (`sink`,
/// `kivi`, `flex`), and a name left out where another key already says it: `sink_tokens=1` is
/// a sink's, so the label is not "sink, sink_tokens=1".
fn label_of(pairs: &[(&str, &str)]) -> String {
    let implied = |key: &str, value: &str| {
        pairs.iter().any(|&(other, _)| other != key && other.split('_').any(|w| w == value))
    };
    pairs
        .iter()
        .filter_map(|&(key, value)| {
            // A bare number or a bare "none" says nothing of what it is.
            if value.parse::<f64>().is_ok() || value == "none" {
                Some(format!("{key}={value}"))
            } else if implied(key, value) {
                None
            } else {
                Some(value.to_string())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(header: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    fn sink_table() -> Table {
        table(
            &["strategy", "cache_tokens", "sink_tokens", "group_size", "ppl"],
            &[
                &["concat", "", "", "", "33.7"],
                &["window", "512", "", "", "59.1"],
                &["sink", "256", "1", "32", "37.6"],
                &["sink", "256", "2", "32", "37.7"],
            ],
        )
    }

    #[test]
    fn a_strategy_named_by_its_parameter_is_not_repeated() {
        let t = sink_table();
        let keys = t.label_keys();
        assert_eq!(t.label(&t.rows[2], &keys, &["cache_tokens"]), "sink_tokens=1");
        assert_eq!(t.label(&t.rows[1], &keys, &["cache_tokens"]), "window");
        assert_eq!(t.label(&t.rows[3], &keys, &[]), "cache_tokens=256, sink_tokens=2");
        for row in &t.rows {
            let label = t.label(row, &keys, &[]);
            let words: Vec<&str> = label.split([' ', ',', '=']).filter(|w| !w.is_empty()).collect();
            let unique: BTreeSet<&str> = words.iter().copied().collect();
            assert_eq!(unique.len(), words.len(), "repeated word in '{label}'");
            assert!(!label.contains("sink sink"), "{label}");
        }
    }

    #[test]
    fn a_key_with_one_value_is_not_in_labels_but_stays_a_table_column() {
        let t = sink_table();
        // group_size is 32 wherever it applies: it tells no series apart.
        assert_eq!(t.label_keys(), ["strategy", "cache_tokens", "sink_tokens"]);
        assert!(t.varying().contains(&"group_size".to_string()));
        assert!(!t.label(&t.rows[2], &t.label_keys(), &[]).contains("group_size"));
    }

    #[test]
    fn a_key_set_on_some_rows_is_named_where_it_alone_tells_two_rows_apart() {
        let header = ["strategy", "bits", "group_size", "scheme", "kv_heads", "ppl"];
        let t = table(
            &header,
            &[
                &["static", "4", "", "", "", "9"],
                &["static", "4", "32", "q4_0", "", "12"],
                &["static", "32", "", "", "", "5"],
                &["static", "32", "", "", "1", "900"],
                &["sink", "", "", "", "", "6"],
            ],
        );
        // The word (`q4_0`) is named rather than the number (`group_size=32`) that also tells
        // the two int4 rows apart; kv_heads tells the converted f32 row from the plain one.
        assert_eq!(t.label_keys(), ["strategy", "bits", "scheme", "kv_heads"]);
        let labels: Vec<String> =
            t.rows.iter().map(|r| t.label(r, &t.label_keys(), &["bits"])).collect();
        assert_eq!(labels, ["static", "static, q4_0", "static", "static, kv_heads=1", "sink"]);
    }

    #[test]
    fn a_row_with_nothing_left_to_name_is_named_by_its_strategy() {
        let t = table(&["strategy", "context", "decode_tok_per_s"], &[&["window", "1024", "9"]]);
        assert_eq!(t.label(&t.rows[0], &t.label_keys(), &["context"]), "window");
        let no_strategy = table(&["policy", "budget_tokens"], &[&["paged", "1024"]]);
        assert_eq!(no_strategy.label(&no_strategy.rows[0], &[], &[]), "all");
    }

    #[test]
    fn names_stand_alone_and_numbers_carry_their_key() {
        let pairs = [("kv_heads", "1"), ("head_reduction", "first-head"), ("batch", "4")];
        assert_eq!(label_of(&pairs), "kv_heads=1, first-head, batch=4");
        assert_eq!(
            label_of(&[("strategy", "paged"), ("block_size", "16")]),
            "paged, block_size=16"
        );
        assert_eq!(label_of(&[("rotation", "none")]), "rotation=none");
    }

    #[test]
    fn strategies_sort_in_declaration_order_and_numbers_by_value() {
        assert_eq!(cmp_values("strategy", "concat", "sink"), Ordering::Less);
        assert_eq!(cmp_values("context", "512", "1024"), Ordering::Less);
        assert_eq!(cmp_values("mode", "streaming", "chunked"), Ordering::Greater);
    }
}

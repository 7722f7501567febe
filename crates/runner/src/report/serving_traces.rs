//! Per-iteration series of the serving simulation's side CSV, one per run label.

use super::figure::{Point, Series};
use super::serving_labels::{LABELLED, named_policy};

/// Whether a series row is wanted, given a reader of its cells by column name.
pub(crate) type RowFilter = dyn Fn(&dyn Fn(&str) -> String) -> bool;

/// `column` × `scale` per iteration, a series per run label, from the side CSV's rows of one
/// model and budget that `keep` accepts (given a cell reader). `None` when the CSV lacks a
/// column or no row is left.
pub fn traces(
    header: &[String],
    rows: &[Vec<String>],
    model: &str,
    budget: &str,
    column: &str,
    scale: f64,
    keep: &RowFilter,
) -> Option<Vec<Series>> {
    let col = |n: &str| header.iter().position(|c| c == n);
    let (m, b, it, y_col, p, bs) = (
        col("model")?,
        col("kv_budget_bytes")?,
        col("iteration")?,
        col(column)?,
        col("policy")?,
        col("block_size")?,
    );
    // A series CSV written before an axis existed lacks its column: read as empty.
    let extra = LABELLED.map(|(c, _)| col(c));
    let mut series: Vec<Series> = vec![];
    for r in rows.iter().filter(|r| r[m] == model && r[b] == budget) {
        let cell = |name: &str| col(name).map_or(String::new(), |c| r[c].clone());
        if !keep(&cell) {
            continue;
        }
        let (Ok(x), Ok(y)) = (r[it].parse::<f64>(), r[y_col].parse::<f64>()) else { continue };
        let value = |c: Option<usize>| c.map_or("", |c| r[c].as_str());
        let label = named_policy(&r[p], &r[bs], extra.map(value));
        let point = Point { x, y: y * scale, expected: None };
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(Series { label, points: vec![point] }),
        }
    }
    (!series.is_empty()).then(|| merge_identical(series))
}

/// Series with the same points drawn once, their labels joined with " = " (runs whose
/// schedules coincide — the two preemption modes of one trace in iterations, a window with
/// and without compaction — would otherwise hide each other and their legend entries).
fn merge_identical(series: Vec<Series>) -> Vec<Series> {
    let mut merged: Vec<Series> = vec![];
    for s in series {
        match merged.iter_mut().find(|m| m.points == s.points) {
            Some(m) => {
                m.label += " = ";
                m.label += &s.label;
            }
            None => merged.push(s),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_series_are_drawn_once() {
        let p = |y| Point { x: 1.0, y, expected: None };
        let s = |label: &str, y| Series { label: label.into(), points: vec![p(y)] };
        let merged = merge_identical(vec![s("a", 1.0), s("b", 2.0), s("c", 1.0)]);
        let labels: Vec<&str> = merged.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["a = c", "b"]);
    }
}

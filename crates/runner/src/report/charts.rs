//! Which charts a workload's rows get, and their series: the data side of the pictures (the
//! drawing is `figure`'s).

use super::figure::{Chart, Level, Point, Series, XAxis};
use super::serving_labels::policy_label;
use super::table::{MIB, Table};
use crate::sweep::Workload;

/// The legend's name for the memory formula the measured bytes are checked against.
const FORMULA: &str = "formula 2·L·b·n_kv·d·layers·4";

/// The charts shown under a workload's table, for one model's rows; charts without data are
/// left out.
pub(crate) fn workload_charts(t: &Table) -> Vec<Chart> {
    let charts = match t.workload {
        Workload::Memory => vec![memory_vs_context(t)],
        Workload::Throughput => vec![decode_vs_context(t)],
        Workload::Perplexity => [ppl_vs_cache(t), ppl_vs_bits(t)]
            .into_iter()
            .flatten()
            .map(leave_out_off_scale)
            .collect(),
        Workload::Fragmentation => against_budget(t),
        Workload::Walkthrough | Workload::Retrieval => vec![],
    };
    charts.into_iter().filter(|c| !c.is_empty()).collect()
}

/// What a trade-off chart puts against KV memory.
pub(crate) struct Quality<'a> {
    pub column: &'a str,
    /// What the chart's title calls it.
    pub subject: &'a str,
    /// The y axis.
    pub label: &'a str,
    pub higher_is_better: bool,
}

pub(crate) const PERPLEXITY: Quality<'static> =
    Quality { column: "ppl", subject: "Perplexity", label: "perplexity", higher_is_better: false };
pub const KL: Quality<'static> = Quality {
    column: "kl_mean",
    subject: "KL divergence from the full cache",
    label: "mean KL(full ‖ run) per token, nats",
    higher_is_better: false,
};
pub(crate) const ACCURACY: Quality<'static> = Quality {
    column: "accuracy_pct",
    subject: "Passkey retrieval accuracy",
    label: "accuracy (%)",
    higher_is_better: true,
};

/// A quality measure against the KV memory it costs, for one model's rows: a line per
/// configuration through its cache budgets or bit widths (what sets its memory), and the
/// Pareto frontier over every point (no other point is both smaller and better). `None` under
/// two points.
pub fn tradeoff(t: &Table, stem: &str, q: &Quality<'_>) -> Option<Chart> {
    let keys = t.label_keys();
    let series = series(
        t,
        |r| mib(t, r, "kv_allocated_bytes"),
        |r| t.num(r, q.column),
        |_| None,
        |r| t.label(r, &keys, &["cache_tokens", "bits"]),
    );
    let mut chart = Chart {
        stem: stem.into(),
        subject: format!("{} vs KV memory", q.subject),
        x: XAxis::measured("KV allocated", "MiB"),
        y: q.label.into(),
        series,
        levels: vec![],
        expected: None,
    };
    if chart.series.len() > MAX_SERIES {
        return None;
    }
    // The frontier over the points drawn: a broken configuration is left out before it.
    if q.column == PERPLEXITY.column {
        chart = leave_out_off_scale(chart);
    }
    let points: Vec<Point> = chart.series.iter().flat_map(|s| s.points.clone()).collect();
    if points.len() < 2 {
        return None;
    }
    chart.series.push(Series {
        label: "Pareto frontier".into(),
        points: frontier(&points, q.higher_is_better),
    });
    Some(chart)
}

/// A perplexity this many times a chart's lowest is a broken configuration, not a trade-off.
const OFF_SCALE: f64 = 10.0;

/// The chart without its off-scale perplexities (points and levels over [`OFF_SCALE`] times
/// the lowest), which would flatten every other line to the axis; its title says how many
/// were left out (the table above it has their numbers).
fn leave_out_off_scale(mut chart: Chart) -> Chart {
    let lowest = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.y))
        .chain(chart.levels.iter().map(|l| l.y))
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min);
    let cap = lowest * OFF_SCALE;
    let before = chart.series.iter().map(|s| s.points.len()).sum::<usize>() + chart.levels.len();
    for s in &mut chart.series {
        s.points.retain(|p| p.y <= cap);
    }
    chart.series.retain(|s| !s.points.is_empty());
    chart.levels.retain(|l| l.y <= cap);
    let after = chart.series.iter().map(|s| s.points.len()).sum::<usize>() + chart.levels.len();
    if after < before {
        chart.subject =
            format!("{} ({} over {OFF_SCALE}x the lowest left out)", chart.subject, before - after);
    }
    chart
}

/// The points no other point dominates (at most as many bytes and at least as good, one of
/// them strictly), by increasing bytes.
pub(crate) fn frontier(points: &[Point], higher_is_better: bool) -> Vec<Point> {
    let mut sorted = points.to_vec();
    // Bytes ascending; at equal bytes the best first.
    sorted.sort_by(|a, b| {
        let quality = if higher_is_better { b.y.total_cmp(&a.y) } else { a.y.total_cmp(&b.y) };
        a.x.total_cmp(&b.x).then(quality)
    });
    let mut out: Vec<Point> = vec![];
    for p in sorted {
        let better = out
            .last()
            .is_none_or(|best| if higher_is_better { p.y > best.y } else { p.y < best.y });
        if better {
            out.push(Point { expected: None, ..p });
        }
    }
    out
}

fn mib(t: &Table, row: &[String], col: &str) -> Option<f64> {
    Some(t.num(row, col)? / MIB)
}

/// Rows grouped into series by `label`, in row order: a point per row with both an x and a
/// y value, each series' points sorted by x.
fn series(
    t: &Table,
    x: impl Fn(&[String]) -> Option<f64>,
    y: impl Fn(&[String]) -> Option<f64>,
    expected: impl Fn(&[String]) -> Option<f64>,
    label: impl Fn(&[String]) -> String,
) -> Vec<Series> {
    let mut out: Vec<Series> = vec![];
    for r in &t.rows {
        let (Some(x), Some(y)) = (x(r), y(r)) else { continue };
        let point = Point { x, y, expected: expected(r) };
        let label = label(r);
        match out.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => out.push(Series { label, points: vec![point] }),
        }
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    out
}

fn memory_vs_context(t: &Table) -> Chart {
    let keys = t.label_keys();
    Chart {
        stem: "memory_vs_context".into(),
        subject: "KV-cache memory".into(),
        x: XAxis::swept("context", "tokens"),
        y: "KV allocated (MiB)".into(),
        series: series(
            t,
            |r| t.num(r, "context"),
            |r| mib(t, r, "kv_allocated_bytes"),
            |r| mib(t, r, "formula_bytes"),
            |r| t.label(r, &keys, &["context"]),
        ),
        levels: vec![],
        expected: Some(FORMULA.into()),
    }
}

fn decode_vs_context(t: &Table) -> Chart {
    let keys = t.label_keys();
    Chart {
        stem: "decode_vs_context".into(),
        subject: "Decode throughput".into(),
        x: XAxis::swept("context", "tokens"),
        y: "decode (tokens/s)".into(),
        series: series(
            t,
            |r| t.num(r, "context"),
            |r| t.num(r, "decode_tok_per_s"),
            |_| None,
            |r| t.label(r, &keys, &["context"]),
        ),
        levels: vec![],
        expected: None,
    }
}

/// Streaming perplexity per cache budget; strategies without a budget keep every token and
/// are a level across the budgets. `None` when no row has a budget.
fn ppl_vs_cache(t: &Table) -> Option<Chart> {
    if !t.rows.iter().any(|r| t.num(r, "cache_tokens").is_some()) {
        return None;
    }
    let keys = t.label_keys();
    let streaming = |r: &[String]| t.get(r, "mode") != "chunked";
    let mut levels: Vec<Level> = t
        .rows
        .iter()
        .filter(|r| t.get(r, "cache_tokens").is_empty())
        .filter_map(|r| {
            let label = format!("{} (all tokens)", t.label(r, &keys, &["cache_tokens"]));
            Some(Level { label, y: t.num(r, "ppl")? })
        })
        .collect();
    // Dozens of full caches (a bits sweep) would bury the budgets: the table has them.
    if levels.len() > MAX_SERIES {
        levels.clear();
    }
    Some(Chart {
        stem: "ppl_vs_cache".into(),
        subject: "Streaming perplexity".into(),
        x: XAxis::swept("cache budget", "tokens"),
        y: "perplexity".into(),
        series: series(
            t,
            |r| t.num(r, "cache_tokens"),
            |r| if streaming(r) { t.num(r, "ppl") } else { None },
            |_| None,
            |r| t.label(r, &keys, &["cache_tokens"]),
        ),
        levels,
        expected: None,
    })
}

/// Perplexity per KV bit width (the mean of the keys' and the values' where they differ, so
/// K2V4 sits at 3). `None` when no row is quantized.
fn ppl_vs_bits(t: &Table) -> Option<Chart> {
    if !t.rows.iter().any(|r| t.num(r, "bits").is_some()) {
        return None;
    }
    let keys = t.label_keys();
    let chart = Chart {
        stem: "ppl_vs_bits".into(),
        subject: "Perplexity".into(),
        x: XAxis::swept("KV bits", "per element"),
        y: "perplexity".into(),
        series: series(
            t,
            |r| {
                let (k, v) = super::bits_names::side_bits(t, r);
                t.num(r, "bits").map(|_| f64::from(k + v) / 2.0)
            },
            |r| t.num(r, "ppl"),
            |_| None,
            |r| t.label(r, &keys, &["bits"]),
        ),
        levels: vec![],
        expected: None,
    };
    // The table has every configuration; the bits sections chart them by family.
    (chart.series.len() <= MAX_SERIES).then_some(chart)
}

/// The most configurations a chart of every configuration draws (perplexity per bits, the
/// trade-off charts): past it no reader can match the legend to the lines.
const MAX_SERIES: usize = 16;

/// The serving simulation's batch size per policy against the budget, and the measured
/// tok/s where the schedule was run through the model.
fn against_budget(t: &Table) -> Vec<Chart> {
    let chart = |column: &str, stem: &str, subject: &str, y: &str| Chart {
        stem: stem.into(),
        subject: subject.into(),
        x: XAxis::swept("KV budget", "MiB"),
        y: y.into(),
        series: series(
            t,
            |r| mib(t, r, "kv_budget_bytes"),
            |r| t.num(r, column),
            |_| None,
            |r| policy_label(t, r),
        ),
        levels: vec![],
        expected: None,
    };
    let mut charts = vec![chart(
        "tokens_per_iteration",
        "tokens_per_iteration_vs_budget",
        "Tokens per iteration (batch size)",
        "tokens / iteration",
    )];
    if t.rows.iter().any(|r| t.num(r, "model_tok_per_s").is_some()) {
        charts.push(chart(
            "model_tok_per_s",
            "model_tok_per_s_vs_budget",
            "Measured serving throughput",
            "tokens / s (wall clock, through the model)",
        ));
    }
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_keeps_the_points_nothing_dominates() {
        let p = |x: f64, y: f64| Point { x, y, expected: None };
        let points = [p(1.0, 30.0), p(2.0, 20.0), p(2.0, 25.0), p(3.0, 22.0), p(4.0, 10.0)];
        let lower = frontier(&points, false);
        assert_eq!(lower, vec![p(1.0, 30.0), p(2.0, 20.0), p(4.0, 10.0)]);
        let higher = frontier(&points, true);
        assert_eq!(higher, vec![p(1.0, 30.0)]);
    }
    use crate::report::figure::Shape;

    fn table(workload: Workload, header: &[&str], rows: &[&[&str]]) -> Table {
        Table {
            workload,
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    #[test]
    fn one_context_draws_memory_as_a_bar_per_configuration() {
        let t = table(
            Workload::Memory,
            &["strategy", "kv_heads", "batch", "context", "kv_allocated_bytes", "formula_bytes"],
            &[
                &["static", "1", "1", "256", "3932160", "3932160"],
                &["static", "1", "4", "256", "15728640", "15728640"],
                &["static", "9", "1", "256", "35389440", "35389440"],
            ],
        );
        let [chart] = &workload_charts(&t)[..] else { panic!("one chart") };
        assert_eq!(chart.shape(), Shape::Bars);
        let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
        // The strategy does not vary: no label repeats it.
        assert_eq!(labels, ["kv_heads=1, batch=1", "kv_heads=1, batch=4", "kv_heads=9, batch=1"]);
        assert_eq!(chart.series[0].points[0].expected, Some(3.75));
        assert_eq!(chart.title(), "KV-cache memory, context = 256 tokens");
    }

    #[test]
    fn budgets_draw_lines_and_unbudgeted_strategies_a_level() {
        let t = table(
            Workload::Perplexity,
            &["strategy", "cache_tokens", "sink_tokens", "mode", "ppl", "kv_allocated_bytes"],
            &[
                &["concat", "", "", "streaming", "33.7", "188743680"],
                &["sink", "256", "1", "streaming", "37.6", "11796480"],
                &["sink", "512", "1", "streaming", "35.8", "23592960"],
                &["sink", "1024", "1", "streaming", "34.9", "47185920"],
                &["sink", "256", "2", "streaming", "37.7", "11796480"],
            ],
        );
        let [chart] = &workload_charts(&t)[..] else { panic!("one chart") };
        assert_eq!(chart.shape(), Shape::Lines);
        assert_eq!(chart.levels, [Level { label: "concat (all tokens)".into(), y: 33.7 }]);
        let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["sink_tokens=1", "sink_tokens=2"]);
        let tradeoff = tradeoff(&t, "tradeoff", &PERPLEXITY).unwrap();
        let sizes: Vec<(&str, usize)> =
            tradeoff.series.iter().map(|s| (s.label.as_str(), s.points.len())).collect();
        // The frontier: sink_tokens=1 at every budget (256 beats 37.7), then concat.
        assert_eq!(
            sizes,
            [("concat", 1), ("sink_tokens=1", 3), ("sink_tokens=2", 1), ("Pareto frontier", 4)]
        );
    }

    #[test]
    fn a_broken_configuration_is_left_out_of_perplexity_charts_and_counted() {
        let t = table(
            Workload::Perplexity,
            &["strategy", "bits", "kv_heads", "ppl", "kv_allocated_bytes"],
            &[
                &["static", "32", "", "17.6", "23592960"],
                &["static", "4", "", "19.2", "2949120"],
                &["static", "32", "1", "8528", "7864320"],
            ],
        );
        let [chart] = &workload_charts(&t)[..] else { panic!("one chart") };
        let ys: Vec<f64> = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.y)).collect();
        assert_eq!(ys, [19.2, 17.6]);
        assert!(chart.title().contains("(1 over 10x the lowest left out)"), "{}", chart.title());
        // The frontier is drawn over what is left: 4 bits, then f32.
        let tradeoff = tradeoff(&t, "tradeoff", &PERPLEXITY).unwrap();
        let frontier = &tradeoff.series.last().unwrap().points;
        assert_eq!(frontier.iter().map(|p| p.y).collect::<Vec<_>>(), [19.2, 17.6]);
    }
}

//! Bits, schemes, rotation and rank at a byte budget: every configuration's KV bytes as a share
//! of the f32 cache's (codes or f32 values, scales and zero points, codebook levels and
//! low-rank bases all counted, from `memory.csv` at its longest context), the best
//! configuration at 25%, 15% and 10% of the f32 bytes by perplexity and by KL, and the Pareto
//! charts of perplexity, KL and top-1 agreement against that share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::bits_names::{configuration, family, is_full_precision};
use super::charts::frontier;
use super::figure::{Chart, Point, Series, XAxis};
use super::table::Table;

/// The budgets the section names a best configuration at, in percent of the f32 bytes.
const BUDGETS: [f64; 3] = [25.0, 15.0, 10.0];

/// A run id without the parts that size a run rather than configure it: what joins a
/// perplexity row to its memory row.
fn configuration_key(run_id: &str) -> String {
    let sizing = ["context=", "batch="];
    run_id
        .split(';')
        .filter(|p| !sizing.iter().any(|s| p.starts_with(s)))
        .collect::<Vec<_>>()
        .join(";")
}

/// One scored configuration.
struct Scored {
    name: String,
    family: String,
    /// Percent of the f32 cache's bytes.
    share: f64,
    ppl_delta: f64,
    kl: Option<f64>,
    top1: Option<f64>,
}

/// Per configuration key, its bytes (allocated + metadata) at the memory table's longest
/// context; and that context.
fn bytes_by_key(m: &Table) -> (BTreeMap<String, f64>, f64) {
    let context = m.rows.iter().filter_map(|r| m.num(r, "context")).fold(0.0, f64::max);
    let bytes = m
        .rows
        .iter()
        .filter(|r| m.num(r, "context") == Some(context))
        .filter_map(|r| {
            let total = m.num(r, "kv_allocated_bytes")? + m.num(r, "kv_metadata_bytes")?;
            Some((configuration_key(m.get(r, "run_id")), total))
        })
        .collect();
    (bytes, context)
}

/// The rows of one model with their shares; `None` without an f32 reference's bytes.
fn scored(p: &Table, m: &Table) -> Option<(Vec<Scored>, f64)> {
    let (bytes, context) = bytes_by_key(m);
    let reference = p
        .rows
        .iter()
        .filter(|r| is_full_precision(p, r))
        .find_map(|r| bytes.get(&configuration_key(p.get(r, "run_id"))))?;
    let rows = p
        .rows
        .iter()
        .filter_map(|r| {
            let total = bytes.get(&configuration_key(p.get(r, "run_id")))?;
            Some(Scored {
                name: configuration(p, r),
                family: family(p, r),
                share: 100.0 * total / reference,
                ppl_delta: p.num(r, "ppl_delta_pct")?,
                kl: p.num(r, "kl_mean"),
                top1: p.num(r, "top1_agree_pct"),
            })
        })
        .collect();
    Some((rows, context))
}

/// `name (share %, ppl +x%, KL y, top-1 z%)`.
fn describe(s: &Scored) -> String {
    let kl = s.kl.map_or("—".into(), |k| format!("{k:.4}"));
    let top1 = s.top1.map_or("—".into(), |t| format!("{t:.1}%"));
    format!(
        "**{}** ({:.1}% of f32 bytes; ppl {:+.2}%, KL {kl}, top-1 {top1})",
        s.name, s.share, s.ppl_delta
    )
}

/// The section for one model's rows, with its charts saved under `charts` (`suffix` tells
/// models apart); nothing when the rows hold no f32 reference or no quantized configuration.
pub fn section(
    p: &Table,
    m: &Table,
    model: &str,
    suffix: &str,
    charts: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<String> {
    let Some((rows, context)) = scored(p, m) else { return Ok(String::new()) };
    if rows.iter().filter(|s| s.share < 99.0).count() < 2 {
        return Ok(String::new());
    }
    let mut md = format!("## Bytes against quality ({model})\n\n");
    let _ = writeln!(
        md,
        "Each configuration's KV bytes — codes or f32 values, scales and zero points, codebook \
         levels, low-rank bases — held with {context:.0} tokens in the cache (`memory.csv`), as \
         a share of the f32 cache's; its quality from `perplexity.csv` against the full cache. \
         The best configuration that fits each budget:\n"
    );
    md += "| budget | best by perplexity | best by KL |\n|---|---|---|\n";
    for budget in BUDGETS {
        let fits: Vec<&Scored> = rows.iter().filter(|s| s.share <= budget).collect();
        let by_ppl = fits.iter().min_by(|a, b| a.ppl_delta.total_cmp(&b.ppl_delta));
        let by_kl = fits
            .iter()
            .filter(|s| s.kl.is_some())
            .min_by(|a, b| a.kl.unwrap_or(f64::MAX).total_cmp(&b.kl.unwrap_or(f64::MAX)));
        let cell = |s: Option<&&Scored>| s.map_or("none fits".into(), |s| describe(s));
        let _ = writeln!(md, "| ≤ {budget:.0}% | {} | {} |", cell(by_ppl), cell(by_kl));
    }
    md.push('\n');
    for q in QUALITIES {
        let stem = format!("{}{suffix}", q.stem);
        let Some(chart) = pareto(&rows, &stem, &q) else { continue };
        written.extend(chart.save(charts)?);
        let _ = writeln!(md, "![{} ({model})](charts/{stem}.svg)\n", chart.title());
    }
    Ok(md)
}

/// The widest share a chart shows: the budgets the section asks about are far below it.
const WIDEST_SHARE: f64 = 50.0;

/// One quality a Pareto chart is drawn for.
struct Quality {
    stem: &'static str,
    /// The y axis; the title takes the part before the parenthesis.
    label: &'static str,
    value: fn(&Scored) -> Option<f64>,
    higher_is_better: bool,
    /// Points worse than this are left out (a broken configuration, int2 per-token at +400%,
    /// would flatten every other to the axis); the title counts them, the table has them.
    limit: f64,
}

const QUALITIES: [Quality; 3] = [
    Quality {
        stem: "bits_ppl",
        label: "perplexity change (%)",
        value: |s| Some(s.ppl_delta),
        higher_is_better: false,
        limit: 100.0,
    },
    Quality {
        stem: "bits_kl",
        label: "mean KL(full ‖ run) per token (nats)",
        value: |s| s.kl,
        higher_is_better: false,
        limit: 0.5,
    },
    Quality {
        stem: "bits_top1",
        label: "top-1 agreement with the full cache (%)",
        value: |s| s.top1,
        higher_is_better: true,
        limit: 60.0,
    },
];

/// Quality against the byte share: a series per family (its points are its widths and ranks),
/// and the Pareto frontier over every point drawn.
fn pareto(rows: &[Scored], stem: &str, q: &Quality) -> Option<Chart> {
    let mut series: Vec<Series> = vec![];
    let (mut left_out, mut wide) = (0, 0);
    for s in rows {
        let Some(y) = (q.value)(s) else { continue };
        let beyond = if q.higher_is_better { y < q.limit } else { y > q.limit };
        if beyond {
            left_out += 1;
            continue;
        }
        // The f32 reference (100%, no loss) would squeeze every budget into a corner.
        if s.share > WIDEST_SHARE {
            wide += 1;
            continue;
        }
        let point = Point { x: s.share, y, expected: None };
        match series.iter_mut().find(|x| x.label == s.family) {
            Some(x) => x.points.push(point),
            None => series.push(Series { label: s.family.clone(), points: vec![point] }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    let points: Vec<Point> = series.iter().flat_map(|s| s.points.clone()).collect();
    if points.len() < 2 {
        return None;
    }
    let points = frontier(&points, q.higher_is_better);
    series.push(Series { label: "Pareto frontier".into(), points });
    let label = q.label;
    let mut subject = format!("{} vs KV bytes", label.split(" (").next().unwrap_or(label));
    let side = if q.higher_is_better { "below" } else { "beyond" };
    let notes: Vec<String> = [
        (left_out > 0).then(|| format!("{left_out} {side} {}", q.limit)),
        (wide > 0).then(|| format!("{wide} above {WIDEST_SHARE:.0}% of the bytes")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !notes.is_empty() {
        let _ = write!(subject, " ({} left out)", notes.join(", "));
    }
    Some(Chart {
        stem: stem.into(),
        subject,
        x: XAxis::measured("KV bytes", "% of f32"),
        y: label.into(),
        series,
        levels: vec![],
        expected: None,
    })
}

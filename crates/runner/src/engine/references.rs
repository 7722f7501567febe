//! What earlier rows of a CSV already settle for the runs still to come (`--resume`): the
//! walkthrough's reference tokens and the full-cache perplexity of a model.

use crate::csv_sink::CsvSink;
use crate::rows;
use crate::workloads::{perplexity, walkthrough};

/// A run column of a CSV row, by name.
fn column<'a>(header: &[String], row: &'a [String], name: &str) -> Option<&'a str> {
    header.iter().position(|h| h == name).and_then(|i| row.get(i)).map(String::as_str)
}

/// The first walkthrough row's run id and generated tokens: every later run must match them.
pub fn walkthrough(sink: &CsvSink) -> Option<(String, String)> {
    let row = sink.existing.first()?;
    let metrics: walkthrough::Metrics = rows::read(sink.header(), row).ok()?;
    Some((column(sink.header(), row, "run_id")?.to_string(), metrics.generated))
}

/// The full-cache streaming perplexity of `model`'s own head layout already in the CSV, if any.
pub fn perplexity(sink: &CsvSink, model: &str) -> Option<f64> {
    let h = sink.header();
    sink.existing
        .iter()
        .filter(|r| {
            column(h, r, "model") == Some(model)
                && column(h, r, "strategy") == Some("concat")
                && column(h, r, "kv_heads").is_none_or(str::is_empty)
        })
        .filter_map(|r| rows::read::<perplexity::Metrics>(h, r).ok())
        .find(|m| m.mode == "streaming")
        .map(|m| m.ppl.0)
}

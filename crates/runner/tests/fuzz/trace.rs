//! Trace CSV: a valid header (with or without the prefix columns) and rows, then fields
//! replaced by huge, negative or non-numeric values, columns dropped or added, times unsorted,
//! quoted fields holding separators and newlines, blank lines and CRLF; then byte mutations.

use kvlab_serving::trace::{CSV_COLUMNS, CSV_PREFIX_COLUMNS, read_csv};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::harness::Target;
use crate::mutate::{self, interesting_number_text};

/// A row is at least 6 bytes (`0,1,1\n`) and becomes one 56-byte `Request`; a growing `Vec`
/// holds up to twice that: about 19 bytes per input byte, so 32. The constant is the CSV
/// reader's buffers (8 KiB and its record) and the error text.
const BYTES_PER_INPUT_BYTE: usize = 32;
const FIXED_BYTES: usize = 64 << 10;

#[derive(Debug)]
pub struct TraceCsv;

fn row(rng: &mut ChaCha8Rng, time: &mut f64, prefix: bool) -> Vec<String> {
    *time += rng.random_range(0.0..3.0);
    let prompt = rng.random_range(1..500usize);
    let mut fields = vec![
        if rng.random_bool(0.5) { format!("{}", time.floor()) } else { format!("{time:.2}") },
        prompt.to_string(),
        rng.random_range(1..200usize).to_string(),
    ];
    if prefix {
        if rng.random_bool(0.5) {
            fields.push(rng.random_range(0..4u64).to_string());
            fields.push(rng.random_range(1..=prompt).to_string());
        } else {
            fields.extend([String::new(), String::new()]);
        }
    }
    fields
}

/// One structural change to the rows.
fn damage(rng: &mut ChaCha8Rng, rows: &mut [Vec<String>]) {
    let Some(r) = (!rows.is_empty()).then(|| rng.random_range(0..rows.len())) else { return };
    let n = rows[r].len();
    match rng.random_range(0..7) {
        0 | 1 if n > 0 => rows[r][rng.random_range(0..n)] = interesting_number_text(rng),
        2 if n > 0 => {
            rows[r].remove(rng.random_range(0..n));
        }
        3 => rows[r].push(interesting_number_text(rng)),
        4 if n > 0 => rows[r][rng.random_range(0..n)] = "\"1,\n2\"".into(),
        5 => {
            // Unsorted arrival times: this row arrives before the first.
            let r2 = rng.random_range(0..rows.len());
            rows.swap(r, r2);
        }
        _ if n > 0 => rows[r][rng.random_range(0..n)] = "x\u{feff}é".into(),
        _ => {}
    }
}

impl Target for TraceCsv {
    fn name(&self) -> &'static str {
        "trace-csv"
    }

    fn input(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let prefix = rng.random_bool(0.4);
        let mut header: Vec<&str> = CSV_COLUMNS.to_vec();
        if prefix {
            header.extend(CSV_PREFIX_COLUMNS);
        }
        let mut time = 0.0;
        let mut rows: Vec<Vec<String>> =
            (0..rng.random_range(0..12)).map(|_| row(rng, &mut time, prefix)).collect();
        for _ in 0..rng.random_range(0..4) {
            damage(rng, &mut rows);
        }
        let newline = if rng.random_bool(0.2) { "\r\n" } else { "\n" };
        let mut text = header.join(",") + newline;
        if rng.random_bool(0.05) {
            text = text.replacen("prompt_tokens", "prompt", 1);
        }
        for r in &rows {
            text += &r.join(",");
            text += newline;
            if rng.random_bool(0.05) {
                text += newline;
            }
        }
        let mut bytes = text.into_bytes();
        if rng.random_bool(0.3) {
            mutate::bytes(rng, &mut bytes, 3);
        }
        bytes
    }

    fn parse(&self, input: Vec<u8>) -> Result<(), Vec<String>> {
        read_csv(&input[..]).map(drop).map_err(|e| vec![e.to_string()])
    }

    fn budget(&self, len: usize) -> usize {
        BYTES_PER_INPUT_BYTE * len + FIXED_BYTES
    }
}

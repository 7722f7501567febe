//! Experiment TOML: the committed `experiments/*.toml`, mutated as a tree (values swapped for
//! other types, huge, negative or zero numbers, unknown keys, missing tables, longer arrays)
//! and as text (deleted, duplicated and swapped lines: duplicated keys, broken tables), then
//! byte mutations; each loaded and validated as `runner validate` does, without running.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use runner::experiment::parse;
use toml::{Table, Value};

use crate::harness::Target;
use crate::mutate;

/// The parsed TOML tree and the typed file are each a few dozen bytes per input byte (a key or
/// value of a few bytes becomes a map node and a `String`), and the experiment holds the text,
/// the typed file and its axes: 256 per byte. The constant is validation's fixed work: the
/// toy model's KV cache that each run's strategy builds to prove it can be built, bounded by
/// the toy model's positions, not by the file.
const BYTES_PER_INPUT_BYTE: usize = 256;
const FIXED_BYTES: usize = 64 << 20;

/// The seeds: every committed experiment, with retrieval workloads on random weights (with
/// pretrained ones validation would fetch the tokenizer and corpus).
#[derive(Debug)]
pub struct ExperimentToml {
    seeds: Vec<(String, Table)>,
}

impl ExperimentToml {
    pub fn new() -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let seeds = paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let mut table: Table = toml::from_str(&text).unwrap();
                let retrieval = table.get("workload").and_then(|w| w.get("retrieval")).is_some();
                if retrieval && let Some(Value::Table(ex)) = table.get_mut("experiment") {
                    ex.insert("weights".into(), Value::String("random".into()));
                    let text = toml::to_string(&table).unwrap();
                    return (text, table);
                }
                (text, table)
            })
            .collect();
        Self { seeds }
    }
}

/// A value of some type, often one the schema does not expect there.
fn other_value(rng: &mut ChaCha8Rng) -> Value {
    const STRINGS: [&str; 12] = [
        "",
        "seed-toy",
        "smollm2-135m",
        "concat",
        "window",
        "paged",
        "static",
        "random",
        "file:/nonexistent.csv",
        "x.gguf",
        "chunked",
        "ünï\u{0}",
    ];
    const INTS: [i64; 10] = [0, -1, 1, 2, 3, 1 << 20, 1 << 32, 1 << 40, i64::MAX, i64::MIN];
    const FLOATS: [f64; 7] = [0.0, -0.0, 0.5, -1.5, 1e300, f64::INFINITY, f64::NAN];
    match rng.random_range(0..7) {
        0 => Value::String(STRINGS[rng.random_range(0..STRINGS.len())].into()),
        1 | 2 => Value::Integer(INTS[rng.random_range(0..INTS.len())]),
        3 => Value::Float(FLOATS[rng.random_range(0..FLOATS.len())]),
        4 => Value::Boolean(rng.random()),
        5 => Value::Array(
            (0..rng.random_range(0..3)).map(|_| Value::Integer(rng.random_range(-2..70))).collect(),
        ),
        _ => Value::Table(Table::new()),
    }
}

/// Every table in the tree (by path of keys), the root first.
fn tables(t: &Table, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(path.clone());
    for (k, v) in t {
        if let Value::Table(inner) = v {
            let mut p = path.clone();
            p.push(k.clone());
            tables(inner, p, out);
        }
    }
}

fn table_at<'a>(root: &'a mut Table, path: &[String]) -> &'a mut Table {
    path.iter().fold(root, |t, k| match t.get_mut(k) {
        Some(Value::Table(inner)) => inner,
        _ => unreachable!("paths come from tables()"),
    })
}

/// Each `[sweep]` array cut to one of its values: validation builds every run's cache, so a
/// committed sweep of hundreds of runs costs tens of milliseconds; 3% of inputs keep them all.
fn one_value_per_axis(rng: &mut ChaCha8Rng, root: &mut Table) {
    let Some(Value::Table(sweep)) = root.get_mut("sweep") else { return };
    for (_, v) in sweep.iter_mut() {
        if let Value::Array(a) = v
            && a.len() > 1
        {
            let keep = a.swap_remove(rng.random_range(0..a.len()));
            *a = vec![keep];
        }
    }
}

/// One change to the tree.
fn mutate_tree(rng: &mut ChaCha8Rng, root: &mut Table) {
    let mut paths = vec![];
    tables(root, vec![], &mut paths);
    let path = &paths[rng.random_range(0..paths.len())];
    let t = table_at(root, path);
    let keys: Vec<String> = t.keys().cloned().collect();
    let key = (!keys.is_empty()).then(|| keys[rng.random_range(0..keys.len())].clone());
    match (rng.random_range(0..6), key) {
        (0 | 1, Some(k)) => {
            t.insert(k, other_value(rng));
        }
        (2, Some(k)) => {
            t.remove(&k);
        }
        (3, _) => {
            t.insert(format!("unknown_{}", rng.random_range(0..3)), other_value(rng));
        }
        (4, Some(k)) => {
            // A longer array (at most doubled: sweeps multiply) or a mixed one.
            if let Some(Value::Array(a)) = t.get_mut(&k) {
                if rng.random_bool(0.5) && !a.is_empty() {
                    let copy = a[rng.random_range(0..a.len())].clone();
                    a.push(copy);
                } else {
                    a.push(other_value(rng));
                }
            }
        }
        (_, Some(k)) => {
            // A number replaced by a boundary one, or a string by a near miss.
            let v = match t.get(&k) {
                Some(Value::Integer(_)) => other_value(rng),
                Some(Value::String(s)) => {
                    Value::String(format!("{s}{}", ["x", "-", " ", ":"][rng.random_range(0..4)]))
                }
                _ => return,
            };
            t.insert(k, v);
        }
        _ => {}
    }
}

/// One change to the text's lines.
fn mutate_lines(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return text.into();
    }
    let i = rng.random_range(0..lines.len());
    let j = rng.random_range(0..lines.len());
    match rng.random_range(0..3) {
        0 => {
            lines.remove(i);
        }
        1 => lines.insert(j, lines[i]),
        _ => lines.swap(i, j),
    }
    lines.join("\n") + "\n"
}

impl Target for ExperimentToml {
    fn name(&self) -> &'static str {
        "experiment-toml"
    }

    fn input(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let (text, table) = &self.seeds[rng.random_range(0..self.seeds.len())];
        let mut text = if rng.random_bool(0.8) {
            let mut table = table.clone();
            if rng.random_bool(0.97) {
                one_value_per_axis(rng, &mut table);
            }
            for _ in 0..rng.random_range(1..=3) {
                mutate_tree(rng, &mut table);
            }
            toml::to_string(&table).unwrap_or_else(|_| text.clone())
        } else {
            text.clone()
        };
        for _ in 0..rng.random_range(0..3) {
            text = mutate_lines(rng, &text);
        }
        let mut bytes = text.into_bytes();
        if rng.random_bool(0.3) {
            mutate::bytes(rng, &mut bytes, 3);
        }
        bytes
    }

    /// As `runner validate` reads a file: text (a file that is not UTF-8 is refused when
    /// read), then `experiment::parse`, whose error holds one line per problem.
    fn parse(&self, input: Vec<u8>) -> Result<(), Vec<String>> {
        let text = String::from_utf8(input).map_err(|e| vec![format!("fuzz.toml: {e}")])?;
        parse("fuzz.toml", &text, None).map(drop).map_err(|e| e.0)
    }

    fn budget(&self, len: usize) -> usize {
        BYTES_PER_INPUT_BYTE * len + FIXED_BYTES
    }

    fn bad_line(&self, line: &str) -> Option<String> {
        if line.contains(['\n', '\r']) {
            Some(format!("an error spanning lines: {line:?}"))
        } else if !line.starts_with("fuzz.toml: ") {
            Some(format!("an error line not starting with the file's name: {line:?}"))
        } else {
            None
        }
    }
}

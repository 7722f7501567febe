//! The peer file's rows and kvlab's row of the same configuration: what the llama.cpp
//! sections ([`super::peers`], [`super::peer_draws`]) join.

use std::path::Path;

use anyhow::Result;

use super::table::Table;
use crate::csv_sink;

/// One llama.cpp row: a KV type and rotation, its perplexity and its change against its own f32
/// cache, and its perturbed draws where the script ran them.
pub(super) struct PeerRow {
    pub kv_type: String,
    pub rotation: String,
    pub tokens: String,
    pub ppl: f64,
    pub delta_pct: f64,
    pub version: String,
    pub cpu: String,
    pub draws: Option<Spread>,
}

/// Perplexities under perturbation draws: how many, their mean and sample standard deviation
/// (percent of the mean).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Spread {
    pub n: usize,
    pub mean: f64,
    pub sd_pct: f64,
}

impl Spread {
    /// A row's draws from its `draws`, `ppl_draw_mean` and `ppl_draw_sd_pct` cells (`None`
    /// where they are empty or absent).
    pub fn from_cells(n: &str, mean: &str, sd_pct: &str) -> Option<Self> {
        Some(Self { n: n.parse().ok()?, mean: mean.parse().ok()?, sd_pct: sd_pct.parse().ok()? })
    }
}

pub(super) fn read_peer(path: &Path) -> Result<Vec<PeerRow>> {
    let (header, rows) = csv_sink::read(path)?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow::anyhow!("{}: no column {name:?}", path.display()))
    };
    let (kv, rot, tok, ppl, delta, ver, cpu) = (
        col("kv_type")?,
        col("rotation")?,
        col("tokens")?,
        col("ppl")?,
        col("ppl_delta_pct")?,
        col("engine_version")?,
        col("cpu")?,
    );
    let optional = |name: &str| header.iter().position(|h| h == name);
    let draw_cols = (optional("draws"), optional("ppl_draw_mean"), optional("ppl_draw_sd_pct"));
    let num = |row: &[String], i: usize| {
        row[i].parse::<f64>().map_err(|_| {
            anyhow::anyhow!("{}: {:?} is not a number ({})", path.display(), row[i], header[i])
        })
    };
    rows.iter()
        .map(|r| {
            Ok(PeerRow {
                kv_type: r[kv].clone(),
                rotation: r[rot].clone(),
                tokens: r[tok].clone(),
                ppl: num(r, ppl)?,
                delta_pct: num(r, delta)?,
                version: r[ver].clone(),
                cpu: r[cpu].clone(),
                draws: match draw_cols {
                    (Some(n), Some(mean), Some(sd)) => Spread::from_cells(&r[n], &r[mean], &r[sd]),
                    _ => None,
                },
            })
        })
        .collect()
}

/// How kvlab's scores meet the keys: f32 queries against decoded keys (kvlab's own), or queries
/// rounded to `q8_0` blocks first (`query_bits = 8`, llama.cpp's CPU arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arithmetic {
    Kvlab,
    LlamaCpp,
}

impl Arithmetic {
    fn query_bits(self) -> &'static str {
        match self {
            Self::Kvlab => "32",
            Self::LlamaCpp => "8",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Kvlab => "f32 queries",
            Self::LlamaCpp => "8-bit queries",
        }
    }
}

/// kvlab's row of the configuration a llama.cpp KV type names ([`super::peers`]' `kvlab_twin`
/// says which).
pub(super) fn twin_row<'t>(
    t: &'t Table,
    kv_type: &str,
    rotation: &str,
    order: &str,
    arithmetic: Arithmetic,
) -> Option<&'t Vec<String>> {
    let (key_type, value_type) = kv_type.split_once('/').unwrap_or((kv_type, kv_type));
    t.rows.iter().find(|row| {
        if kv_type == "f32" {
            return t.get(row, "strategy") == "concat"
                || t.get(row, "strategy") == "static"
                    && t.get(row, "bits") == "32"
                    && ["key_bits", "value_bits", "rank"].iter().all(|k| t.get(row, k).is_empty());
        }
        let key_order = match t.get(row, "key_order") {
            "" => "half-split",
            o => o,
        };
        let side = |key: &str| match t.get(row, key) {
            "" => t.get(row, "scheme"),
            s => s,
        };
        t.get(row, "strategy") == "static"
            && side("key_scheme") == key_type
            && side("value_scheme") == value_type
            && t.get(row, "quant_axis") == "per-token"
            && matches!(t.get(row, "group_size"), "" | "32")
            && matches!(t.get(row, "residual"), "" | "0")
            && t.get(row, "rotation") == rotation
            && key_order == order
            && match t.get(row, "query_bits") {
                "" => "32",
                q => q,
            } == arithmetic.query_bits()
    })
}

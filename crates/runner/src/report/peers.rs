//! llama.cpp beside kvlab on the same tokens: `peer-llama-cpp.csv`, written into a quant
//! results directory by `scripts/peer-quant/run.sh` (llama.cpp's perplexity of the very ids
//! `runner tokens` prints, per KV type, with and without its Hadamard rotation), joined here with
//! kvlab's runs of the same format: static cache, per-token blocks of 32, no residual.
//!
//! The file is not the runner's: a re-run of the experiment replaces the directory and drops
//! it, so a stale peer row can never sit beside new tokens; the section then says how to add it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::peer_rows::{Arithmetic, PeerRow, read_peer, twin_row};
use super::table::Table;

/// The peer file's name inside a results directory.
pub(crate) const LLAMA_CPP_CSV: &str = "peer-llama-cpp.csv";

/// Perplexities within this relative distance are said to agree (the "about 1%").
const AGREE: f64 = 0.01;

/// kvlab's `(ppl, ppl_delta_pct)` for a llama.cpp KV type (`q4_0`, or `q8_0/q4_0` for keys and
/// values apart) and rotation with keys in `order`, queries kept f32 or rounded to 8 bits as
/// llama.cpp's arithmetic does ([`Arithmetic`]): for f32 the full cache (`concat`, or a static
/// f32 store), otherwise the static per-token run whose keys and values are in the same block
/// formats (`None` for f16 and the types kvlab lacks, or an order the sweep did not run). Runs
/// without a `key_order` (`query_bits`) column or value are half-split (f32 queries).
fn kvlab_twin(
    t: &Table,
    kv_type: &str,
    rotation: &str,
    order: &str,
    arithmetic: Arithmetic,
) -> Option<(f64, f64)> {
    let row = twin_row(t, kv_type, rotation, order, arithmetic)?;
    Some((t.num(row, "ppl")?, t.num(row, "ppl_delta_pct")?))
}

/// kvlab's perplexity relative to llama.cpp's: `kvlab / llama.cpp - 1`.
fn change(kvlab: f64, llama_cpp: f64) -> f64 {
    kvlab / llama_cpp - 1.0
}

/// The largest of `gaps`, if any.
fn widest(gaps: &[f64]) -> Option<f64> {
    gaps.iter().copied().reduce(f64::max)
}

/// `+1.234` or a dash.
fn delta_cell(twin: Option<(f64, f64)>) -> String {
    twin.map_or("—".into(), |(_, d)| format!("{d:+.3}"))
}

/// What llama.cpp ran and what kvlab's columns hold.
fn intro(first: &PeerRow) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "llama.cpp ({}, CPU: {}) scored the same {} predicted tokens with an F32 copy of the same \
         GGUF, one forward with flash attention, `type_k = type_v` = the KV type (`K/V`: keys and \
         values apart, `-ctk K -ctv V`); its Hadamard rotation of quantized K/V is its default \
         (`attn_rot_k = attn_rot_v = 1`) and was turned off with `LLAMA_ATTN_ROT_DISABLE=1` for \
         the `none` rows. Each engine's change is against its own full-precision cache (kvlab: \
         `concat` or the static f32 store; llama.cpp: `f32`). kvlab's rows are the static cache \
         with per-token blocks of 32 and no residual, in the same format, with keys grouped in \
         kvlab's channel order (`half-split`) and in llama.cpp's (`interleaved`, the GGUF order \
         its K cache keeps); the last column compares like with like (interleaved where run). \
         Types kvlab lacks (`iq4_nl`, `q5_0`) stand beside its own at their bytes.\n",
        first.version, first.cpu, first.tokens
    );
    md
}

/// Which types' like-with-like kvlab run is in llama.cpp's arithmetic (empty if none).
fn arithmetic_note(types: &[&String]) -> String {
    if types.is_empty() {
        return String::new();
    }
    format!(
        "For {} the last column's kvlab run rounds its queries to `q8_0` blocks as llama.cpp \
         does (`query_bits = 8`); the change columns are kvlab's own arithmetic (f32 \
         queries).\n\n",
        types.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    )
}

/// The section, when `dir` holds the peer file; a pointer to the script when the experiment
/// sweeps a llama.cpp format but the file is absent; nothing otherwise.
pub fn section(dir: &Path, t: &Table) -> Result<String> {
    let path = dir.join(LLAMA_CPP_CSV);
    let sweeps_formats = t.rows.iter().any(|r| {
        ["scheme", "key_scheme", "value_scheme"].iter().any(|k| t.get(r, k).starts_with('q'))
    });
    if !path.is_file() {
        if !sweeps_formats {
            return Ok(String::new());
        }
        return Ok(format!(
            "## llama.cpp on the same tokens\n\nNo `{LLAMA_CPP_CSV}` here: \
             `scripts/peer-quant/run.sh` adds llama.cpp's row per KV type (it scores the ids \
             `runner tokens experiments/<name>.toml` prints) and redraws this report.\n\n"
        ));
    }
    let peer = read_peer(&path)?;
    let Some(first) = peer.first() else { return Ok(String::new()) };
    let mut md = String::from("## llama.cpp on the same tokens\n\n");
    md += &intro(first);
    md += "| KV type | rotation | llama.cpp ppl | llama.cpp change % | kvlab change % \
           (half-split) | kvlab change % (interleaved) | kvlab / llama.cpp ppl |\n\
           |---|---|---|---|---|---|---|\n";
    let mut verdicts = vec![];
    // |kvlab / llama.cpp - 1| of every quantized type, per key order.
    let (mut gaps_half, mut gaps_inter) = (vec![], vec![]);
    let mut arithmetics = vec![];
    for p in &peer {
        let half = kvlab_twin(t, &p.kv_type, &p.rotation, "half-split", Arithmetic::Kvlab);
        let inter = kvlab_twin(t, &p.kv_type, &p.rotation, "interleaved", Arithmetic::Kvlab);
        // Like with like: llama.cpp's channel order, and its arithmetic where it was run.
        let llama_like = (p.kv_type != "f32")
            .then(|| kvlab_twin(t, &p.kv_type, &p.rotation, "interleaved", Arithmetic::LlamaCpp))
            .flatten();
        if llama_like.is_some() {
            arithmetics.push(&p.kv_type);
        }
        let like = if p.kv_type == "f32" { half } else { llama_like.or(inter).or(half) };
        if !matches!(p.kv_type.as_str(), "f32" | "f16") {
            gaps_half.extend(half.map(|(ppl, _)| change(ppl, p.ppl).abs()));
            gaps_inter.extend(inter.map(|(ppl, _)| change(ppl, p.ppl).abs()));
        }
        let ratio =
            like.map_or("—".into(), |(ppl, _)| format!("{:+.3}%", 100.0 * change(ppl, p.ppl)));
        let _ = writeln!(
            md,
            "| {} | {} | {:.4} | {:+.3} | {} | {} | {ratio} |",
            p.kv_type,
            p.rotation,
            p.ppl,
            p.delta_pct,
            delta_cell(half),
            if p.kv_type == "f32" { "—".into() } else { delta_cell(inter) },
        );
        if let Some((ppl, _)) = like {
            verdicts.push((p, change(ppl, p.ppl).abs()));
        }
    }
    md.push('\n');
    md += &arithmetic_note(&arithmetics);
    if peer.iter().any(|p| p.draws.is_some()) {
        md += "Each perplexity in this table is one draw: a 4-bit cache's moves by about a \
               percent under rounding-sized perturbations (next section), so single numbers here \
               can differ by more than 1% with nothing wrong; the draw means below are what \
               agree or not.\n\n";
    }
    if let Some((_, gap)) =
        verdicts.iter().find(|(p, _)| p.kv_type == "q4_0" && p.rotation == "hadamard")
    {
        let _ = writeln!(
            md,
            "kvlab's `q4_0 + hadamard` and llama.cpp's default `q4_0` cache differ by {:.2}% of \
             perplexity on these tokens: {}.\n",
            gap * 100.0,
            if *gap <= AGREE { "they agree within 1%" } else { "more than the 1% expected" }
        );
    }
    if let (Some(half), Some(inter)) = (widest(&gaps_half), widest(&gaps_inter)) {
        let _ = writeln!(
            md,
            "Which channels share a block decides much of it: over the quantized types, the \
             largest perplexity gap to llama.cpp is {:.2}% with keys grouped in kvlab's \
             half-split order and {:.2}% in llama.cpp's interleaved order.\n",
            half * 100.0,
            inter * 100.0
        );
    }
    if gaps_inter.is_empty() && !gaps_half.is_empty() {
        md += "kvlab's rows here group keys in its own half-split channel order, llama.cpp's in \
               the GGUF's interleaved order: not the same blocks. `key_order = \"interleaved\"` \
               groups them as llama.cpp does; `experiments/quant-llama-cpp.toml` runs both \
               orders beside llama.cpp (`results/quant-llama-cpp`).\n\n";
    }
    let worst = verdicts.iter().map(|(_, g)| *g).fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "Across the {} rows both engines have, the largest perplexity gap is {:.2}%. The codes \
         and f16 block scales follow the same rule (tested bit for bit against a port of ggml's \
         reference quantizers in `crates/strategies/tests/block_formats.rs`); what differs by \
         construction is the arithmetic around them: llama.cpp's CPU attention over a quantized \
         K quantizes each query to `q8_0` (`q8_1` for `q4_1`) blocks for its integer dot \
         products, where kvlab decodes K to f32 and keeps the query in f32 (unless `query_bits = 8`).",
        verdicts.len(),
        worst * 100.0
    );
    let ppl_of = |kv: &str| peer.iter().find(|p| p.kv_type == kv).map(|p| p.ppl);
    if let (Some(f32_ppl), Some(f16_ppl)) = (ppl_of("f32"), ppl_of("f16")) {
        let _ = writeln!(
            md,
            "llama.cpp's f32 and f16 caches gave perplexities {f32_ppl:.6} and {f16_ppl:.6}{}.",
            if f32_ppl == f16_ppl { " (equal to every printed digit)" } else { "" }
        );
    }
    md.push('\n');
    md += &super::peer_draws::section(&peer, t);
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Workload;

    fn table() -> Table {
        let header = [
            "run_id",
            "strategy",
            "quant_axis",
            "scheme",
            "group_size",
            "residual",
            "rotation",
            "key_order",
            "ppl",
            "ppl_delta_pct",
        ];
        let rows = [
            ["c", "concat", "", "", "", "", "", "", "10.0", "0"],
            ["a", "static", "per-token", "q4_0", "32", "0", "hadamard", "", "10.75", "7.5"],
            ["b", "static", "per-token", "q4_0", "32", "32", "hadamard", "", "10.2", "2"],
            ["d", "static", "kivi", "q4_0", "32", "0", "hadamard", "", "10.4", "4"],
            ["e", "static", "per-token", "q4_0", "32", "0", "hadamard", "interleaved", "10.4", "3"],
        ];
        Table {
            workload: Workload::Perplexity,
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
        }
    }

    #[test]
    fn joins_each_kv_type_with_kvlabs_per_token_run_of_the_same_format() {
        let dir = std::env::temp_dir().join(format!("kvlab-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = "engine,engine_version,kv_type,rotation,tokens,mean_nll,ppl,ppl_delta_pct,\
                   kv_bytes_per_token,seconds,cpu\n\
                   llama.cpp,v1,f32,none,255,2.3,10.01,0,1,1,cpu\n\
                   llama.cpp,v1,f16,none,255,2.3,10.01,0,1,1,cpu\n\
                   llama.cpp,v1,q4_0,hadamard,255,2.3,10.8,7.9,1,1,cpu\n";
        std::fs::write(dir.join(LLAMA_CPP_CSV), csv).unwrap();
        let md = section(&dir, &table()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Like for like: the interleaved run (10.4) against llama.cpp's 10.8.
        let q40 = "| q4_0 | hadamard | 10.8000 | +7.900 | +7.500 | +3.000 | -3.704% |";
        assert!(md.contains(q40), "{md}");
        let f32_row = "| f32 | none | 10.0100 | +0.000 | +0.000 | — | -0.100% |";
        assert!(md.contains(f32_row), "{md}");
        assert!(md.contains("| f16 | none | 10.0100 | +0.000 | — | — | — |"), "{md}");
        let verdict = "differ by 3.70% of perplexity on these tokens: more than the 1% expected";
        assert!(md.contains(verdict), "{md}");
        assert!(md.contains("equal to every printed digit"), "{md}");
    }

    /// A perplexity table from CSV text (header first).
    fn table_of_csv(csv: &str) -> Table {
        let mut lines = csv.lines().map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
        let header = lines.next().unwrap();
        Table { workload: Workload::Perplexity, header, rows: lines.collect() }
    }

    #[test]
    fn draws_compare_both_arithmetics_with_llama_cpps_draws() {
        let t = table_of_csv(
            "run_id,strategy,bits,quant_axis,scheme,group_size,rotation,key_order,query_bits,ppl,\
             ppl_delta_pct,draws,ppl_draw_mean,ppl_draw_sd_pct\n\
             f,static,32,,,,none,,,10.0,0,4,10.0,0.02\n\
             k,static,4,per-token,q4_1,32,hadamard,interleaved,32,10.9,9,4,10.9,1.0\n\
             l,static,4,per-token,q4_1,32,hadamard,interleaved,8,10.7,7,4,10.75,1.0",
        );
        let dir = std::env::temp_dir().join(format!("kvlab-peer-draws-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = "engine,engine_version,kv_type,rotation,tokens,mean_nll,ppl,ppl_delta_pct,\
                   kv_bytes_per_token,seconds,cpu,draws,draw_scale,ppl_draw_mean,ppl_draw_sd_pct\n\
                   llama.cpp,v1,f32,none,255,2.3,10.0,0,1,1,cpu,4,0.001,10.0,0.01\n\
                   llama.cpp,v1,q4_1,hadamard,255,2.3,10.6,6,1,1,cpu,4,0.001,10.7,1.0\n";
        std::fs::write(dir.join(LLAMA_CPP_CSV), csv).unwrap();
        let md = section(&dir, &t).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Like with like in the main table: the 8-bit-query run (10.7) against 10.6.
        assert!(
            md.contains("| q4_1 | hadamard | 10.6000 | +6.000 | — | +9.000 | +0.943% |"),
            "{md}"
        );
        // Gaps of means: (10.9 / 10.7 - 1) = +1.87%, (10.75 / 10.7 - 1) = +0.47%; SE √(1/4 + 1/4).
        let kvlab = "| q4_1 | hadamard | f32 queries | 10.9000 | 10.9000 (1.00%) | 10.6000 | \
                     10.7000 (1.00%) | +1.87% ± 0.71 |";
        assert!(md.contains(kvlab), "{md}");
        assert!(md.contains("| 8-bit queries | 10.7000 | 10.7500 (1.00%) |"), "{md}");
        assert!(md.contains("8-bit queries against llama.cpp: 1 of 1 quantized types"), "{md}");
        assert!(md.contains("f32 queries against llama.cpp: 0 of 1 quantized types"), "{md}");
        assert!(md.contains("For `q4_1` the last column's kvlab run rounds"), "{md}");
    }

    #[test]
    fn without_the_file_a_format_sweep_points_at_the_script() {
        let dir = std::env::temp_dir().join("kvlab-peers-none");
        let md = section(&dir, &table()).unwrap();
        assert!(md.contains("scripts/peer-quant/run.sh"), "{md}");
    }
}

//! Both engines under the same perturbations: where kvlab's perplexity runs have `draws` and
//! llama.cpp's peer rows were scored with `--draws`, each configuration's perplexity under the
//! same Gaussian control vectors (seeds 1..n) in both engines, and the gap of the two means with
//! its standard error.
//!
//! Why it is needed: a quantized cache turns a rounding-sized difference upstream (another
//! summation order, a rounded query) into different codes, so one perplexity of a 4-bit cache
//! over a few hundred tokens carries a spread of about a percent, while the f32 cache's carries
//! hundredths. Two engines' single numbers can then differ by more than 1% with nothing wrong;
//! the means over draws are what agree or not.

use std::fmt::Write as _;

use super::peer_rows::{Arithmetic, PeerRow, Spread, twin_row};
use super::table::Table;

/// Perplexities whose draw means are within this relative distance agree.
const AGREE_PCT: f64 = 1.0;

/// The gap of kvlab's mean to llama.cpp's, percent of llama.cpp's, and its standard error
/// (percent; the two samples independent, each standard deviation already relative).
fn gap(kvlab: Spread, llama: Spread) -> (f64, f64) {
    let gap = (kvlab.mean / llama.mean - 1.0) * 100.0;
    let se = (kvlab.sd_pct.powi(2) / kvlab.n as f64 + llama.sd_pct.powi(2) / llama.n as f64).sqrt();
    (gap, se)
}

/// One line of the table: a peer row beside one of kvlab's arithmetics.
struct Compared<'a> {
    peer: &'a PeerRow,
    arithmetic: Arithmetic,
    kvlab_ppl: f64,
    kvlab: Spread,
    llama: Spread,
}

fn compared<'a>(peer: &'a [PeerRow], t: &Table) -> Vec<Compared<'a>> {
    let mut out = vec![];
    for p in peer {
        let Some(llama) = p.draws else { continue };
        for arithmetic in [Arithmetic::Kvlab, Arithmetic::LlamaCpp] {
            if p.kv_type == "f32" && arithmetic == Arithmetic::LlamaCpp {
                continue;
            }
            let order = if p.kv_type == "f32" { "half-split" } else { "interleaved" };
            let Some(row) = twin_row(t, &p.kv_type, &p.rotation, order, arithmetic) else {
                continue;
            };
            let kvlab = Spread::from_cells(
                t.get(row, "draws"),
                t.get(row, "ppl_draw_mean"),
                t.get(row, "ppl_draw_sd_pct"),
            );
            if let (Some(kvlab), Some(kvlab_ppl)) = (kvlab, t.num(row, "ppl")) {
                out.push(Compared { peer: p, arithmetic, kvlab_ppl, kvlab, llama });
            }
        }
    }
    out
}

/// The section (empty unless some configuration has draws in both engines).
pub(super) fn section(peer: &[PeerRow], t: &Table) -> String {
    let rows = compared(peer, t);
    let Some(first) = rows.first() else { return String::new() };
    let mut md = String::from("### Both engines under the same perturbations\n\n");
    let _ = writeln!(
        md,
        "One perplexity of a quantized cache is one draw: a rounding-sized change upstream moves \
         values across code boundaries. Each configuration below was scored again under {} \
         perturbations, the same in both engines: Gaussian control vectors (llama.cpp's \
         `llama_set_adapter_cvec`; kvlab's `control_vector.rs`, generated alike from seeds \
         1..{}) added to the residual stream after layers 1 and up. `mean (sd)`: the draws' \
         mean perplexity and sample standard deviation in percent of it; the gap is kvlab's mean \
         against llama.cpp's, ± its standard error.\n",
        first.llama.n, first.llama.n
    );
    md += "| KV type | rotation | kvlab arithmetic | kvlab ppl | kvlab draws mean (sd) | \
           llama.cpp ppl | llama.cpp draws mean (sd) | gap of means |\n\
           |---|---|---|---|---|---|---|---|\n";
    for r in &rows {
        let (g, se) = gap(r.kvlab, r.llama);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.4} | {:.4} ({:.2}%) | {:.4} | {:.4} ({:.2}%) | {g:+.2}% ± {se:.2} |",
            r.peer.kv_type,
            r.peer.rotation,
            r.arithmetic.describe(),
            r.kvlab_ppl,
            r.kvlab.mean,
            r.kvlab.sd_pct,
            r.peer.ppl,
            r.llama.mean,
            r.llama.sd_pct,
        );
    }
    md.push('\n');
    let quantized = |r: &&Compared| r.peer.kv_type != "f32";
    let sd_range = |sds: Vec<f64>| {
        let lo = sds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = sds.iter().copied().fold(0.0, f64::max);
        format!("{lo:.2}–{hi:.2}%")
    };
    let quantized_rows: Vec<&Compared> = rows.iter().filter(quantized).collect();
    if !quantized_rows.is_empty() {
        let llama_sds = quantized_rows.iter().map(|r| r.llama.sd_pct).collect();
        let kvlab_sds = quantized_rows.iter().map(|r| r.kvlab.sd_pct).collect();
        let _ = write!(
            md,
            "Over the quantized types a single perplexity's standard deviation is {} in \
             llama.cpp and {} in kvlab",
            sd_range(llama_sds),
            sd_range(kvlab_sds)
        );
        match rows.iter().find(|r| r.peer.kv_type == "f32") {
            Some(f) => {
                let _ = writeln!(
                    md,
                    "; the f32 cache's is {:.2}% (llama.cpp) and {:.2}% (kvlab).\n",
                    f.llama.sd_pct, f.kvlab.sd_pct
                );
            }
            None => md += ".\n\n",
        }
    }
    for arithmetic in [Arithmetic::LlamaCpp, Arithmetic::Kvlab] {
        let gaps: Vec<(&Compared, f64, f64)> = quantized_rows
            .iter()
            .filter(|r| r.arithmetic == arithmetic)
            .map(|r| {
                let (g, se) = gap(r.kvlab, r.llama);
                (*r, g, se)
            })
            .collect();
        let Some(&(worst, g, se)) = gaps.iter().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        else {
            continue;
        };
        let within = gaps.iter().filter(|(_, g, _)| g.abs() <= AGREE_PCT).count();
        let _ = writeln!(
            md,
            "- kvlab with {} against llama.cpp: {within} of {} quantized types have draw means \
             within {AGREE_PCT}%; the largest gap is `{}` {}, {g:+.2}% ± {se:.2}.",
            arithmetic.describe(),
            gaps.len(),
            worst.peer.kv_type,
            worst.peer.rotation,
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_of_means_and_its_standard_error() {
        let kvlab = Spread { n: 4, mean: 10.1, sd_pct: 2.0 };
        let llama = Spread { n: 4, mean: 10.0, sd_pct: 1.0 };
        let (g, se) = gap(kvlab, llama);
        assert!((g - 1.0).abs() < 1e-9, "{g}");
        // √(4/4 + 1/4)
        assert!((se - 1.25f64.sqrt()).abs() < 1e-12, "{se}");
    }
}

//! What a comparison found, and its rendering as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One difference found.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub file: String,
    pub key: String,
    pub column: String,
    pub base: String,
    pub new: String,
    /// What it is: `mismatch`, `beyond tolerance`, `slowdown 1.23x`, `missing in new`, ...
    pub what: String,
    /// Whether it fails the comparison.
    pub regression: bool,
}

/// The worst slowdown of a file: `(ratio, run key, column)`.
pub type Worst = (f64, String, String);

/// The result of a comparison.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Files compared (present on both sides).
    pub files: Vec<String>,
    /// Rows joined.
    pub joined: usize,
    pub differences: Vec<Difference>,
    /// Per file: timing columns compared, and the worst slowdown seen `(ratio, key, column)`.
    pub timing: BTreeMap<String, (usize, Option<Worst>)>,
}

impl Outcome {
    pub(crate) fn regressions(&self) -> usize {
        self.differences.iter().filter(|d| d.regression).count()
    }

    pub fn passed(&self) -> bool {
        self.regressions() == 0
    }

    /// The printed report: a table of every difference, then a timing summary and a verdict.
    pub(crate) fn render(&self, base: &Path, new: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "compare {} (baseline) vs {} (new): {} file(s), {} run(s) joined",
            base.display(),
            new.display(),
            self.files.len(),
            self.joined
        );
        if self.differences.is_empty() {
            let _ = writeln!(s, "no differences in deterministic columns; no missing runs");
        } else {
            let _ = writeln!(s, "\n| | file | run | column | baseline | new | what |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|");
            for d in &self.differences {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    if d.regression { "FAIL" } else { "info" },
                    d.file,
                    d.key,
                    d.column,
                    d.base,
                    d.new,
                    d.what
                );
            }
        }
        for (file, (n, worst)) in &self.timing {
            if *n == 0 {
                continue;
            }
            match worst {
                Some((r, key, col)) => {
                    let _ = writeln!(
                        s,
                        "timing {file}: {n} value(s) compared; worst {col} {r:.2}x slower ({key})"
                    );
                }
                None => {
                    let _ = writeln!(s, "timing {file}: {n} value(s) compared");
                }
            }
        }
        let missing_base =
            self.differences.iter().filter(|d| d.what == "missing in baseline").count();
        let missing_new = self.differences.iter().filter(|d| d.what == "missing in new").count();
        if missing_base + missing_new > 0 {
            let _ = writeln!(
                s,
                "missing runs: {missing_new} in new (present in baseline only), {missing_base} \
                 in baseline (present in new only)"
            );
        }
        let _ = writeln!(
            s,
            "{}: {} regression(s), {} informational difference(s)",
            if self.passed() { "PASS" } else { "FAIL" },
            self.regressions(),
            self.differences.len() - self.regressions()
        );
        s
    }
}

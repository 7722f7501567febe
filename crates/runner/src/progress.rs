//! Progress bars (indicatif) over a sweep's runs and inside long runs; `--quiet` hides them.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let target =
            if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Self { multi: MultiProgress::with_draw_target(target), quiet }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// The bar over a sweep's runs: position, ETA and the current run's parameters.
    pub(crate) fn sweep_bar(&self, len: u64, prefix: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} runs, ETA {eta} | {wide_msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix.to_string());
        bar
    }

    /// A bar inside one run (e.g. tokens of a perplexity stream).
    pub(crate) fn sub_bar(&self, len: u64, unit: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "  [{{bar:30}}] {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}}"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    }

    /// Prints a line to stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        self.multi.suspend(|| println!("{line}"));
    }

    /// Prints an informational line to stderr unless quiet.
    pub fn info(&self, line: &str) {
        if !self.quiet {
            self.multi.suspend(|| eprintln!("{line}"));
        }
    }
}

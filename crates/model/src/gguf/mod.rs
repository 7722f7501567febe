//! A small, safe GGUF (v2/v3) reader: header, metadata, tensor infos, and dequantization of
//! tensors to `f32`.
//!
//! Layout (all little endian): magic `"GGUF"`, `u32` version, `u64` tensor count, `u64` metadata
//! count; then the metadata key/value pairs (key: `u64` length + UTF-8 bytes; value: `u32` type
//! id + payload); then per tensor: name, `u32` n_dims, `n_dims` × `u64` dims (innermost first),
//! `u32` ggml type, `u64` offset relative to the data section; then padding up to
//! `general.alignment` (default 32), then the data section.
//!
//! The whole file is read into memory (the SmolLM2 file is 98 MB); nothing here panics on bad
//! input: every problem becomes a [`GgufError`] naming the file.

mod error;
mod file;
mod kquants;
mod metadata;
mod quant;
mod reader;
mod tensor_info;

pub use error::GgufError;
pub use file::GgufFile;
pub use metadata::MetadataValue;
pub use quant::{DequantError, GgmlType, dequantize};
pub use reader::DEFAULT_ALIGNMENT;
pub use tensor_info::TensorInfo;

#[cfg(test)]
mod tests;

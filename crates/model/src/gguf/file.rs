//! A parsed GGUF file held in memory: its metadata, read by type, and its tensors' bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::metadata::MetadataValue;
use super::quant::dequantize;
use super::reader::{Header, parse};
use super::tensor_info::TensorInfo;

/// A parsed GGUF file held in memory.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
    bytes: Vec<u8>,
}

impl GgufFile {
    /// Reads and parses a GGUF file, checking that every tensor's data lies inside the file.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let bytes = std::fs::read(path)
            .map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(path, bytes)
    }

    /// Parses GGUF bytes; `path` is only used in error messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        let Header { version, metadata, tensors, alignment, data_offset } = parse(path, &bytes)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }
    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// All metadata, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }
    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| GgufError::MissingKey { path: self.path.clone(), key: key.into() })
    }

    fn wrong(&self, key: &str, expected: &'static str, v: &MetadataValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.into(),
            expected,
            found: v.type_name(),
        }
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        f: impl Fn(&MetadataValue) -> Option<T>,
    ) -> Result<T, GgufError> {
        let v = self.require(key)?;
        f(v).ok_or_else(|| self.wrong(key, expected, v))
    }

    fn typed_array<T>(
        &self,
        key: &str,
        expected: &'static str,
        f: impl Fn(&MetadataValue) -> Option<T>,
    ) -> Result<Vec<T>, GgufError> {
        let v = self.require(key)?;
        let arr = v.as_array().ok_or_else(|| self.wrong(key, expected, v))?;
        arr.iter().map(|x| f(x).ok_or_else(|| self.wrong(key, expected, v))).collect()
    }

    /// An integer that fits in `u32` (any integer type is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.typed(key, "integer fitting u32", MetadataValue::as_u32)
    }
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.typed(key, "integer fitting u64", MetadataValue::as_u64)
    }
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.typed(key, "integer fitting i32", MetadataValue::as_i32)
    }
    /// An `f32` (an `f64` is narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "f32", MetadataValue::as_f32)
    }
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.typed(key, "f64", MetadataValue::as_f64)
    }
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "bool", MetadataValue::as_bool)
    }
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "string", v))
    }
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        let arr = v.as_array().ok_or_else(|| self.wrong(key, "array<string>", v))?;
        arr.iter().map(|x| x.as_str().ok_or_else(|| self.wrong(key, "array<string>", v))).collect()
    }
    pub(crate) fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.typed_array(key, "array of integers fitting i32", MetadataValue::as_i32)
    }
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.typed_array(key, "array of integers fitting u32", MetadataValue::as_u32)
    }
    pub(crate) fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.typed_array(key, "array of floats", MetadataValue::as_f32)
    }

    /// The raw bytes of a tensor's data (bounds were checked at open).
    pub(crate) fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let t = self.tensor(name).ok_or_else(|| GgufError::NoSuchTensor {
            path: self.path.clone(),
            tensor: name.into(),
        })?;
        let size = t.byte_size().unwrap_or(u64::MAX);
        let start = self.data_offset.saturating_add(t.offset);
        let end = start.saturating_add(size);
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        match range {
            Some((s, e)) if e <= self.bytes.len() => Ok(&self.bytes[s..e]),
            _ => Err(GgufError::TensorPastEnd {
                path: self.path.clone(),
                tensor: name.into(),
                start,
                end,
                len: self.bytes.len() as u64,
            }),
        }
    }

    /// Dequantizes a tensor to `f32`, returning the data and its row-major shape (ggml dims
    /// reversed: a weight with ggml dims `[in, out]` comes back with shape `[out, in]`).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), GgufError> {
        let bytes = self.tensor_bytes(name)?;
        let t = self.tensor(name).ok_or_else(|| GgufError::NoSuchTensor {
            path: self.path.clone(),
            tensor: name.into(),
        })?;
        let data = dequantize(t.ggml_type, bytes, t.n_elements() as usize).map_err(|source| {
            GgufError::Dequant { path: self.path.clone(), tensor: name.into(), source }
        })?;
        Ok((data, t.shape()))
    }
}

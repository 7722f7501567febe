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

mod kquants;
mod quant;

pub use quant::{DequantError, GgmlType, dequantize};

use crate::printable::printable;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Nested metadata arrays deeper than this are rejected (protects the stack).
const MAX_ARRAY_DEPTH: usize = 32;

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

/// A metadata value. Arrays hold their elements (all of the array's declared element type).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
}

impl MetadataValue {
    /// The GGUF name of the value's type ("u32", "string", "array<string>", ...).
    pub fn type_name(&self) -> String {
        match self {
            MetadataValue::U8(_) => "u8".into(),
            MetadataValue::I8(_) => "i8".into(),
            MetadataValue::U16(_) => "u16".into(),
            MetadataValue::I16(_) => "i16".into(),
            MetadataValue::U32(_) => "u32".into(),
            MetadataValue::I32(_) => "i32".into(),
            MetadataValue::U64(_) => "u64".into(),
            MetadataValue::I64(_) => "i64".into(),
            MetadataValue::F32(_) => "f32".into(),
            MetadataValue::F64(_) => "f64".into(),
            MetadataValue::Bool(_) => "bool".into(),
            MetadataValue::String(_) => "string".into(),
            MetadataValue::Array(v) => match v.first() {
                Some(first) => format!("array<{}>[{}]", first.type_name(), v.len()),
                None => "array[0]".into(),
            },
        }
    }

    /// Any integer value, as `i128` (lossless for every integer type).
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetadataValue::U8(v) => v.into(),
            MetadataValue::I8(v) => v.into(),
            MetadataValue::U16(v) => v.into(),
            MetadataValue::I16(v) => v.into(),
            MetadataValue::U32(v) => v.into(),
            MetadataValue::I32(v) => v.into(),
            MetadataValue::U64(v) => v.into(),
            MetadataValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any integer value that fits in `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }
    /// Any integer value that fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }
    /// Any integer value that fits in `i32`.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_i128().and_then(|v| i32::try_from(v).ok())
    }
    /// Any integer value that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }
    /// An `f32`, or an `f64` narrowed to `f32`.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetadataValue::F32(v) => Some(v),
            MetadataValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }
    /// An `f64`, or an `f32` widened.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(v) => Some(v.into()),
            MetadataValue::F64(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            MetadataValue::Array(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataValue::U8(v) => write!(f, "{v}"),
            MetadataValue::I8(v) => write!(f, "{v}"),
            MetadataValue::U16(v) => write!(f, "{v}"),
            MetadataValue::I16(v) => write!(f, "{v}"),
            MetadataValue::U32(v) => write!(f, "{v}"),
            MetadataValue::I32(v) => write!(f, "{v}"),
            MetadataValue::U64(v) => write!(f, "{v}"),
            MetadataValue::I64(v) => write!(f, "{v}"),
            MetadataValue::F32(v) => write!(f, "{v}"),
            MetadataValue::F64(v) => write!(f, "{v}"),
            MetadataValue::Bool(v) => write!(f, "{v}"),
            MetadataValue::String(s) => write!(f, "{s:?}"),
            MetadataValue::Array(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().take(8).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                if v.len() > 8 {
                    write!(f, ", ... ({} items)", v.len())?;
                }
                write!(f, "]")
            }
        }
    }
}

/// One tensor's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: innermost (contiguous) dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data, relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row-major shape (outermost first): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    /// Bytes the tensor's data occupies (None if not a whole number of blocks).
    pub fn byte_size(&self) -> Option<u64> {
        self.ggml_type.bytes_for(self.n_elements())
    }
}

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

/// Cursor over the file bytes producing positioned errors.
struct Reader<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self, field: &str, needed: usize) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            offset: self.pos as u64,
            needed: needed as u64,
            len: self.buf.len() as u64,
        }
    }

    fn invalid(&self, what: String) -> GgufError {
        GgufError::Invalid { path: self.path.to_path_buf(), what }
    }

    fn take(&mut self, n: usize, field: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if self.buf.len() - self.pos < n {
            return Err(self.truncated(&field(), n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn string(&mut self, field: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("{} (string length)", field()))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let start = self.pos;
        let bytes = self.take(len, &|| format!("{} (string of {len} bytes)", field()))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.invalid(format!("{} at offset {start} is not valid UTF-8", field())))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetadataValue, GgufError> {
        let f = || format!("value of metadata key '{key}'");
        Ok(match ty {
            0 => MetadataValue::U8(u8::from_le_bytes(self.array(&f)?)),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(&f)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(&f)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(&f)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(&f)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(&f)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(&f)?)),
            7 => MetadataValue::Bool(self.array::<1>(&f)?[0] != 0),
            8 => MetadataValue::String(self.string(&f)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.invalid(format!(
                        "metadata key '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem_ty =
                    self.u32(&|| format!("array element type of metadata key '{key}'"))?;
                let n = self.u64(&|| format!("array length of metadata key '{key}'"))?;
                // Never trust the count for preallocation: each element needs >= 1 byte.
                let cap = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len() - self.pos);
                let mut items = Vec::with_capacity(cap);
                for _ in 0..n {
                    items.push(self.value(elem_ty, key, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(&f)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(&f)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(&f)?)),
            other => {
                return Err(self.invalid(format!(
                    "metadata key '{key}' has unknown value type id {other} (at offset {})",
                    self.pos
                )));
            }
        })
    }
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
        let mut r = Reader { path, buf: &bytes, pos: 0 };
        let pb = || path.to_path_buf();

        if bytes.len() < 4 {
            return Err(GgufError::BadMagic {
                path: pb(),
                found: format!("only {} bytes ({:02x?})", bytes.len(), bytes),
            });
        }
        let magic = r.array::<4>(&|| "magic".into())?;
        if &magic != b"GGUF" {
            let found = if magic.iter().all(|b| b.is_ascii_graphic()) {
                format!("{:?} ({:02x?})", String::from_utf8_lossy(&magic), magic)
            } else {
                format!("{magic:02x?}")
            };
            return Err(GgufError::BadMagic { path: pb(), found });
        }
        let version = r.u32(&|| "header version".into())?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion { path: pb(), version });
        }
        let n_tensors = r.u64(&|| "header tensor count".into())?;
        let n_kv = r.u64(&|| "header metadata count".into())?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = r.string(&|| format!("key of metadata entry {i}"))?;
            let ty = r.u32(&|| format!("value type of metadata key '{key}'"))?;
            let value = r.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(r.invalid(format!("metadata key '{key}' appears twice")));
            }
        }

        let cap = usize::try_from(n_tensors).unwrap_or(usize::MAX).min(bytes.len() / 8);
        let mut tensors = Vec::with_capacity(cap);
        for i in 0..n_tensors {
            let name = r.string(&|| format!("name of tensor info {i}"))?;
            let n_dims = r.u32(&|| format!("dimension count of tensor '{name}'"))?;
            if n_dims > 8 {
                return Err(r.invalid(format!("tensor '{name}' claims {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&|| format!("dimension {d} of tensor '{name}'"))?);
            }
            let type_id = r.u32(&|| format!("ggml type of tensor '{name}'"))?;
            let offset = r.u64(&|| format!("data offset of tensor '{name}'"))?;
            let Some(ggml_type) = GgmlType::from_id(type_id) else {
                return Err(GgufError::UnknownGgmlType { path: pb(), tensor: name, id: type_id });
            };
            tensors.push(TensorInfo { name, dims, ggml_type, offset });
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(r.invalid(format!(
                        "general.alignment must be a positive power of two, found {v} ({})",
                        v.type_name()
                    )));
                }
            },
        };
        let header_end = r.pos as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let len = bytes.len() as u64;

        for t in &tensors {
            let n =
                t.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
                    r.invalid(format!("tensor '{}' dims {:?} overflow", t.name, t.dims))
                })?;
            let bs = t.ggml_type.block_size();
            let row = t.dims.first().copied().unwrap_or(1);
            if !row.is_multiple_of(bs as u64) {
                return Err(GgufError::NotBlockMultiple {
                    path: pb(),
                    tensor: t.name.clone(),
                    ty: t.ggml_type,
                    row_elements: row,
                    block_size: bs,
                });
            }
            let size = t.ggml_type.bytes_for(n).unwrap_or(u64::MAX);
            let start = data_offset.saturating_add(t.offset);
            let end = start.saturating_add(size);
            if end > len {
                return Err(GgufError::TensorPastEnd {
                    path: pb(),
                    tensor: t.name.clone(),
                    start,
                    end,
                    len,
                });
            }
        }

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
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.typed_array(key, "array of integers fitting i32", MetadataValue::as_i32)
    }
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.typed_array(key, "array of integers fitting u32", MetadataValue::as_u32)
    }
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.typed_array(key, "array of floats", MetadataValue::as_f32)
    }

    /// The raw bytes of a tensor's data (bounds were checked at open).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
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

#[cfg(test)]
mod tests;

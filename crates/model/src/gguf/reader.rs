//! Parsing a GGUF file's header, metadata and tensor infos out of its bytes (the layout is in
//! this folder's top file), with every problem a positioned [`GgufError`].

use std::collections::BTreeMap;
use std::path::Path;

use super::error::GgufError;
use super::metadata::MetadataValue;
use super::quant::GgmlType;
use super::tensor_info::TensorInfo;

/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Nested metadata arrays deeper than this are rejected (protects the stack).
const MAX_ARRAY_DEPTH: usize = 32;

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

/// What the header and tensor infos of a GGUF file say, every tensor's data checked to lie
/// inside the file.
pub(super) struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, MetadataValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
}

/// Parses the header and tensor infos of `bytes`; `path` is only used in error messages.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Header, GgufError> {
    let mut r = Reader { path, buf: bytes, pos: 0 };
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

    Ok(Header { version, metadata, tensors, alignment, data_offset })
}

//! GGUF metadata values and their typed views.

use std::fmt;

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
    pub(crate) fn type_name(&self) -> String {
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
    pub(crate) fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }
    /// Any integer value that fits in `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }
    /// Any integer value that fits in `i32`.
    pub(crate) fn as_i32(&self) -> Option<i32> {
        self.as_i128().and_then(|v| i32::try_from(v).ok())
    }
    /// Any integer value that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }
    /// An `f32`, or an `f64` narrowed to `f32`.
    pub(crate) fn as_f32(&self) -> Option<f32> {
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
    pub(crate) fn as_bool(&self) -> Option<bool> {
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

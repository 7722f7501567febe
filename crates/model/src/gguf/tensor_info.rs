//! One tensor's description in a GGUF file's header.

use super::quant::GgmlType;

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
    pub(crate) fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row-major shape (outermost first): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    /// Bytes the tensor's data occupies (None if not a whole number of blocks).
    pub(crate) fn byte_size(&self) -> Option<u64> {
        self.ggml_type.bytes_for(self.n_elements())
    }
}

//! One side (keys or values) of a layer in a [`super::QuantStore`]: codes, or f32 where that
//! side's bits are [`super::config::EXACT_BITS`] (K4V32: values exact, keys at 4 bits), so the
//! sides can be set apart and each asked what it costs.

use burn::prelude::*;

use super::config::Encoding;
use super::plane::Plane;
use crate::chunked::Chunked;

#[derive(Debug)]
pub(crate) enum SidePlane<B: Backend> {
    Codes(Plane<B>),
    /// `[n_slots, n_kv, head_dim]` f32, as [`crate::store::F32Store`] holds it.
    Exact(Chunked<B>),
}

impl<B: Backend> SidePlane<B> {
    pub fn new(e: &Encoding, shape: [usize; 3], device: &B::Device) -> Self {
        let [n_slots, n_kv, head_dim] = shape;
        if e.is_exact() {
            return Self::Exact(Chunked::new(n_slots, [n_kv, head_dim], |rows| {
                Tensor::zeros([rows, n_kv, head_dim], device)
            }));
        }
        Self::Codes(Plane::new(e.codec(), e.axis, e.group_size, shape, device))
    }

    /// Bytes of the values themselves: packed codes, or f32.
    pub fn code_bytes(&self) -> usize {
        match self {
            Self::Codes(p) => p.code_bytes(),
            Self::Exact(x) => x.bytes(),
        }
    }

    pub fn metadata_bytes(&self) -> usize {
        match self {
            Self::Codes(p) => p.metadata_bytes(),
            Self::Exact(_) => 0,
        }
    }

    pub fn staging_bytes(&self) -> usize {
        match self {
            Self::Codes(p) => p.staging_bytes(),
            Self::Exact(_) => 0,
        }
    }

    pub fn pending_groups(&self) -> usize {
        match self {
            Self::Codes(p) => p.pending_groups(),
            Self::Exact(_) => 0,
        }
    }

    pub fn write(&mut self, slots: &[usize], x: Tensor<B, 3>) {
        match self {
            Self::Codes(p) => p.write(slots, x),
            Self::Exact(buf) => buf.assign(slots, x),
        }
    }

    pub fn read(&self, slots: &[usize]) -> Tensor<B, 3> {
        match self {
            Self::Codes(p) => p.read(slots),
            Self::Exact(buf) => buf.gather(slots),
        }
    }

    pub fn move_slots(&mut self, from: usize, to: usize, n: usize) {
        match self {
            Self::Codes(p) => p.move_slots(from, to, n),
            Self::Exact(buf) => buf.copy_rows(from, to, n),
        }
    }
}

//! Row writes into a buffer the cache owns alone, without copying the buffer, on flex.
//!
//! Why: burn-flex 0.21's `slice_assign` always copies its destination (tracel-ai/burn#5575, see
//! [`crate::chunked`]). Chunking bounds that copy to one chunk, but a 128-row chunk copied per
//! written token still costs O(chunk) and, once the cache outgrows the CPU's caches, a trip to
//! memory. Flex's tensors are reference-counted byte buffers: when the cache holds the only
//! handle, writing the rows in place is exactly what `slice_assign` would produce, minus the
//! copy. When another handle is alive (a view handed to attention, the shift window's source
//! rows) or the backend is not flex, [`write_rows`] declines and the caller falls back to
//! `slice_assign`, whose copy-on-write keeps every other handle's contents intact.

use std::any::Any;

use burn::tensor::{DType, Element, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

/// Writes `src` (`[len, a, b]`) over rows `at..at + len` of `dst` (`[rows, a, b]`) in place.
/// Returns `false`, touching nothing, unless both are flex tensors of one dtype and `dst` is a
/// whole, contiguous buffer with no other handle.
///
/// `P` is a tensor primitive: `TensorPrimitive<B>` for float tensors, `B::IntTensorPrimitive`
/// for int ones.
pub(crate) fn write_rows<P: Any>(dst: &mut P, at: usize, src: &P) -> bool {
    let (Some(dst), Some(src)) = (flex_mut(dst), flex_ref(src)) else {
        return false;
    };
    match dst.dtype() {
        DType::F32 => copy::<f32>(dst, at, src),
        DType::U8 => copy::<u8>(dst, at, src),
        DType::I32 => copy::<i32>(dst, at, src),
        DType::I64 => copy::<i64>(dst, at, src),
        _ => false,
    }
}

fn flex_mut(p: &mut dyn Any) -> Option<&mut FlexTensor> {
    if p.is::<FlexTensor>() {
        return p.downcast_mut::<FlexTensor>();
    }
    match p.downcast_mut::<TensorPrimitive<Flex>>()? {
        TensorPrimitive::Float(t) => Some(t),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// The flex tensor behind a float (`TensorPrimitive<Flex>`) or int (`FlexTensor`) primitive.
pub(crate) fn flex_ref(p: &dyn Any) -> Option<&FlexTensor> {
    if let Some(t) = p.downcast_ref::<FlexTensor>() {
        return Some(t);
    }
    match p.downcast_ref::<TensorPrimitive<Flex>>()? {
        TensorPrimitive::Float(t) => Some(t),
        TensorPrimitive::QFloat(_) => None,
    }
}

fn copy<E: Element + bytemuck::Pod>(dst: &mut FlexTensor, at: usize, src: &FlexTensor) -> bool {
    let (dl, sl) = (dst.layout(), src.layout());
    let (dshape, sshape) = (dl.shape(), sl.shape());
    let whole_buffer = dl.is_contiguous()
        && dl.start_offset() == 0
        && dst.bytes().len() == dl.num_elements() * size_of::<E>();
    if src.dtype() != dst.dtype()
        || !whole_buffer
        || dshape.num_dims() != 3
        || sshape.num_dims() != 3
        || dshape[1..] != sshape[1..]
        || at + sshape[0] > dshape[0]
    {
        return false;
    }
    let row = dshape[1] * dshape[2];
    // A strided or offset source (a slice of the new tokens) is made contiguous first: `len`
    // rows, the size of what is written.
    let src = src.to_contiguous();
    let values = &src.storage::<E>()[..sshape[0] * row];
    match dst.try_storage_mut::<E>() {
        Some(buf) => {
            buf[at * row..at * row + values.len()].copy_from_slice(values);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;

    use super::*;

    type B = Flex;

    fn rows(n: usize, from: f32) -> Tensor<B, 3> {
        let data: Vec<f32> = (0..n * 2).map(|i| from + i as f32).collect();
        Tensor::from_data(TensorData::new(data, [n, 1, 2]), &Default::default())
    }

    #[test]
    fn a_unique_buffer_is_written_in_place() {
        let mut dst = rows(4, 0.0).into_primitive();
        assert!(write_rows(&mut dst, 1, &rows(2, 100.0).into_primitive()));
        let got: Vec<f32> = Tensor::<B, 3>::from_primitive(dst).into_data().to_vec().unwrap();
        assert_eq!(got, vec![0., 1., 100., 101., 102., 103., 6., 7.]);
    }

    #[test]
    fn a_shared_buffer_is_left_alone() {
        let t = rows(4, 0.0);
        let view = t.clone();
        let mut dst = t.into_primitive();
        assert!(!write_rows(&mut dst, 0, &rows(1, 100.0).into_primitive()));
        assert_eq!(view.into_data().to_vec::<f32>().unwrap()[0], 0.0);
    }

    #[test]
    fn a_view_or_a_wrong_shape_is_declined() {
        let mut view = rows(4, 0.0).slice([1..3, 0..1, 0..2]).into_primitive();
        assert!(!write_rows(&mut view, 0, &rows(1, 9.0).into_primitive()));
        let mut dst = rows(2, 0.0).into_primitive();
        assert!(!write_rows(&mut dst, 1, &rows(2, 9.0).into_primitive()), "past the end");
    }

    #[test]
    fn int_codes_are_written_in_place() {
        let dev = Default::default();
        let make = |v: Vec<i32>, n| {
            Tensor::<B, 3, Int>::from_data(TensorData::new(v, [n, 1, 2]), &dev)
                .cast(burn::tensor::IntDType::U8)
                .into_primitive()
        };
        let mut dst = make(vec![0; 6], 3);
        assert!(write_rows(&mut dst, 2, &make(vec![7, 8], 1)));
        let got = Tensor::<B, 3, Int>::from_primitive(dst).into_data();
        assert_eq!(got.to_vec::<u8>().unwrap(), vec![0, 0, 0, 0, 7, 8]);
    }
}

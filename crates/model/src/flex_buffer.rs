//! An f32 flex tensor's buffer and layout, for the kernels that read burn tensors in place
//! ([`crate::fused_attention`], [`crate::few_rows`]).

use std::any::Any;

use burn::tensor::{DType, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

/// An f32 flex tensor's buffer and layout: `None` unless `p` is an f32 flex tensor of `RANK`
/// dims with a contiguous last axis and non-negative strides.
pub(crate) fn flex_f32<const RANK: usize>(
    p: &dyn Any,
) -> Option<(FlexTensor, usize, [usize; RANK])> {
    let tensor = match p.downcast_ref::<TensorPrimitive<Flex>>()? {
        TensorPrimitive::Float(t) => t.clone(),
        TensorPrimitive::QFloat(_) => return None,
    };
    if tensor.dtype() != DType::F32 {
        return None;
    }
    let layout = tensor.layout();
    let s = layout.strides();
    if s.len() != RANK || s[RANK - 1] != 1 || s.iter().any(|&x| x < 0) {
        return None;
    }
    let offset = layout.start_offset();
    let strides = std::array::from_fn(|i| s[i] as usize);
    Some((tensor, offset, strides))
}

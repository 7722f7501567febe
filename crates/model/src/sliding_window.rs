//! The mask of a local (sliding-window) layer: each query sees only the keys of the last
//! `window` positions, its own included (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`: a key at
//! position `p0` is hidden from a query at `p1` when `p1 - p0 >= window`).
//!
//! A view whose mask is [`AttentionMask::CausalEnd`] holds consecutive positions ending at the
//! last new token, so distances follow from indices: query `i` of `t` sits `s - t + i` keys
//! after key 0. Other views (evicting caches, ragged serving rows) do not say where their keys
//! lie; a local layer refuses them rather than attend to keys the model never would.

use burn::prelude::*;

use crate::cache::{AttentionMask, CacheError};

/// The view's mask narrowed to `window` positions.
///
/// # Shapes
/// - output: `Hidden([batch, t, s])` when the window hides any key, else the mask unchanged
pub fn local_mask<B: Backend>(
    mask: AttentionMask<B>,
    window: usize,
    [batch, t, s]: [usize; 3],
    layer: usize,
    device: &B::Device,
) -> Result<AttentionMask<B>, CacheError> {
    match mask {
        // The first new query is the oldest: if it sees every key, so does every later one.
        AttentionMask::CausalEnd if s <= window => Ok(AttentionMask::CausalEnd),
        AttentionMask::CausalEnd => {
            let offset = s - t;
            let mut hidden = Vec::with_capacity(batch * t * s);
            for _ in 0..batch {
                for i in 0..t {
                    let query = offset + i;
                    hidden.extend((0..s).map(|j| j > query || query - j >= window));
                }
            }
            let data = TensorData::new(hidden, [batch, t, s]);
            Ok(AttentionMask::Hidden(Tensor::from_data(data, device)))
        }
        AttentionMask::Hidden(_) => Err(CacheError::Invalid(format!(
            "layer {layer} is a sliding-window layer ({window} tokens) and this cache's view \
             does not hold consecutive positions, so the window cannot be applied (use a \
             static, concat or paged cache on this model)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_flex::{Flex, FlexDevice};

    fn hidden(mask: AttentionMask<Flex>) -> Vec<bool> {
        match mask {
            AttentionMask::Hidden(h) => h.into_data().to_vec::<bool>().unwrap(),
            AttentionMask::CausalEnd => panic!("expected a hidden mask"),
        }
    }

    #[test]
    fn a_window_of_two_over_three_new_of_four_keys() {
        // Keys at positions 0..4, new queries at 1, 2, 3: each sees itself and the one before.
        let m = local_mask::<Flex>(AttentionMask::CausalEnd, 2, [1, 3, 4], 0, &FlexDevice);
        let got = hidden(m.unwrap());
        // query 1 sees {0, 1}; query 2 sees {1, 2}; query 3 sees {2, 3}.
        let sees = |row: usize| -> Vec<usize> { (0..4).filter(|&j| !got[row * 4 + j]).collect() };
        assert_eq!(sees(0), vec![0, 1]);
        assert_eq!(sees(1), vec![1, 2]);
        assert_eq!(sees(2), vec![2, 3]);
    }

    #[test]
    fn short_views_and_unknown_positions() {
        let m = local_mask::<Flex>(AttentionMask::CausalEnd, 4, [2, 1, 4], 0, &FlexDevice);
        assert!(matches!(m, Ok(AttentionMask::CausalEnd)));
        let h = Tensor::<Flex, 3, Bool>::full([1, 1, 3], false, &FlexDevice);
        let e = local_mask::<Flex>(AttentionMask::Hidden(h), 2, [1, 1, 3], 7, &FlexDevice);
        assert!(e.unwrap_err().to_string().contains("layer 7 is a sliding-window layer"));
    }
}

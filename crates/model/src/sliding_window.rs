//! The mask of a local (sliding-window) layer: each query sees only the keys of the last
//! `window` positions, its own included (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`: a key at
//! position `p0` is hidden from a query at `p1` when `p1 - p0 >= window`).
//!
//! What the cache says of its keys ([`KeyPositions`]) decides: keys in text order from the first
//! token (no cache, concat, static, paged) with a causal-end mask are masked by index (query `i`
//! of `t` sits `s - t + i` keys after key 0); a rolling window no longer than the layer's holds
//! nothing the window would hide; anything else (an evicting policy's choice, ragged serving
//! rows) is refused rather than attended to as the model never would. A model's own cache plan
//! (`kvlab_strategies::layer_plan`) gives its local layers such a rolling window.

use burn::prelude::*;

use crate::cache::{AttentionMask, CacheError, KeyPositions};

/// The view's mask narrowed to `window` positions.
///
/// # Shapes
/// - output: `Hidden([batch, t, s])` when the window hides any key, else the mask unchanged
pub(crate) fn local_mask<B: Backend>(
    mask: AttentionMask<B>,
    positions: KeyPositions,
    window: usize,
    [batch, t, s]: [usize; 3],
    layer: usize,
    device: &B::Device,
) -> Result<AttentionMask<B>, CacheError> {
    match (mask, positions) {
        (mask, KeyPositions::Recent(n)) if n <= window => Ok(mask),
        // The first new query is the oldest: if it sees every key, so does every later one.
        (AttentionMask::CausalEnd, KeyPositions::Ordered) if s <= window => {
            Ok(AttentionMask::CausalEnd)
        }
        (AttentionMask::CausalEnd, KeyPositions::Ordered) => {
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
        _ => Err(CacheError::Invalid(format!(
            "layer {layer} is a sliding-window layer ({window} tokens) and this cache does not \
             say where its keys lie, so the window cannot be applied (build the cache through \
             the model's layer plan, StrategySpec::build)"
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
        let ordered = KeyPositions::Ordered;
        let m = local_mask::<Flex>(AttentionMask::CausalEnd, ordered, 2, [1, 3, 4], 0, &FlexDevice);
        let got = hidden(m.unwrap());
        // query 1 sees {0, 1}; query 2 sees {1, 2}; query 3 sees {2, 3}.
        let sees = |row: usize| -> Vec<usize> { (0..4).filter(|&j| !got[row * 4 + j]).collect() };
        assert_eq!(sees(0), vec![0, 1]);
        assert_eq!(sees(1), vec![1, 2]);
        assert_eq!(sees(2), vec![2, 3]);
    }

    #[test]
    fn short_views_and_unknown_positions() {
        let (ordered, end) = (KeyPositions::Ordered, AttentionMask::CausalEnd);
        let m = local_mask::<Flex>(end.clone(), ordered, 4, [2, 1, 4], 0, &FlexDevice);
        assert!(matches!(m, Ok(AttentionMask::CausalEnd)));
        let m =
            local_mask::<Flex>(end.clone(), KeyPositions::Recent(4), 4, [1, 1, 9], 0, &FlexDevice);
        assert!(matches!(m, Ok(AttentionMask::CausalEnd)), "a short rolling window hides nothing");
        for (mask, positions) in [
            (end.clone(), KeyPositions::Unknown),
            (end, KeyPositions::Recent(5)),
            (AttentionMask::Hidden(Tensor::full([1, 1, 9], false, &FlexDevice)), ordered),
        ] {
            let e = local_mask::<Flex>(mask, positions, 4, [1, 1, 9], 7, &FlexDevice);
            assert!(e.unwrap_err().to_string().contains("layer 7 is a sliding-window layer"));
        }
    }
}

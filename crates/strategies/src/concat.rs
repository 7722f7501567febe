//! `concat`: grow K/V by concatenation every step: the article's hand-written cache and HF's
//! `DynamicCache`. Each step allocates a new buffer one token longer and copies the old one
//! into it: O(context) per token, which is what this baseline is kept to show.

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{
    AttentionMask, CacheError, KeyPositions, KvCache, KvMemory, KvView, RotaryEncoding,
};

use crate::entry::{Entry, Holds, no_check};
use crate::layout::{F32_BYTES, KvLayout};

pub(crate) const ENTRY: Entry = Entry {
    name: "concat",
    summary: "grow K/V by concatenation (HF DynamicCache, the article's cache)",
    parameters: &[],
    check: no_check,
    holds: Holds::Concat,
};

#[derive(Debug, Clone)]
pub struct ConcatCache<B: Backend> {
    layout: KvLayout,
    /// Per layer: keys (rotated) and values, `[batch, n_kv, len, head_dim]` each.
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// Tokens stored per sequence.
    len: usize,
}

impl<B: Backend> ConcatCache<B> {
    pub fn new(layout: KvLayout) -> Self {
        Self { layout, layers: vec![None; layout.n_layers], len: 0 }
    }
}

impl<B: Backend> KvCache<B> for ConcatCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.len..total
    }

    fn query_start(&self) -> Vec<usize> {
        vec![self.len; self.layout.batch]
    }

    fn key_positions(&self, _layer: usize) -> KeyPositions {
        KeyPositions::Ordered
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let k = rope.apply(k, &[self.len]);
        let (k, v) = match self.layers[layer].take() {
            // A new tensor every step: O(context) per written token, the cost concat stands for.
            Some((old_k, old_v)) => {
                (Tensor::cat(vec![old_k, k], 2), Tensor::cat(vec![old_v, v], 2))
            }
            None => (k, v),
        };
        self.layers[layer] = Some((k, v));
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        _new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (k, v) = self.layers[layer]
            .clone()
            .ok_or_else(|| CacheError::Invalid(format!("concat: layer {layer} holds nothing")))?;
        Ok(KvView::dense(k, v, AttentionMask::CausalEnd))
    }

    fn commit(&mut self, new_tokens: usize) {
        self.len += new_tokens;
    }

    fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    fn memory(&self) -> KvMemory {
        let bytes = self.layout.formula_bytes(self.len, F32_BYTES);
        KvMemory { allocated_bytes: bytes, live_bytes: bytes, metadata_bytes: 0, tokens: self.len }
    }

    fn stored_shape(&self, layer: usize) -> Option<[usize; 4]> {
        self.layers.get(layer)?.as_ref().map(|(k, _)| k.dims())
    }
}

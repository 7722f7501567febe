//! `none`: no cache. Every step re-feeds the whole sequence and recomputes every key and value
//! (the baseline the article starts from: O(n²) work, zero KV memory kept between steps).

use std::ops::Range;

use burn::prelude::*;

use crate::cache::{AttentionMask, CacheError, KeyPositions, KvCache, KvMemory, KvView};
use crate::rope::RotaryEncoding;

/// Lives in the model crate because it is also the reference every strategy is tested against
/// and the way chunked perplexity runs full attention.
#[derive(Debug, Clone)]
pub struct NoCache<B: Backend> {
    batch: usize,
    /// The layer being computed: its keys (rotated) and values, `[batch, n_kv, t, head_dim]`
    /// each, held from its `write` to the next layer's (one layer at a time, never across
    /// forwards).
    current: Option<(usize, Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> NoCache<B> {
    pub fn new(batch: usize) -> Self {
        Self { batch, current: None }
    }
}

impl<B: Backend> KvCache<B> for NoCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        0..total
    }

    fn query_start(&self) -> Vec<usize> {
        vec![0; self.batch]
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
        self.current = Some((layer, rope.apply(k, &[0]), v));
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        _new_tokens: usize,
        _rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        match &self.current {
            Some((l, k, v)) if *l == layer => {
                Ok(KvView::dense(k.clone(), v.clone(), AttentionMask::CausalEnd))
            }
            _ => Err(CacheError::Invalid(format!("none: layer {layer} was not just written"))),
        }
    }

    /// Nothing is kept: the sequence is re-fed whole next time.
    fn commit(&mut self, _new_tokens: usize) {
        self.current = None;
    }

    fn reset(&mut self) {
        self.current = None;
    }

    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        None
    }
}

//! `none`: no cache. Every step re-feeds the whole sequence and recomputes every key and value
//! (the baseline the article starts from: O(n²) work, zero KV memory kept between steps).

use std::ops::Range;

use burn::prelude::*;

use crate::cache::{AttentionMask, CacheError, KvCache, KvMemory, KvView};
use crate::rope::RotaryEncoding;

/// Lives in the model crate because it is also the reference every strategy is tested against
/// and the way chunked perplexity runs full attention.
#[derive(Debug, Clone)]
pub struct NoCache {
    batch: usize,
}

impl NoCache {
    pub fn new(batch: usize) -> Self {
        Self { batch }
    }
}

impl<B: Backend> KvCache<B> for NoCache {
    fn next_input(&self, total: usize) -> Range<usize> {
        0..total
    }

    fn query_start(&self) -> Vec<usize> {
        vec![0; self.batch]
    }

    fn update(
        &mut self,
        _layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        Ok(KvView { k: rope.apply(k, &[0]), v, mask: AttentionMask::CausalEnd })
    }

    fn commit(&mut self, _new_tokens: usize) {}

    fn reset(&mut self) {}

    fn memory(&self) -> KvMemory {
        KvMemory::default()
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        None
    }
}

//! The full-precision residual: a ring of the last `capacity` slots written to one layer, kept
//! as f32 next to their codes, so reads of those slots are bit-exact (KIVI's recent tokens).

use std::collections::HashMap;

use burn::prelude::*;

use super::plane::assign;

#[derive(Debug)]
pub(crate) struct Residual<B: Backend> {
    /// `[capacity, n_kv, head_dim]` keys and values.
    k: Option<Tensor<B, 3>>,
    v: Option<Tensor<B, 3>>,
    /// Ring position -> the slot it holds (`None`: empty, or stale after a rewrite/move).
    holder: Vec<Option<usize>>,
    /// Slot -> its ring position.
    position: HashMap<usize, usize>,
    /// Where the next written slot goes.
    cursor: usize,
}

impl<B: Backend> Residual<B> {
    pub fn new(capacity: usize, n_kv: usize, head_dim: usize, device: &B::Device) -> Self {
        let shape = [capacity, n_kv, head_dim];
        Self {
            k: Some(Tensor::zeros(shape, device)),
            v: Some(Tensor::zeros(shape, device)),
            holder: vec![None; capacity],
            position: HashMap::new(),
            cursor: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.holder.len()
    }

    /// f32 bytes of the ring (keys and values), allocated whole.
    pub fn bytes(&self) -> usize {
        2 * self.k.as_ref().map_or(0, |t| t.shape().num_elements()) * crate::layout::F32_BYTES
    }

    /// Slots held exact right now.
    pub(crate) fn occupied(&self) -> usize {
        self.position.len()
    }

    fn forget(&mut self, slot: usize) {
        if let Some(p) = self.position.remove(&slot) {
            self.holder[p] = None;
        }
    }

    /// Records a write of `k`/`v` (`[slots.len(), n_kv, head_dim]`): the last `capacity` of
    /// them enter the ring, evicting the oldest entries; a rewritten slot drops its old entry.
    pub fn write(&mut self, slots: &[usize], k: Tensor<B, 3>, v: Tensor<B, 3>) {
        let cap = self.capacity();
        for &s in slots {
            self.forget(s);
        }
        let skip = slots.len().saturating_sub(cap);
        let mut rows = Vec::with_capacity(slots.len() - skip);
        for &s in &slots[skip..] {
            let p = self.cursor;
            if let Some(old) = self.holder[p].take() {
                self.position.remove(&old);
            }
            self.holder[p] = Some(s);
            self.position.insert(s, p);
            rows.push(p);
            self.cursor = (p + 1) % cap;
        }
        let [n, h, d] = k.dims();
        let k = k.slice([skip..n, 0..h, 0..d]);
        let v = v.slice([skip..n, 0..h, 0..d]);
        self.k = Some(assign(self.k.take().expect("ring present"), &rows, k));
        self.v = Some(assign(self.v.take().expect("ring present"), &rows, v));
    }

    /// Replaces the rows of decoded `k`/`v` (read at `slots`) that the ring holds with their
    /// exact values.
    pub(crate) fn overlay(
        &self,
        slots: &[usize],
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let n = slots.len();
        let idx: Vec<i64> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| self.position.get(s).map_or(i, |&p| n + p) as i64)
            .collect();
        if idx.iter().enumerate().all(|(i, &j)| i as i64 == j) {
            return (k, v);
        }
        let device = k.device();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n]), &device);
        let ring = |t: &Option<Tensor<B, 3>>| t.clone().expect("ring present");
        (
            Tensor::cat(vec![k, ring(&self.k)], 0).select(0, idx.clone()),
            Tensor::cat(vec![v, ring(&self.v)], 0).select(0, idx),
        )
    }

    /// Follows a `from..from + n` -> `to..to + n` slot copy: moved entries now name their new
    /// slot, entries of overwritten target slots are dropped, the ring's contents stay.
    pub fn move_slots(&mut self, from: usize, to: usize, n: usize) {
        let moved: Vec<(usize, usize)> = (from..from + n)
            .filter_map(|s| self.position.get(&s).map(|&p| (s + to - from, p)))
            .collect();
        for s in to..to + n {
            self.forget(s);
        }
        for (s, p) in moved {
            // The source slot keeps its value too, but one ring entry names one slot: the copy
            // (the slot the strategy reads from now on) takes it.
            if let Some(old) = self.holder[p].replace(s) {
                self.position.remove(&old);
            }
            self.position.insert(s, p);
        }
    }
}

//! The host bookkeeping of an evicting cache: per *region* — one (layer, row, KV head) — which
//! token position each slot holds, and which slots attention reads, in the order it reads them.
//!
//! Regions are per KV head because H2O and SnapKV choose per head; every region of a layer keeps
//! the same number of tokens, so attention over a layer stays one dense tensor.

use std::ops::Range;

/// A slot that holds no token.
pub(crate) const EMPTY: usize = usize::MAX;

#[derive(Debug, Clone)]
pub struct SlotTable {
    pub layers: usize,
    pub batch: usize,
    /// KV heads per row.
    pub heads: usize,
    /// Slots per region.
    pub capacity: usize,
    /// `[regions * capacity]`: the token position each slot holds, [`EMPTY`] where none.
    pos: Vec<usize>,
    /// Per region, the live slots in the order attention reads them (new tokens last).
    live: Vec<Vec<usize>>,
}

impl SlotTable {
    pub fn new(layers: usize, batch: usize, heads: usize, capacity: usize) -> Self {
        let regions = layers * batch * heads;
        Self {
            layers,
            batch,
            heads,
            capacity,
            pos: vec![EMPTY; regions * capacity],
            live: vec![Vec::new(); regions],
        }
    }

    pub fn regions(&self) -> usize {
        self.live.len()
    }

    /// The region of `(layer, row, head)`; a layer's regions are row-major, heads inner.
    pub fn region(&self, layer: usize, row: usize, head: usize) -> usize {
        (layer * self.batch + row) * self.heads + head
    }

    /// `(layer, row, head)` of a region.
    pub fn coords(&self, region: usize) -> (usize, usize, usize) {
        let head = region % self.heads;
        let row = (region / self.heads) % self.batch;
        (region / (self.heads * self.batch), row, head)
    }

    pub(crate) fn layer_regions(&self, layer: usize) -> Range<usize> {
        let n = self.batch * self.heads;
        layer * n..(layer + 1) * n
    }

    /// The live slots of `region`, in attention's order.
    pub fn live(&self, region: usize) -> &[usize] {
        &self.live[region]
    }

    /// The token position slot `slot` of `region` holds ([`EMPTY`] if none).
    pub fn pos(&self, region: usize, slot: usize) -> usize {
        self.pos[region * self.capacity + slot]
    }

    /// Tokens every region of `layer` keeps.
    pub fn kept(&self, layer: usize) -> usize {
        self.live[self.region(layer, 0, 0)].len()
    }

    /// Live slot-regions summed over the whole table (for live bytes).
    pub(crate) fn live_total(&self) -> usize {
        self.live.iter().map(Vec::len).sum()
    }

    /// The live slot of `region` holding its oldest token (ties cannot happen: positions in a
    /// region are distinct).
    pub fn oldest(&self, region: usize) -> usize {
        *self.live[region].iter().min_by_key(|&&s| self.pos(region, s)).expect("a full region")
    }

    /// Token `p` enters the unused slot `slot`, read last.
    pub fn append(&mut self, region: usize, slot: usize, p: usize) {
        debug_assert_eq!(self.pos(region, slot), EMPTY, "append into an unused slot");
        self.pos[region * self.capacity + slot] = p;
        self.live[region].push(slot);
    }

    /// Token `p` replaces the live slot `slot`'s token; the slot keeps its place in the order.
    pub fn replace(&mut self, region: usize, slot: usize, p: usize) {
        debug_assert_ne!(self.pos(region, slot), EMPTY, "replace a live slot");
        self.pos[region * self.capacity + slot] = p;
    }

    /// Slot `slot` is read last (it has just taken the newest token).
    pub(crate) fn move_to_back(&mut self, region: usize, slot: usize) {
        let live = &mut self.live[region];
        if let Some(i) = live.iter().position(|&s| s == slot) {
            live.remove(i);
            live.push(slot);
        }
    }

    /// The full `region`'s oldest token leaves by every later slot moving one place toward the
    /// front, and token `p` enters the last slot. A rolled region's live slots are always
    /// `0..n` in order, so the oldest is slot 0.
    pub fn roll(&mut self, region: usize, p: usize) {
        let (base, n) = (region * self.capacity, self.live[region].len());
        debug_assert!(
            self.live[region].iter().enumerate().all(|(i, &s)| i == s),
            "rolled in order"
        );
        self.pos.copy_within(base + 1..base + n, base);
        self.pos[base + n - 1] = p;
    }

    /// Keeps exactly `keep` (live slots of `region`, in the order given); the others empty.
    pub fn retain(&mut self, region: usize, keep: Vec<usize>) {
        let base = region * self.capacity;
        let mut held = vec![false; self.capacity];
        keep.iter().for_each(|&s| held[s] = true);
        for &s in &self.live[region] {
            if !held[s] {
                self.pos[base + s] = EMPTY;
            }
        }
        self.live[region] = keep;
    }

    pub fn clear(&mut self) {
        self.pos.fill(EMPTY);
        self.live.iter_mut().for_each(Vec::clear);
    }

    /// The invariants every operation keeps, for tests: live slots are distinct, inside the
    /// region and hold a token; unused slots hold none; a region's positions are distinct; every
    /// region of a layer keeps as many tokens.
    pub fn check(&self) -> Result<(), String> {
        for region in 0..self.regions() {
            let live = &self.live[region];
            let mut seen_slot = vec![false; self.capacity];
            let mut positions = Vec::with_capacity(live.len());
            for &s in live {
                if s >= self.capacity || std::mem::replace(&mut seen_slot[s], true) {
                    return Err(format!("region {region}: slot {s} outside or repeated"));
                }
                let p = self.pos(region, s);
                if p == EMPTY {
                    return Err(format!("region {region}: live slot {s} holds no token"));
                }
                positions.push(p);
            }
            if (0..self.capacity).any(|s| !seen_slot[s] && self.pos(region, s) != EMPTY) {
                return Err(format!("region {region}: an unused slot holds a token"));
            }
            positions.sort_unstable();
            if positions.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("region {region}: a position held twice"));
            }
            let (layer, _, _) = self.coords(region);
            if live.len() != self.kept(layer) {
                return Err(format!(
                    "region {region}: keeps {} of layer {layer}'s {}",
                    live.len(),
                    self.kept(layer)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_coordinates_round_trip() {
        let t = SlotTable::new(3, 2, 4, 5);
        for r in 0..t.regions() {
            let (l, row, h) = t.coords(r);
            assert_eq!(t.region(l, row, h), r);
        }
        assert_eq!(t.layer_regions(1), 8..16);
    }

    #[test]
    fn append_replace_retain_keep_the_invariants() {
        let mut t = SlotTable::new(1, 1, 1, 4);
        for p in 0..4 {
            t.append(0, p, p);
        }
        t.replace(0, 2, 4);
        assert_eq!(t.oldest(0), 0);
        t.retain(0, vec![3, 2]);
        t.check().unwrap();
        assert_eq!(t.live(0), [3, 2]);
        assert_eq!((t.pos(0, 0), t.pos(0, 2)), (EMPTY, 4));
    }

    #[test]
    fn roll_and_move_to_back_keep_the_invariants() {
        let mut t = SlotTable::new(1, 1, 1, 3);
        for p in 0..3 {
            t.append(0, p, p);
        }
        t.roll(0, 3);
        t.check().unwrap();
        assert_eq!((0..3).map(|s| t.pos(0, s)).collect::<Vec<_>>(), [1, 2, 3]);
        t.replace(0, 0, 4);
        t.move_to_back(0, 0);
        t.check().unwrap();
        assert_eq!(t.live(0), [1, 2, 0]);
    }
}

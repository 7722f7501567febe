//! A first-fit free-list allocator over one contiguous address range.
//!
//! This is how a serving system without paging must place each request's KV: one contiguous
//! extent per request (a slice of a preallocated buffer). Holes left by finished requests are
//! reused first-fit by address and coalesced with their neighbours on free, so external
//! fragmentation shows up exactly as it would: free bytes split into holes too small for the
//! next request. Units are bytes (any unit works; the allocator never interprets them).

use std::collections::BTreeMap;

use thiserror::Error;

/// Why an allocation or free failed. A failing call leaves the allocator unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AllocError {
    #[error("cannot allocate zero bytes")]
    ZeroSize,
    #[error("no hole fits {size} bytes (largest hole {largest_hole}, {free} free in all)")]
    NoFit { size: u64, largest_hole: u64, free: u64 },
    #[error("offset {0} is not the start of a live allocation")]
    NotAllocated(u64),
}

/// First-fit allocator over `[0, capacity)`.
#[derive(Debug, Clone)]
pub(crate) struct FirstFit {
    capacity: u64,
    /// Free holes by start offset; never adjacent (coalesced), never empty.
    holes: BTreeMap<u64, u64>,
    /// Live allocations by start offset → length.
    live: BTreeMap<u64, u64>,
    free: u64,
}

impl FirstFit {
    /// An allocator whose whole range is one free hole.
    pub fn new(capacity: u64) -> Self {
        let mut holes = BTreeMap::new();
        if capacity > 0 {
            holes.insert(0, capacity);
        }
        Self { capacity, holes, live: BTreeMap::new(), free: capacity }
    }

    /// Size of the managed range.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes in holes.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free
    }

    /// Bytes in live allocations.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.capacity - self.free
    }

    /// The largest hole: the biggest allocation that would succeed now.
    pub(crate) fn largest_hole(&self) -> u64 {
        self.holes.values().copied().max().unwrap_or(0)
    }

    /// Free holes as `(offset, len)` in address order.
    #[cfg(test)]
    pub(crate) fn holes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.holes.iter().map(|(&o, &l)| (o, l))
    }

    /// Live allocations as `(offset, len)` in address order.
    #[cfg(test)]
    pub(crate) fn allocations(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.live.iter().map(|(&o, &l)| (o, l))
    }

    /// Places `size` bytes in the lowest-addressed hole that fits; returns the start offset.
    pub fn allocate(&mut self, size: u64) -> Result<u64, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let Some((&offset, &len)) = self.holes.iter().find(|&(_, &len)| len >= size) else {
            return Err(AllocError::NoFit {
                size,
                largest_hole: self.largest_hole(),
                free: self.free,
            });
        };
        self.holes.remove(&offset);
        if len > size {
            self.holes.insert(offset + size, len - size);
        }
        self.live.insert(offset, size);
        self.free -= size;
        Ok(offset)
    }

    /// Returns the allocation starting at `offset`, merging it with adjacent holes.
    pub fn free(&mut self, offset: u64) -> Result<(), AllocError> {
        let size = self.live.remove(&offset).ok_or(AllocError::NotAllocated(offset))?;
        self.free += size;
        let (mut start, mut len) = (offset, size);
        if let Some((&prev, &prev_len)) = self.holes.range(..offset).next_back()
            && prev + prev_len == offset
        {
            self.holes.remove(&prev);
            start = prev;
            len += prev_len;
        }
        if let Some(next_len) = self.holes.remove(&(offset + size)) {
            len += next_len;
        }
        self.holes.insert(start, len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn first_fit_takes_the_lowest_hole() {
        let mut a = FirstFit::new(100);
        let x = a.allocate(10).unwrap();
        let y = a.allocate(30).unwrap();
        let z = a.allocate(10).unwrap();
        assert_eq!((x, y, z), (0, 10, 40));
        a.free(x).unwrap();
        a.free(z).unwrap(); // coalesces with the tail hole 50..100
        assert_eq!(a.holes().collect::<Vec<_>>(), vec![(0, 10), (40, 60)]);
        assert_eq!(a.allocate(5).unwrap(), 0, "first fit, not best fit");
        assert_eq!(a.allocate(20).unwrap(), 40);
    }

    #[test]
    fn external_fragmentation_blocks_a_fitting_total() {
        let mut a = FirstFit::new(40);
        let offs: Vec<u64> = (0..4).map(|_| a.allocate(10).unwrap()).collect();
        a.free(offs[0]).unwrap();
        a.free(offs[2]).unwrap();
        assert_eq!((a.free_bytes(), a.largest_hole()), (20, 10));
        assert_eq!(
            a.allocate(20).unwrap_err(),
            AllocError::NoFit { size: 20, largest_hole: 10, free: 20 }
        );
        a.free(offs[1]).unwrap(); // bridges both holes
        assert_eq!(a.holes().collect::<Vec<_>>(), vec![(0, 30)]);
        assert_eq!(a.allocate(30).unwrap(), 0);
    }

    #[test]
    fn bad_calls_change_nothing() {
        let mut a = FirstFit::new(8);
        assert_eq!(a.allocate(0).unwrap_err(), AllocError::ZeroSize);
        assert!(matches!(a.allocate(9), Err(AllocError::NoFit { .. })));
        let x = a.allocate(4).unwrap();
        assert_eq!(a.free(x + 1).unwrap_err(), AllocError::NotAllocated(x + 1));
        a.free(x).unwrap();
        assert_eq!(a.free(x).unwrap_err(), AllocError::NotAllocated(x));
        assert_eq!(a.holes().collect::<Vec<_>>(), vec![(0, 8)]);
        assert!(matches!(FirstFit::new(0).allocate(1), Err(AllocError::NoFit { .. })));
    }

    /// Random traffic: holes and allocations tile the range exactly, holes never touch.
    #[test]
    fn property_holes_and_allocations_tile_the_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut a = FirstFit::new(1000);
        let mut live = Vec::new();
        for _ in 0..20_000 {
            if rng.random_bool(0.55) {
                if let Ok(o) = a.allocate(rng.random_range(1..=120)) {
                    live.push(o);
                }
            } else if !live.is_empty() {
                a.free(live.swap_remove(rng.random_range(0..live.len()))).unwrap();
            }
            let mut pieces: Vec<(u64, u64, bool)> = a
                .holes()
                .map(|(o, l)| (o, l, true))
                .chain(a.allocations().map(|(o, l)| (o, l, false)))
                .collect();
            pieces.sort_unstable();
            let mut at = 0;
            for w in pieces.windows(2) {
                assert!(!(w[0].2 && w[1].2), "adjacent holes were not coalesced");
            }
            for (o, l, _) in pieces {
                assert_eq!(o, at, "gap or overlap at {at}");
                at += l;
            }
            assert_eq!(at, 1000);
            assert_eq!(a.free_bytes() + a.used_bytes(), a.capacity());
            assert_eq!(a.free_bytes(), a.holes().map(|(_, l)| l).sum::<u64>());
        }
    }
}

//! The synthetic prompts the timing workloads feed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `batch` rows of `len` token ids drawn from a ChaCha8 stream seeded with `seed`: the same
/// prompts for every strategy of a sweep.
pub fn random_prompts(seed: u64, batch: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch).map(|_| (0..len).map(|_| rng.random_range(0..vocab as u32)).collect()).collect()
}

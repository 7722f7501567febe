//! A `[rows, a, b]` buffer kept as fixed-size chunks of rows, so writing a few rows costs
//! O(chunk), never O(rows).
//!
//! Why: burn-flex 0.21's `slice_assign` copies the whole destination buffer on every call (its
//! `slice_write_impl` keeps a second handle to the buffer through `to_contiguous()` before
//! asking for mutable storage, so copy-on-write always fires; tracel-ai/burn#5575, fixed after
//! 0.21). A cache held as one tensor per layer would pay O(context) per written token. Split
//! into chunks, the copy is bounded by one chunk; reads stitch chunks back together (a slice
//! when the rows sit in one chunk, a concatenation otherwise), which is O(rows read) like the
//! attention that consumes them. On flex, a write into a chunk nothing else holds skips even
//! that copy ([`in_place`]): O(rows written).

use std::ops::Range;

use burn::prelude::*;
use burn::tensor::BasicOps;

use crate::in_place;
use crate::slot_runs::runs;

/// Rows per chunk: small enough that a write's copy is cheap (128 × 3 heads × 64 dims × 4 B =
/// 96 KiB for SmolLM2), large enough that a 16k-token read stitches only 128 pieces.
pub(crate) const CHUNK_ROWS: usize = 128;

/// Rows of one chunk, uncopied: `(chunk, first row in the chunk, rows)`. The chunk is a handle
/// to the whole `[CHUNK_ROWS, a, b]` buffer, not a slice.
pub(crate) type Span<B, K> = (Tensor<B, 3, K>, usize, usize);

#[derive(Debug, Clone)]
pub struct Chunked<B: Backend, K: BasicOps<B> = Float> {
    /// `[CHUNK_ROWS, a, b]` each (the last may be shorter). `Option` only so a write can take
    /// a chunk and leave no other handle to its buffer.
    chunks: Vec<Option<Tensor<B, 3, K>>>,
    rows: usize,
    inner: [usize; 2],
}

impl<B: Backend, K: BasicOps<B>> Chunked<B, K>
where
    K::Primitive: 'static,
{
    /// `make(rows)` allocates one zeroed `[rows, a, b]` chunk.
    pub fn new(rows: usize, inner: [usize; 2], make: impl Fn(usize) -> Tensor<B, 3, K>) -> Self {
        let chunks = (0..rows)
            .step_by(CHUNK_ROWS)
            .map(|start| Some(make(CHUNK_ROWS.min(rows - start))))
            .collect();
        Self { chunks, rows, inner }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes the chunks' buffers hold (elements times the dtype's size).
    pub fn bytes(&self) -> usize {
        (0..self.chunks.len())
            .map(|c| self.chunk(c).shape().num_elements() * self.chunk(c).dtype().size())
            .sum()
    }

    fn chunk(&self, c: usize) -> &Tensor<B, 3, K> {
        self.chunks[c].as_ref().expect("chunks are only taken during a write")
    }

    /// Pieces `(chunk, first_row_in_chunk, first_source_row, len)` covering `rows`, in order.
    fn pieces(rows: &[usize]) -> Vec<(usize, usize, usize, usize)> {
        let mut out = Vec::new();
        for run in runs(rows) {
            let (mut row, mut src, mut len) = (run.first_slot, run.first_token, run.len);
            while len > 0 {
                let (c, at) = (row / CHUNK_ROWS, row % CHUNK_ROWS);
                let take = len.min(CHUNK_ROWS - at);
                out.push((c, at, src, take));
                (row, src, len) = (row + take, src + take, len - take);
            }
        }
        out
    }

    /// Rows `rows`, in order: `[rows.len(), a, b]`.
    pub fn gather(&self, rows: &[usize]) -> Tensor<B, 3, K> {
        let [a, b] = self.inner;
        let parts: Vec<Tensor<B, 3, K>> = Self::pieces(rows)
            .into_iter()
            .map(|(c, at, _, len)| self.chunk(c).clone().slice([at..at + len, 0..a, 0..b]))
            .collect();
        match parts.len() {
            1 => parts.into_iter().next().expect("one part"),
            _ => Tensor::cat(parts, 0),
        }
    }

    /// Rows of `ranges`, in order: `[total rows, a, b]`. Like [`Chunked::gather`] of every row,
    /// but O(chunks touched) bookkeeping instead of a list of every row.
    pub(crate) fn gather_ranges(&self, ranges: &[Range<usize>]) -> Tensor<B, 3, K> {
        let [a, b] = self.inner;
        let parts: Vec<Tensor<B, 3, K>> = self
            .spans(ranges)
            .into_iter()
            .flatten()
            .map(|(chunk, at, len)| chunk.slice([at..at + len, 0..a, 0..b]))
            .collect();
        match parts.len() {
            1 => parts.into_iter().next().expect("one part"),
            _ => Tensor::cat(parts, 0),
        }
    }

    /// Per range, the chunks it lies in, uncopied, in order.
    pub fn spans(&self, ranges: &[Range<usize>]) -> Vec<Vec<Span<B, K>>> {
        let span = |r: &Range<usize>| {
            let (mut row, mut out) = (r.start, Vec::new());
            while row < r.end {
                let (c, at) = (row / CHUNK_ROWS, row % CHUNK_ROWS);
                let take = (r.end - row).min(CHUNK_ROWS - at);
                out.push((self.chunk(c).clone(), at, take));
                row += take;
            }
            out
        };
        ranges.iter().map(span).collect()
    }

    /// Writes row `i` of `src` (`[rows.len(), a, b]`) into row `rows[i]`.
    pub fn assign(&mut self, rows: &[usize], src: Tensor<B, 3, K>) {
        let [a, b] = self.inner;
        for (c, at, from, len) in Self::pieces(rows) {
            let part = src.clone().slice([from..from + len, 0..a, 0..b]);
            let mut chunk = self.chunks[c].take().expect("chunk present").into_primitive();
            let part = part.into_primitive();
            let written = if in_place::write_rows(&mut chunk, at, &part) {
                Tensor::from_primitive(chunk)
            } else {
                Tensor::from_primitive(chunk)
                    .slice_assign([at..at + len, 0..a, 0..b], Tensor::from_primitive(part))
            };
            self.chunks[c] = Some(written);
        }
    }

    /// Copies rows `from..from + n` onto `to..to + n` (overlap allowed: the source is read
    /// before anything is written; where it is a view of a chunk being written, copy-on-write
    /// gives the write a new buffer and the view keeps the old rows).
    pub(crate) fn copy_rows(&mut self, from: usize, to: usize, n: usize) {
        if n == 0 || from == to {
            return;
        }
        let moved = self.gather(&(from..from + n).collect::<Vec<_>>());
        self.assign(&(to..to + n).collect::<Vec<_>>(), moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn_flex::Flex;

    fn filled(rows: usize) -> Chunked<B> {
        let dev = Default::default();
        let mut c = Chunked::<B>::new(rows, [1, 2], |n| Tensor::zeros([n, 1, 2], &dev));
        let data: Vec<f32> = (0..rows * 2).map(|i| i as f32).collect();
        c.assign(
            &(0..rows).collect::<Vec<_>>(),
            Tensor::from_data(TensorData::new(data, [rows, 1, 2]), &dev),
        );
        c
    }

    fn values(t: Tensor<B, 3>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn rows_read_back_across_chunk_boundaries() {
        let c = filled(300);
        let rows = [127, 128, 129, 299, 0, 5, 6];
        let want: Vec<f32> =
            rows.iter().flat_map(|&r| [2.0 * r as f32, 2.0 * r as f32 + 1.0]).collect();
        assert_eq!(values(c.gather(&rows)), want);
        assert_eq!(values(c.gather(&(120..140).collect::<Vec<_>>())).len(), 40);
        let ranges = [120..260, 3..5, 299..300];
        let rows: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
        assert_eq!(values(c.gather_ranges(&ranges)), values(c.gather(&rows)));
    }

    #[test]
    fn copy_rows_handles_overlap_in_both_directions() {
        let mut c = filled(260);
        c.copy_rows(1, 0, 259); // the shift window's roll, across two chunk boundaries
        assert_eq!(
            values(c.gather(&[0, 127, 128, 258])),
            vec![2., 3., 256., 257., 258., 259., 518., 519.]
        );
        let mut c = filled(260);
        c.copy_rows(0, 1, 259);
        assert_eq!(values(c.gather(&[1, 128, 259])), vec![0., 1., 254., 255., 516., 517.]);
    }
}

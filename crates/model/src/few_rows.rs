//! `x · w` for a few rows of `x` (a batched decode step: one row per sequence), reading the
//! weight once.
//!
//! Why: with 2 to 16 rows, gemm takes its packed path: it copies panels of `w` into its own
//! layout and runs microkernels sized for large `m`, so a batch-8 decode step costs several
//! batch-1 steps and batching gains little (measured: batch 8 decoded 1.4x the tokens per second
//! of batch 1, where reading the weights once for all rows could give up to 8x). Here the
//! weight is streamed once, in place, a few rows of it at a time; while a block of them is in
//! L1, every row of `x` adds its share to its sums.
//!
//! Numerics: each output is `Σ_c x[i, c] · w[c, j]` summed in order of `c` with fused
//! multiply-adds; gemm sums in another order, so the two agree to float rounding (tested
//! within 1e-5 relative), not bit for bit. Batch-1 steps (one row) keep gemm's gemv path.

use burn::prelude::*;

use crate::flex_buffer::flex_f32;

/// Rows above this go to gemm: its packed kernels win once the weight's reuse is large.
pub const MAX_ROWS: usize = 16;

/// Output columns per block: a row's sums are 64 floats (four AVX-512 registers), each weight
/// row's part 256 contiguous bytes.
const COLS: usize = 64;

/// Weight rows per pass: the block's `DEPTH × COLS` weights (4 KiB) stay in L1 while every row
/// of `x` uses them; each output's sums are loaded and stored once per pass.
const DEPTH: usize = 16;

/// `x · w`, or `None` (nothing computed) unless `x` has 2..=[`MAX_ROWS`] rows, both are f32
/// flex tensors with contiguous rows, and the CPU has fused multiply-add (x86-64's FMA; without
/// it `mul_add` is a library call per element, and gemm is faster).
///
/// # Shapes
/// - x: `[m, k]`; w: `[k, n]`; output: `[m, n]`
pub fn matmul<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let ([m, k], [k2, n]) = (x.dims(), w.dims());
    if !(2..=MAX_ROWS).contains(&m) || k != k2 || !available() {
        return None;
    }
    let (xs, x_at, [x_row, _]) = flex_f32::<2>(&x.clone().into_primitive())?;
    let (ws, w_at, [w_row, _]) = flex_f32::<2>(&w.clone().into_primitive())?;
    let job = Job {
        x: &xs.storage::<f32>()[x_at..],
        x_row,
        w: &ws.storage::<f32>()[w_at..],
        w_row,
        m,
        k,
        n,
    };
    let out = pulp::Arch::new().dispatch(job);
    Some(Tensor::from_data(TensorData::new(out, [m, n]), &x.device()))
}

/// Whether this CPU takes the few-row path at all (x86-64 with FMA).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

struct Job<'a> {
    /// `x[i, c]` at `x[i · x_row + c]`.
    x: &'a [f32],
    x_row: usize,
    /// `w[c, j]` at `w[c · w_row + j]`.
    w: &'a [f32],
    w_row: usize,
    m: usize,
    k: usize,
    n: usize,
}

impl pulp::WithSimd for Job<'_> {
    /// `[m, n]`
    type Output = Vec<f32>;

    /// Inlined into pulp's function for the CPU's SIMD level, so the loops below are compiled
    /// for it.
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        let (m, k, n) = (self.m, self.k, self.n);
        let mut out = vec![0.0f32; m * n];
        // Weight rows c0..c0 + kc, walked left to right a block of columns at a time: kc
        // sequential streams, which the hardware prefetcher follows (one column block walked
        // down all k rows would stride by a whole row per access, across pages, and stall on
        // every load). Each output still sums over c in order.
        for c0 in (0..k).step_by(DEPTH) {
            let kc = DEPTH.min(k - c0);
            for j0 in (0..n).step_by(COLS) {
                let at = At { c0, kc, j0 };
                if n - j0 < COLS {
                    self.edge(&mut out, at);
                    continue;
                }
                // Rows in fours: four rows' sums are 16 independent chains of fused
                // multiply-adds (one row's 4 would wait on the adder's latency), and each
                // weight vector loaded serves all four.
                let mut i = 0;
                while i < m {
                    i += match m - i {
                        1 => self.block::<1>(&mut out, i, at),
                        2 | 3 => self.block::<2>(&mut out, i, at),
                        _ => self.block::<4>(&mut out, i, at),
                    };
                }
            }
        }
        out
    }
}

/// One pass's place: weight rows `c0..c0 + kc`, output columns `j0..j0 + COLS`.
#[derive(Clone, Copy)]
struct At {
    c0: usize,
    kc: usize,
    j0: usize,
}

impl Job<'_> {
    /// Rows `i..i + R` of a full column block; returns `R`.
    #[inline(always)]
    fn block<const R: usize>(&self, out: &mut [f32], i: usize, at: At) -> usize {
        let (n, At { c0, kc, j0 }) = (self.n, at);
        // [R][COLS]: the rows' sums, in registers for the pass.
        let mut sums = [[0.0f32; COLS]; R];
        for (r, s) in sums.iter_mut().enumerate() {
            s.copy_from_slice(&out[(i + r) * n + j0..(i + r) * n + j0 + COLS]);
        }
        for c in c0..c0 + kc {
            let wr: &[f32; COLS] =
                self.w[c * self.w_row + j0..c * self.w_row + j0 + COLS].try_into().expect("COLS");
            for (r, s) in sums.iter_mut().enumerate() {
                let xv = self.x[(i + r) * self.x_row + c];
                for (s, &wv) in s.iter_mut().zip(wr) {
                    *s = xv.mul_add(wv, *s);
                }
            }
        }
        for (r, s) in sums.iter().enumerate() {
            out[(i + r) * n + j0..(i + r) * n + j0 + COLS].copy_from_slice(s);
        }
        R
    }

    /// Every row of the last, narrower column block.
    #[inline(always)]
    fn edge(&self, out: &mut [f32], at: At) {
        let (n, At { c0, kc, j0 }) = (self.n, at);
        for i in 0..self.m {
            let sums = &mut out[i * n + j0..(i + 1) * n];
            for c in c0..c0 + kc {
                let xv = self.x[i * self.x_row + c];
                let wr = &self.w[c * self.w_row + j0..c * self.w_row + j0 + sums.len()];
                for (s, &wv) in sums.iter_mut().zip(wr) {
                    *s = xv.mul_add(wv, *s);
                }
            }
        }
    }
}

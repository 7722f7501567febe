//! Attention in one pass on flex: scores, mask, softmax and the weighted sum of values computed
//! per block of query rows, reading K/V where they lie, with no `[queries, keys]` tensor.
//!
//! Why: the dense path is seven burn ops over a `[b, kv_heads, n_rep · t, s]` score tensor
//! (matmul, scale, mask bias built on the host, add, softmax, matmul), each a pass over
//! memory, mostly on one thread. At prefill that tensor is quadratic: for 2,048 tokens of
//! SmolLM2 it is 150 MB per layer, plus a 50 MB mask built element by element, and the
//! elementwise passes dominate a prefill of that length. Here each key and value row is read
//! once per block of query rows that share its KV head, scores live in a block-sized scratch,
//! causal rows stop at their last visible key, and blocks run on the fork-join pool.
//!
//! Numerics: the same formula as the dense path (`softmax(q·kᵀ / √d) · v`, max subtracted),
//! summed in another order, so results agree to float rounding (tested against the dense
//! path within 1e-4), not bit for bit. The dense path stays the reference and the fallback:
//! [`attend`] returns `None`, having computed nothing, unless every tensor is an f32 flex
//! tensor whose last axis is contiguous.

use std::sync::{Arc, OnceLock};

use burn::prelude::*;
use burn_flex::FlexTensor;

use crate::cache::KvData;
use crate::flex_buffer::flex_f32;
use crate::fork_join::ForkJoin;
use crate::kv_runs::{KvRuns, SlotRun};

/// Query rows per work unit: each key and value row is read (and the keys transposed) once
/// per unit.
const ROWS: usize = 32;

/// Which keys a query row sees.
#[derive(Debug, Clone)]
pub enum Visible {
    /// The `t` new tokens are the last `t` keys: query `i` sees keys `0..=s - t + i`.
    CausalEnd,
    /// `[batch, t, s]`, true where a key is hidden.
    Hidden(Vec<bool>),
}

/// Queries, keys or values read in place: head `g` of key (or query row) `j` of batch row `bi`
/// is the `d` contiguous floats at `at[bi][j].1 + g · head_stride[at[bi][j].0]` of buffer
/// `at[bi][j].0`. One table serves a dense `[b, h, s, d]` tensor (one buffer) and a cache's
/// runs (a buffer per run), so the kernel below never knows which it reads.
struct Rows {
    bufs: Vec<FlexTensor>,
    head_stride: Vec<usize>,
    /// `[batch][keys]`: (buffer, element offset of head 0). Rows of a ragged batch differ in
    /// length.
    at: Vec<Vec<(usize, usize)>>,
}

impl Rows {
    /// `x`: `[b, h, s, d]`, any strides with a contiguous last axis.
    fn dense<B: Backend>(x: &Tensor<B, 4>) -> Option<Self> {
        let [b, _, s, _] = x.dims();
        let (tensor, offset, [sb, sh, ss, _]) = flex_f32::<4>(&x.clone().into_primitive())?;
        let at = (0..b).map(|bi| (0..s).map(|j| (0, offset + bi * sb + j * ss)).collect());
        Some(Self { bufs: vec![tensor], head_stride: vec![sh], at: at.collect() })
    }

    /// One side of a cache's runs (`side` picks keys or values): `[slots, n_kv, d]` buffers.
    fn runs<B: Backend>(
        runs: &KvRuns<B>,
        side: impl Fn(&SlotRun<B>) -> &Tensor<B, 3>,
    ) -> Option<Self> {
        let (mut bufs, mut head_stride, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for row in &runs.rows {
            let mut keys = Vec::with_capacity(row.iter().map(|r| r.len).sum());
            for run in row {
                let (tensor, offset, [ss, sh, _]) =
                    flex_f32::<3>(&side(run).clone().into_primitive())?;
                let buf = bufs.len();
                bufs.push(tensor);
                head_stride.push(sh);
                keys.extend((run.start..run.start + run.len).map(|j| (buf, offset + j * ss)));
            }
            at.push(keys);
        }
        Some(Self { bufs, head_stride, at })
    }

    /// Every buffer's storage, indexed as `at` indexes buffers.
    fn data(&self) -> Vec<&[f32]> {
        self.bufs.iter().map(|t| t.storage::<f32>()).collect()
    }

    /// The `d` floats of head `g` of key `j` of batch row `bi`.
    #[inline(always)]
    fn row<'a>(&self, data: &[&'a [f32]], bi: usize, g: usize, j: usize, d: usize) -> &'a [f32] {
        let (buf, at) = self.at[bi][j];
        let at = at + g * self.head_stride[buf];
        &data[buf][at..at + d]
    }
}

/// Floats the kernel holds besides its input and output while it attends over `keys` keys of
/// head size `d` with `threads` work units running at once (the fork-join pool's
/// participants): per unit, the keys transposed (`[d, keys]`), its block's scores
/// (`[ROWS, keys]`) and its output rows (`[ROWS, d]`). It holds this instead of the dense
/// path's `[batch, heads, queries, keys]` scores; memory estimates read it from here so they
/// follow the kernel.
pub fn scratch_floats(keys: usize, d: usize, threads: usize) -> usize {
    threads * (d * keys + ROWS * keys + ROWS * d)
}

/// Attention of folded query rows over keys and values.
///
/// # Shapes
/// - q: `[b, kv_heads, n_rep · t, d]`: query head `g · n_rep + r`'s token `i` is row `r · t + i`
///   of group `g` (as the dense path folds it)
/// - kv: `[b, kv_heads, s, d]` each, dense or as runs (rows of runs may be shorter than `s`
///   where `visible` hides the rest)
/// - output: `[b, kv_heads, n_rep · t, d]`
pub fn attend<B: Backend>(
    q: &Tensor<B, 4>,
    kv: &KvData<B>,
    t: usize,
    visible: Visible,
) -> Option<Tensor<B, 4>> {
    let [b, kvh, rows, d] = q.dims();
    let (ks, vs, s) = match kv {
        KvData::Dense { k, v } => (Rows::dense(k)?, Rows::dense(v)?, k.dims()[2]),
        KvData::Runs(runs) => {
            if runs.rows.len() != b || runs.n_kv != kvh || runs.head_dim != d {
                return None;
            }
            (Rows::runs(runs, |r| &r.k)?, Rows::runs(runs, |r| &r.v)?, runs.keys())
        }
    };
    let qs = Rows::dense(q)?;
    let blocks = rows.div_ceil(ROWS);
    let units = b * kvh * blocks;
    let shape = Shape { b, kvh, rows, t, s, d };
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let out: Arc<Vec<OnceLock<Vec<f32>>>> = Arc::new((0..units).map(|_| OnceLock::new()).collect());
    let (results, visible) = (Arc::clone(&out), Arc::new(visible));
    // The block's loops compiled for the widest SIMD the CPU has (the workspace builds for
    // baseline x86-64, whose SSE2 would run them 4 lanes wide).
    let arch = pulp::Arch::new();
    ForkJoin::global().run(
        units,
        Arc::new(move |u| {
            let (bg, block) = (u / blocks, u % blocks);
            let first = block * ROWS;
            let rows = first..(first + ROWS).min(shape.rows);
            let block =
                Block { shape: &shape, q: &qs, k: &ks, v: &vs, visible: &visible, scale, bg, rows };
            let part = arch.dispatch(block);
            let _ = results[u].set(part);
        }),
    );
    let out = Arc::try_unwrap(out).ok()?;
    let mut data = Vec::with_capacity(b * kvh * rows * d);
    for part in out {
        data.extend(part.into_inner()?);
    }
    Some(Tensor::from_data(TensorData::new(data, [b, kvh, rows, d]), &q.device()))
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    b: usize,
    kvh: usize,
    rows: usize,
    t: usize,
    s: usize,
    d: usize,
}

/// One work unit: output rows `rows` of (row, KV head) pair `bg = bi · kvh + g`.
struct Block<'a> {
    shape: &'a Shape,
    q: &'a Rows,
    k: &'a Rows,
    v: &'a Rows,
    visible: &'a Visible,
    scale: f32,
    bg: usize,
    rows: std::ops::Range<usize>,
}

impl pulp::WithSimd for Block<'_> {
    /// `[rows.len() · d]`
    type Output = Vec<f32>;

    /// Inlined, with the loops below, into pulp's function for the CPU's SIMD level, so they
    /// are compiled for it.
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Vec<f32> {
        attend_block(self)
    }
}

#[inline(always)]
fn attend_block(block: Block) -> Vec<f32> {
    let Block { shape, q, k, v, visible, scale, bg, rows } = block;
    let Shape { kvh, t, s, d, .. } = *shape;
    let (bi, g) = (bg / kvh, bg % kvh);
    debug_assert!(bi < shape.b);
    let (qd, kd, vd) = (q.data(), k.data(), v.data());
    // Keys this batch row holds: `s` but in a ragged batch's shorter rows, whose missing keys
    // the mask hides.
    let held = k.at[bi].len();
    let n = rows.len();
    // Per row of the block: which of the keys `0..end` it sees, as a mask (`None`: all).
    let end_of = |r: usize| s - t + r % t + 1;
    let hidden_of = |r: usize| match visible {
        Visible::CausalEnd => None,
        Visible::Hidden(hidden) => Some(&hidden[(bi * t + r % t) * s..(bi * t + r % t + 1) * s]),
    };
    // The last key any row of the block may see, plus one.
    let end = match visible {
        Visible::CausalEnd => rows.clone().map(end_of).max().unwrap_or(0),
        Visible::Hidden(_) => held,
    };
    debug_assert!(end <= held, "a row's visible keys are keys it holds");
    // [d, end]: the keys transposed, so a row's scores are `d` axpys along the keys. (A dot
    // product per key would end in a horizontal sum across the vector lanes, which costs more
    // than the 64-wide product itself.)
    let mut kt = vec![0.0f32; d * end];
    for j in 0..end {
        for (e, &x) in k.row(&kd, bi, g, j, d).iter().enumerate() {
            kt[e * end + j] = x;
        }
    }
    // [n, end]: scores, then probabilities (0 where hidden).
    let mut p = vec![0.0f32; n * end];
    for (x, r) in rows.clone().enumerate() {
        let scores = &mut p[x * end..(x + 1) * end];
        for (e, &qe) in q.row(&qd, bi, g, r, d).iter().enumerate() {
            axpy(qe, &kt[e * end..(e + 1) * end], scores);
        }
        scores.iter_mut().for_each(|x| *x *= scale);
    }
    let mut out = vec![0.0f32; n * d];
    for (x, r) in rows.clone().enumerate() {
        let row = &mut p[x * end..(x + 1) * end];
        // Hidden keys get -inf (exp gives exactly 0); causal rows stop at their own end.
        let visible_end = match hidden_of(r) {
            None => end_of(r),
            Some(hidden) => {
                row.iter_mut().zip(hidden).filter(|(_, h)| **h).for_each(|(e, _)| {
                    *e = f32::NEG_INFINITY;
                });
                end
            }
        };
        row[visible_end..].fill(f32::NEG_INFINITY);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Every key hidden: the dense path's scores are all the mask bias, so its softmax
            // is uniform over all `s` keys (a ragged row's padding is zeros). Same here.
            let w = 1.0 / s as f32;
            let o = &mut out[x * d..(x + 1) * d];
            for j in 0..held {
                axpy(w, v.row(&vd, bi, g, j, d), o);
            }
            continue;
        }
        let mut sum = 0.0f32;
        for e in row.iter_mut() {
            *e = (*e - max).exp();
            sum += *e;
        }
        row.iter_mut().for_each(|e| *e /= sum);
    }
    for j in 0..end {
        let value = v.row(&vd, bi, g, j, d);
        for x in 0..n {
            let w = p[x * end + j];
            if w != 0.0 {
                axpy(w, value, &mut out[x * d..(x + 1) * d]);
            }
        }
    }
    out
}

/// `out += w · x`.
#[inline(always)]
fn axpy(w: f32, x: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(x).for_each(|(o, &x)| *o += w * x);
}

//! A bias-free linear layer stored as column blocks, so one decode step can use every core.
//!
//! Why: a decode step multiplies one row by each weight matrix. gemm runs such a
//! matrix-vector product on a single thread (its gemv path ignores the parallelism setting), so
//! batch-1 decode would read all weights with one core's memory bandwidth. Splitting the output
//! columns into `parts` contiguous blocks and running the blocks on [`ForkJoin`]'s spinning
//! helpers reads the weights once, in parallel. Every output element is computed exactly as
//! before (same inputs, same summation order), so the split changes no logit.

use std::sync::{Arc, OnceLock};

use burn::module::Param;
use burn::prelude::*;

use crate::few_rows;
use crate::fork_join::ForkJoin;
use crate::weights::HostTensor;

#[derive(Module, Debug)]
pub struct SplitLinear<B: Backend> {
    /// Column blocks of the `[in, out]` weight, `[in, out_i]` each, contiguous.
    pub parts: Vec<Param<Tensor<B, 2>>>,
}

impl<B: Backend> SplitLinear<B> {
    /// Builds from `[out, in]` host matrices stacked along `out` (several projections fused into
    /// one pass: q/k/v, gate/up), split into at most `parts` column blocks.
    pub(crate) fn from_host(stacked: &[&HostTensor], parts: usize, device: &B::Device) -> Self {
        let cols = stacked[0].dims2()[1];
        let rows: usize = stacked.iter().map(|t| t.dims2()[0]).sum();
        let mut out_major = Vec::with_capacity(rows * cols);
        for t in stacked {
            debug_assert_eq!(t.dims2()[1], cols);
            out_major.extend_from_slice(&t.data);
        }
        let parts = parts.clamp(1, rows);
        let per = rows.div_ceil(parts);
        let blocks = (0..rows)
            .step_by(per)
            .map(|start| {
                let end = (start + per).min(rows);
                // Transposed on the host: block `[in, end - start]`, contiguous.
                let mut data = vec![0.0f32; cols * (end - start)];
                for (j, r) in (start..end).enumerate() {
                    for c in 0..cols {
                        data[c * (end - start) + j] = out_major[r * cols + c];
                    }
                }
                Param::from_tensor(Tensor::from_data(
                    TensorData::new(data, [cols, end - start]),
                    device,
                ))
            })
            .collect();
        Self { parts: blocks }
    }

    /// # Shapes
    /// - x: `[batch, t, in]` -> `[batch, t, out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let x = x.reshape([b * t, d]);
        let out = match self.parts.as_slice() {
            [w] => product(x, w.val()),
            parts => {
                // One block per participant of the fork-join pool, whose helpers are already
                // awake (rayon's would be woken through a futex for each of the step's ~120
                // calls). Tensors are handles: the clones below copy no data.
                let weights: Vec<Tensor<B, 2>> = parts.iter().map(|w| w.val()).collect();
                let blocks: Arc<Vec<OnceLock<Tensor<B, 2>>>> =
                    Arc::new(parts.iter().map(|_| OnceLock::new()).collect());
                let (x, out) = (x.clone(), Arc::clone(&blocks));
                ForkJoin::global().run(
                    parts.len(),
                    Arc::new(move |i| {
                        let _ = out[i].set(product(x.clone(), weights[i].clone()));
                    }),
                );
                let blocks = Arc::try_unwrap(blocks).expect("the job released its blocks");
                Tensor::cat(
                    blocks.into_iter().map(|b| b.into_inner().expect("block ran")).collect(),
                    1,
                )
            }
        };
        let n = out.dims()[1];
        out.reshape([b, t, n])
    }

    /// The full `[in, out]` weight (for inspection and hashing).
    pub fn weight(&self) -> Tensor<B, 2> {
        Tensor::cat(self.parts.iter().map(|p| p.val()).collect(), 1)
    }
}

/// `x · w`: a few rows (a batched decode step) through [`few_rows`], which reads `w` once, the
/// rest through burn's matmul (gemm).
///
/// # Shapes
/// - x: `[m, in]`; w: `[in, out]`; output: `[m, out]`
fn product<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    few_rows::matmul(&x, &w).unwrap_or_else(|| x.matmul(w))
}

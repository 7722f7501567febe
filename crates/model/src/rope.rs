//! Rotary position embedding (RoPE), in the "rotate half" layout of HF transformers' Llama:
//! dimension `i` is paired with `i + head_dim/2`. GGUF stores Q/K permuted for llama.cpp's
//! interleaved pairs; the loader undoes that permutation so this one layout serves both.

use burn::prelude::*;

/// Precomputed `cos`/`sin` tables for positions `0..max_positions`.
#[derive(Debug, Clone)]
pub struct RotaryEncoding<B: Backend> {
    /// `[max_positions, head_dim]`, each frequency written twice (both halves).
    cos: Tensor<B, 2>,
    /// `[max_positions, head_dim]`
    sin: Tensor<B, 2>,
    head_dim: usize,
    max_positions: usize,
}

impl<B: Backend> RotaryEncoding<B> {
    /// Frequencies `theta^(-2i/d)`, computed in f64 and rounded once to f32.
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        let inv_freq: Vec<f64> =
            (0..half).map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64)).collect();
        for pos in 0..max_positions {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = pos as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [max_positions, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            head_dim,
            max_positions,
        }
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Rotates `x` so that row `r`'s token `i` sits at position `starts[r] + i`.
    ///
    /// # Shapes
    /// - x: `[batch, heads, tokens, head_dim]`
    /// - starts: `batch` entries (or one, shared by every row)
    /// - output: same as x
    pub fn apply(&self, x: Tensor<B, 4>, starts: &[usize]) -> Tensor<B, 4> {
        let [batch, heads, tokens, head_dim] = x.dims();
        debug_assert_eq!(head_dim, self.head_dim);
        if starts.iter().all(|&s| s == starts[0]) {
            // One table slice for every row. Multiplied as `[b * h, t * d] * [1, t * d]`: flex's
            // fast broadcast handles outer dimensions only, and `[b, h, t, d] * [1, 1, t, d]`
            // would fall to its element-by-element path (20x slower on a long re-rotation).
            let s = starts[0];
            self.check_range(s + tokens);
            let cos = self.cos.clone().narrow(0, s, tokens).reshape([1, tokens * head_dim]);
            let sin = self.sin.clone().narrow(0, s, tokens).reshape([1, tokens * head_dim]);
            let flat = [batch * heads, tokens * head_dim];
            let rotated = rotate_half(x.clone()).reshape(flat);
            return (x.reshape(flat) * cos + rotated * sin)
                .reshape([batch, heads, tokens, head_dim]);
        }
        assert_eq!(starts.len(), batch, "one start position per row");
        let index: Vec<i64> = starts
            .iter()
            .flat_map(|&s| {
                self.check_range(s + tokens);
                (s..s + tokens).map(|p| p as i64)
            })
            .collect();
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(index, [batch * tokens]), &x.device());
        // [batch * tokens, head_dim] -> [batch, 1, tokens, head_dim]
        let cos = self.cos.clone().select(0, index.clone()).reshape([batch, 1, tokens, head_dim]);
        let sin = self.sin.clone().select(0, index).reshape([batch, 1, tokens, head_dim]);
        x.clone() * cos + rotate_half(x) * sin
    }

    fn check_range(&self, end: usize) {
        assert!(
            end <= self.max_positions,
            "position {end} is past the rotary table ({} positions)",
            self.max_positions
        );
    }
}

/// `[x1, x2] -> [-x2, x1]` over the last dimension.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.slice([0..b, 0..h, 0..t, d / 2..d]);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

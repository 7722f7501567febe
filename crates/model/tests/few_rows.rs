//! The few-row product (`few_rows::matmul`, a batched decode step's projections) against a
//! product summed here in f64: every shape it takes (2..=16 rows; widths with and without a
//! narrower last column block; depths that are not a multiple of its pass), and the inputs it
//! must leave to gemm.

use burn::prelude::*;
use kvlab_model::few_rows;

type B = burn_flex::Flex;

/// A deterministic pseudo-random matrix with entries in [-1, 1).
fn matrix(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..rows * cols)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `x · w` summed in f64. x: `[m, k]`, w: `[k, n]`, output `[m, n]`.
fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for c in 0..k {
            for j in 0..n {
                out[i * n + j] += x[i * k + c] as f64 * w[c * n + j] as f64;
            }
        }
    }
    out
}

fn tensor(values: Vec<f32>, rows: usize, cols: usize) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), &Default::default())
}

fn fma() -> bool {
    few_rows::available()
}

/// Largest |got − want| relative to the largest |want| (the sums' scale).
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let worst = got.iter().zip(want).fold(0.0f64, |a, (g, w)| a.max((*g as f64 - w).abs()));
    worst / scale
}

#[test]
fn equals_the_f64_product_for_every_row_count_and_edge() {
    if !fma() {
        eprintln!("no FMA on this CPU: few_rows declines every input (checked below)");
    }
    // Widths: whole column blocks (128), a narrower last block (200 = 3·64 + 8), narrower than
    // one block (40); depths: a multiple of the pass (64) and not (37, 576 + 3).
    for (k, n) in [(64, 128), (37, 200), (579, 40), (576, 1536)] {
        for m in 2..=few_rows::MAX_ROWS {
            let (x, w) = (matrix(m, k, (m * 1000 + k) as u64), matrix(k, n, (k * 7 + n) as u64));
            let want = reference(&x, &w, m, k, n);
            let got = few_rows::matmul(&tensor(x, m, k), &tensor(w, k, n));
            let Some(got) = got else {
                assert!(!fma(), "declined m={m} k={k} n={n} on a CPU with FMA");
                continue;
            };
            assert_eq!(got.dims(), [m, n]);
            let got = got.into_data().to_vec::<f32>().unwrap();
            let err = relative_error(&got, &want);
            assert!(err <= 1e-5, "m={m} k={k} n={n}: relative error {err:e}");
        }
    }
}

#[test]
fn leaves_one_row_many_rows_and_strided_rows_to_gemm() {
    let (k, n) = (32, 64);
    let w = tensor(matrix(k, n, 1), k, n);
    for m in [1, few_rows::MAX_ROWS + 1] {
        assert!(few_rows::matmul(&tensor(matrix(m, k, 2), m, k), &w).is_none(), "m={m}");
    }
    // A transposed x has columns, not rows, contiguous.
    let xt = tensor(matrix(k, 4, 3), k, 4).transpose();
    assert!(few_rows::matmul(&xt, &w).is_none(), "transposed x");
    // Mismatched inner dimensions are gemm's to report.
    assert!(few_rows::matmul(&tensor(matrix(4, k + 1, 4), 4, k + 1), &w).is_none());
}

#[test]
fn reads_row_slices_at_their_offset_and_stride() {
    if !fma() {
        return;
    }
    // Rows 3..7 and columns 5..5+k of a wider matrix: a view with an offset and a row stride
    // wider than k.
    let (m, k, n, wide) = (4, 48, 96, 64);
    let all = matrix(10, wide, 9);
    let x = tensor(all.clone(), 10, wide).slice([3..3 + m, 5..5 + k]);
    let w = matrix(k, n, 10);
    let dense: Vec<f32> =
        (3..3 + m).flat_map(|r| all[r * wide + 5..r * wide + 5 + k].to_vec()).collect();
    let want = reference(&dense, &w, m, k, n);
    let got = few_rows::matmul(&x, &tensor(w, k, n)).expect("row-contiguous view");
    let err = relative_error(&got.into_data().to_vec::<f32>().unwrap(), &want);
    assert!(err <= 1e-5, "relative error {err:e}");
}

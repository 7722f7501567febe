//! Model init is deterministic: the same seed gives the same parameters, run to run and across
//! backends (weights are drawn on the host, then uploaded).

use burn::prelude::*;
use kvlab_model::init::random_weights;
use kvlab_model::{Model, ModelConfig};
use sha2::{Digest, Sha256};

fn parameters<B: Backend>(seed: u64) -> Vec<Vec<f32>> {
    let config = ModelConfig::seed_toy();
    Model::<B>::from_weights(&random_weights(&config, seed), &Default::default())
        .unwrap()
        .parameters_f32()
}

fn hash(params: &[Vec<f32>]) -> String {
    let mut h = Sha256::new();
    for p in params {
        for v in p {
            h.update(v.to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

#[test]
fn same_seed_same_parameters_on_flex_twice() {
    let a = parameters::<burn_flex::Flex>(0);
    let b = parameters::<burn_flex::Flex>(0);
    assert_eq!(hash(&a), hash(&b));
    assert_ne!(hash(&a), hash(&parameters::<burn_flex::Flex>(1)), "the seed matters");
}

#[test]
fn same_seed_same_parameters_across_flex_and_ndarray() {
    let flex = parameters::<burn_flex::Flex>(0);
    let nd = parameters::<burn_ndarray::NdArray<f32>>(0);
    assert_eq!(flex.len(), nd.len());
    for (i, (a, b)) in flex.iter().zip(&nd).enumerate() {
        assert_eq!(a.len(), b.len(), "tensor {i}");
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "tensor {i} differs by {diff}");
    }
}

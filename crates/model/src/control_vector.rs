//! Control vectors: a fixed vector added to the residual stream after a layer, for every token
//! (llama.cpp's `llama_set_adapter_cvec`, applied where its graphs call `build_cvec`: after the
//! layer's MLP residual, on layers 1 and up).
//!
//! kvlab uses them to perturb a model by a rounding-sized amount: a quantized cache turns such
//! a perturbation into different codes (a value near a level boundary lands on the other side),
//! so its perplexity over a few hundred tokens moves by up to a few percent where the f32
//! cache's moves by hundredths. Perplexities of the same configuration under several
//! perturbations ("draws") give the spread any one number carries, in kvlab and, with the very
//! same vectors, in llama.cpp (`scripts/peer-quant/llama_cpp_ppl.py --draws`).
//!
//! The vectors are reproducible from a seed in both languages: SplitMix64 (Steele, Lea and
//! Flood's constants) gives 53-bit uniforms in (0, 1), Box–Muller turns each pair into two
//! normal values (f64, then f32), filled layer 1 first, channel by channel.

use burn::prelude::*;

/// Per layer, the vector added to its output (`None`: nothing, as for layer 0).
#[derive(Debug, Clone)]
pub struct ControlVector<B: Backend> {
    /// Per layer: `[hidden]`.
    layers: Vec<Option<Tensor<B, 1>>>,
}

impl<B: Backend> ControlVector<B> {
    /// Gaussian noise of standard deviation `scale` on layers `1..n_layers` (llama.cpp's
    /// control vectors start at layer 1), drawn from `seed`.
    pub fn noise(
        n_layers: usize,
        hidden: usize,
        seed: u64,
        scale: f64,
        device: &B::Device,
    ) -> Self {
        let values = normal_values(seed, n_layers.saturating_sub(1) * hidden);
        let layers = (0..n_layers)
            .map(|layer| {
                let start = layer.checked_sub(1)? * hidden;
                let v: Vec<f32> =
                    values[start..start + hidden].iter().map(|&x| (x * scale) as f32).collect();
                Some(Tensor::from_data(TensorData::new(v, [hidden]), device))
            })
            .collect();
        Self { layers }
    }

    /// The vector added after layer `layer`, if any: `[hidden]`.
    pub fn layer(&self, layer: usize) -> Option<&Tensor<B, 1>> {
        self.layers.get(layer)?.as_ref()
    }
}

/// SplitMix64's next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform in (0, 1): the top 53 bits, centred in their interval (never 0, for the log).
fn uniform(state: &mut u64) -> f64 {
    ((splitmix64(state) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// `n` standard normal values from `seed`, by Box–Muller over consecutive uniform pairs.
pub fn normal_values(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let (u1, u2) = (uniform(&mut state), uniform(&mut state));
        let r = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        out.extend([r * angle.cos(), r * angle.sin()]);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_published_first_outputs() {
        // SplitMix64 from seed 0 (the reference C of Vigna's xoshiro page).
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn normal_values_are_the_peer_scripts() {
        // scripts/peer-quant/llama_cpp_ppl.py `normal_values(1, 5)`, printed by Python: the
        // perturbations llama.cpp gets are these.
        let python =
            [-0.028249746095854695, -1.065617648414326, -0.22791952286763517, 0.08309416847150097];
        let rust = normal_values(1, 5);
        for (r, p) in rust.iter().zip(python) {
            assert!((r - p).abs() <= 1e-15, "{r} vs {p}");
        }
        assert_eq!(rust.len(), 5);
    }

    #[test]
    fn a_draw_perturbs_layers_after_the_first_and_only_by_its_vectors() {
        use crate::config::ModelConfig;
        use crate::init::random_weights;
        use crate::model::{Model, tokens_tensor};
        use crate::no_cache::NoCache;
        type B = burn_flex::Flex;
        let config = ModelConfig::seed_toy();
        let dev = Default::default();
        let model = Model::<B>::from_weights(&random_weights(&config, 3), &dev).unwrap();
        let (n, hidden) = (config.n_layers, config.hidden_size);
        let logits = |control: Option<ControlVector<B>>| -> Vec<f32> {
            let model = model.clone().with_control(control);
            let tokens = tokens_tensor(&[&[5, 9, 2, 7][..]], &dev);
            let out = model.forward(tokens, &mut NoCache::new(1)).unwrap();
            out.into_data().to_vec::<f32>().unwrap()
        };
        let plain = logits(None);
        // A vector of zeros adds nothing, bit for bit.
        assert_eq!(logits(Some(ControlVector::noise(n, hidden, 1, 0.0, &dev))), plain);
        let draw = ControlVector::<B>::noise(n, hidden, 1, 1e-2, &dev);
        assert!(draw.layer(0).is_none(), "llama.cpp's control vectors start at layer 1");
        let v = draw.layer(1).unwrap().clone().into_data().to_vec::<f32>().unwrap();
        let want: Vec<f32> = normal_values(1, hidden).iter().map(|x| (x * 1e-2) as f32).collect();
        assert_eq!(v, want, "layer 1 takes the first `hidden` values");
        assert!(draw.layer(n - 1).is_some() && draw.layer(n).is_none());
        assert_ne!(logits(Some(draw)), plain);
    }

    #[test]
    fn normal_values_have_unit_moments() {
        let v = normal_values(7, 200_000);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }
}

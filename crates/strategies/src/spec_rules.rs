//! What a spec reads and refuses, and what its keep-policy answers: the parameters that apply
//! to it, its validation (each parameter's check from the registry, then the kind's), and the
//! questions callers ask of the policy instead of restating its rule (which positions it keeps,
//! whether it cuts the prompt, whether it rotates keys inside the cache).

use std::ops::Range;

use kvlab_model::ModelConfig;

use crate::entry::{Holds, PolicyArgs};
use crate::error::{SpecError, invalid};
use crate::evict::discipline::Rope;
use crate::evict::policy::{KeepPolicy, Scope};
use crate::quant::CODE_BITS;
use crate::spec::{QUANT_PARAMETERS, StrategySpec};

impl StrategySpec {
    /// Whether the K/V live in a slot store that bits can wrap.
    pub fn stores_slots(&self) -> bool {
        !matches!(self.kind.entry().holds, Holds::Nothing | Holds::Concat)
    }

    /// Bits of the store when quantized (`None` for f32).
    pub(crate) fn quant_bits(&self) -> Option<u8> {
        self.bits.filter(|&b| b != 32 && self.stores_slots())
    }

    /// Every parameter this spec reads: the kind's own, `bits` where a slot store exists, the
    /// quantization keys once `bits` quantizes, and the head transform.
    pub fn applicable(&self) -> Vec<&'static str> {
        let mut keys = self.kind.parameters();
        if self.stores_slots() {
            keys.push("bits");
            keys.push("rotation");
        }
        if self.quant_bits().is_some() {
            keys.extend(QUANT_PARAMETERS);
        }
        keys.push("kv_heads");
        if self.kv_heads.is_some() {
            keys.push("head_reduction");
        }
        keys
    }

    /// [`StrategySpec::applicable`] for a known checkpoint: `head_reduction` only matters when
    /// `kv_heads` is fewer than the checkpoint's KV heads (more heads are always repeats).
    pub fn applicable_to(&self, config: &ModelConfig) -> Vec<&'static str> {
        let reduces = self.kv_heads.is_some_and(|k| k < config.n_kv_heads);
        self.applicable().into_iter().filter(|&k| k != "head_reduction" || reduces).collect()
    }

    /// Whether two of the keys exclude each other (today: a llama.cpp block format's scheme and
    /// a different `bits`). A sweep skips such combinations instead of running them: `bits = [8,
    /// 4]` × `scheme = ["q8_0", "q4_0"]` means q8_0 at 8 bits and q4_0 at 4.
    pub fn contradicts(&self) -> bool {
        match (self.scheme, self.quant_bits()) {
            (Some(scheme), Some(bits)) => !scheme.allows_bits(bits),
            _ => false,
        }
    }

    /// Rejects impossible parameters, naming the key and value.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(bits) = self.bits {
            if bits != 32 && !CODE_BITS.contains(&bits) {
                return Err(invalid("bits", bits, "expected 32, 8, 4, 3 or 2"));
            }
            if bits != 32 && !self.stores_slots() {
                return Err(invalid(
                    "bits",
                    bits,
                    format!("'{}' keeps no slot store to quantize", self.kind),
                ));
            }
        }
        if let (Some(scheme), Some(bits)) = (self.scheme, self.quant_bits())
            && !scheme.allows_bits(bits)
        {
            return Err(invalid(
                "scheme",
                scheme,
                format!("is a {}-bit format; bits = {bits}", scheme.fixed_bits().unwrap_or(0)),
            ));
        }
        if self.kv_heads == Some(0) {
            return Err(invalid("kv_heads", 0, "must be > 0"));
        }
        let entry = self.kind.entry();
        entry.parameters.iter().try_for_each(|p| p.check(self))?;
        (entry.check)(self)
    }

    /// This spec's keep-policy built for one layer and row and no KV head, so it holds no
    /// per-slot state whatever the budget: what a caller holds to ask the policy's questions
    /// without a cache (`None` for a cache of its own).
    pub fn probe_policy(&self) -> Option<Box<dyn KeepPolicy>> {
        match self.kind.entry().holds {
            Holds::Policy(build) => {
                Some(build(&PolicyArgs { spec: self, layers: 1, batch: 1, kv_heads: 0 }))
            }
            _ => None,
        }
    }

    /// Whether the kind cuts the prompt once after prefill (and so needs it in one forward).
    pub fn cuts_prompt(&self) -> bool {
        self.probe_policy().is_some_and(|p| p.scope() == Scope::Prompt)
    }

    /// Whether a forward of `new_tokens` tokens after `seen` shows the policy attention's
    /// probabilities (so attention must make them: the dense path).
    pub fn observes_forward(&self, seen: usize, new_tokens: usize) -> bool {
        self.probe_policy().is_some_and(|p| p.observes(seen, new_tokens))
    }

    /// Whether keys are rotated by their rank in the cache, so positions never exceed the
    /// budget (a sink cache); every other strategy rotates a key by its text position.
    pub fn rotates_in_cache(&self) -> bool {
        self.probe_policy().is_some_and(|p| p.discipline().rope == Rope::InCache)
    }

    /// The positions the cache holds after `seen` tokens, where they follow from positions
    /// alone: every one for a cache of its own, the policy's answer for a keep-policy (`None`
    /// where attention or keys decide).
    pub fn kept_positions(&self, seen: usize) -> Option<Vec<Range<usize>>> {
        match self.probe_policy() {
            None => Some(std::iter::once(0..seen).collect()),
            Some(policy) => policy.kept(seen, self.cache_tokens.unwrap_or(0)),
        }
    }
}

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
use crate::quant::{CODE_BITS, EXACT_BITS, Scheme};
use crate::query_rounding::QUERY_BITS;
use crate::spec::{QUANT_PARAMETERS, StrategySpec};

impl StrategySpec {
    /// Whether the K/V live in a slot store that bits can wrap.
    pub fn stores_slots(&self) -> bool {
        !matches!(self.kind.entry().holds, Holds::Nothing | Holds::Concat)
    }

    /// Whether the kind's cache can hold low-rank latents: the static cache, which knows every
    /// slot's position and so can rotate reconstructed keys when they are read.
    pub(crate) fn holds_low_rank(&self) -> bool {
        matches!(self.kind.entry().holds, Holds::Static)
    }

    /// Bits of keys and of values, `(key_bits, value_bits)`, when the store quantizes either
    /// (`None` for f32): `key_bits` / `value_bits` where set, else `bits`, else 32.
    pub(crate) fn side_bits(&self) -> Option<(u8, u8)> {
        let side = |own: Option<u8>| own.or(self.bits).unwrap_or(EXACT_BITS);
        let (k, v) = (side(self.key_bits), side(self.value_bits));
        (self.stores_slots() && (k != EXACT_BITS || v != EXACT_BITS)).then_some((k, v))
    }

    /// The scheme of keys and of values (`key_scheme` / `value_scheme` where set, else
    /// `scheme`), each with its side's bits, for the quantized sides of a quantized store.
    pub(crate) fn side_schemes(&self) -> Vec<(&'static str, Scheme, u8)> {
        let Some((kb, vb)) = self.side_bits() else { return Vec::new() };
        let key = ("key_scheme", self.key_scheme.or(self.scheme), kb);
        let value = ("value_scheme", self.value_scheme.or(self.scheme), vb);
        [key, value]
            .into_iter()
            .filter(|&(_, _, bits)| bits != EXACT_BITS)
            .filter_map(|(name, scheme, bits)| Some((name, scheme?, bits)))
            .collect()
    }

    /// Every parameter this spec reads: the kind's own, `bits` where a slot store exists, the
    /// quantization keys once `bits` quantizes, and the head transform.
    pub fn applicable(&self) -> Vec<&'static str> {
        let mut keys = self.kind.parameters();
        if self.stores_slots() {
            keys.extend(["bits", "key_bits", "value_bits", "rotation"]);
        }
        if self.holds_low_rank() {
            keys.push("rank");
            if self.rank.is_some() {
                keys.push("rank_basis");
            }
        }
        if self.side_bits().is_some() {
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

    /// Whether two of the keys exclude each other (today: a scheme and a side's bits it does
    /// not allow, as a llama.cpp block format at another width). A sweep skips such
    /// combinations instead of running them: `bits = [8, 4]` × `scheme = ["q8_0", "q4_0"]`
    /// means q8_0 at 8 bits and q4_0 at 4.
    pub fn contradicts(&self) -> bool {
        self.side_schemes().iter().any(|&(_, scheme, bits)| !scheme.allows_bits(bits))
    }

    /// Rejects impossible parameters, naming the key and value.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (key, bits) in [("bits", self.bits), ("key_bits", self.key_bits)]
            .into_iter()
            .chain([("value_bits", self.value_bits)])
        {
            let Some(bits) = bits else { continue };
            if bits != EXACT_BITS && !CODE_BITS.contains(&bits) {
                return Err(invalid(key, bits, "expected 32, 8, 4, 3 or 2"));
            }
            if bits != EXACT_BITS && !self.stores_slots() {
                return Err(invalid(
                    key,
                    bits,
                    format!("'{}' keeps no slot store to quantize", self.kind),
                ));
            }
        }
        if let Some(&(key, scheme, bits)) =
            self.side_schemes().iter().find(|&&(_, scheme, bits)| !scheme.allows_bits(bits))
        {
            // Where both sides share the scheme, the key the experiment set is `scheme`.
            let key = if self.key_scheme.is_none() && self.value_scheme.is_none() {
                "scheme"
            } else {
                key
            };
            return Err(invalid(
                key,
                scheme,
                format!("allows bits {}; this side has {bits}", scheme.allowed_bits()),
            ));
        }
        if self.rank == Some(0) {
            return Err(invalid("rank", 0, "must be > 0"));
        }
        if self.rank.is_some() && !self.holds_low_rank() {
            return Err(invalid(
                "rank",
                self.rank.unwrap_or(0),
                format!("'{}' cannot hold low-rank latents (only static can)", self.kind),
            ));
        }
        self.check_query_bits()?;
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

impl StrategySpec {
    /// `query_bits`: 32, or 8 over quantized keys held at full rank (queries are rounded in the
    /// keys' blocks; a latent store has none to round them in).
    fn check_query_bits(&self) -> Result<(), SpecError> {
        let Some(bits) = self.query_bits else { return Ok(()) };
        if bits == EXACT_BITS {
            return Ok(());
        }
        if bits != QUERY_BITS {
            return Err(invalid("query_bits", bits, "expected 32 or 8"));
        }
        if self.side_bits().is_none_or(|(key_bits, _)| key_bits == EXACT_BITS) {
            return Err(invalid(
                "query_bits",
                bits,
                "rounds queries in the blocks of quantized keys; these keys are f32",
            ));
        }
        if self.rank.is_some() {
            return Err(invalid("query_bits", bits, "needs keys at full rank, not with rank"));
        }
        Ok(())
    }
}

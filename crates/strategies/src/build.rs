//! How a spec becomes a cache for a backend: through the model's layer plan, then the
//! registry entry's [`Holds`], with the slot store the bits lever asks for (f32 or codes,
//! rotated, keys reordered as llama.cpp holds them).

use burn::prelude::*;
use kvlab_model::{Arch, KvCache, KvProjection, Model, ModelConfig};

use crate::entry::{Holds, PolicyArgs};
use crate::error::SpecError;
use crate::evict::EvictingCache;
use crate::evict::policy::{KeepPolicy, Scope};
use crate::key_order::{InterleavedKeys, KeyOrder};
use crate::kind::StrategyKind;
use crate::layer_plan::{PlannedCache, split_layers};
use crate::layout::KvLayout;
use crate::low_rank::{LowRankBases, LowRankStore, RankBasis, calibrate};

/// Where a low-rank cache's bases come from: the model's projections (an SVD of each), or
/// bases already fitted (to calibration text).
pub(crate) enum BasesSource<'a> {
    Projections(&'a [KvProjection]),
    Fitted(LowRankBases),
}
use crate::quant::{QuantPreset, QuantStore, Scheme};
use crate::query_rounding::{QUERY_BITS, QUERY_BLOCK, QueryRounding};
use crate::rotation::{RotatedStore, Rotation};
use crate::spec::StrategySpec;
use crate::store::{F32Store, SlotStore};
use crate::{ConcatCache, NoCache, PagedCache, StaticCache};

impl StrategySpec {
    /// Builds the cache for `config` through the model's layer plan ([`crate::layer_plan`]): on
    /// a model with sliding-window layers, a rolling window on those and this strategy on the
    /// others; on any other model, this strategy on every layer.
    ///
    /// A spec with `rank` needs the model's K/V projections: build it with
    /// [`StrategySpec::build_for_model`].
    pub fn build<B: Backend>(
        &self,
        config: &ModelConfig,
        batch: usize,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<Box<dyn KvCache<B>>, SpecError> {
        self.build_with(config, None, batch, max_seq, device)
    }

    /// [`StrategySpec::build`] for `model`, whose K/V projections a low-rank cache takes its
    /// bases from (read back from the device only when `rank` is set); `calibration` is the
    /// text (token ids) `rank_basis = "calibrated"` fits them on.
    pub fn build_for_model<B: Backend>(
        &self,
        model: &Model<B>,
        calibration: Option<&[u32]>,
        batch: usize,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<Box<dyn KvCache<B>>, SpecError> {
        let Some(rank) = self.rank else {
            return self.build_with(&model.config, None, batch, max_seq, device);
        };
        let projections = model.kv_projections();
        let (n_kv, d) = (model.config.n_kv_heads, model.config.head_dim);
        let bases = match self.rank_basis.unwrap_or_default() {
            _ if rank == 0 || rank > d => None,
            RankBasis::Weights => None,
            RankBasis::Calibrated => {
                let ids = calibration.ok_or_else(|| {
                    SpecError::Build("rank_basis \"calibrated\" needs calibration text".into())
                })?;
                let moments = calibrate::moments(model, &projections, ids)
                    .map_err(|e| SpecError::Build(e.to_string()))?;
                Some(LowRankBases::from_moments(&moments, &projections, n_kv, d, rank))
            }
        };
        let source = match bases {
            Some(b) => BasesSource::Fitted(b),
            None => BasesSource::Projections(&projections),
        };
        self.build_with(&model.config, Some(source), batch, max_seq, device)
    }

    /// [`StrategySpec::build`] with the bases a low-rank cache needs (`None` without a model).
    fn build_with<B: Backend>(
        &self,
        config: &ModelConfig,
        bases: Option<BasesSource<'_>>,
        batch: usize,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<Box<dyn KvCache<B>>, SpecError> {
        if self.key_order == Some(KeyOrder::LlamaCpp) {
            let key_order = Some(KeyOrder::llama_cpp(config.arch.neox_rope));
            return StrategySpec { key_order, ..self.clone() }
                .build_with(config, bases, batch, max_seq, device);
        }
        let Some((is_local, window)) =
            split_layers(config).filter(|_| self.kind != StrategyKind::NONE)
        else {
            return self.build_uniform(config, bases, batch, max_seq, device);
        };
        if self.rank.is_some() {
            return Err(SpecError::Build(
                "rank on a model with sliding-window layers (a layer plan) is not built".into(),
            ));
        }
        let n_local = is_local.iter().filter(|&&l| l).count();
        if n_local == config.n_layers {
            return Err(SpecError::Build(
                "a model whose every layer is local has no layer plan yet".into(),
            ));
        }
        let slots = window.min(max_seq);
        let local_window = StrategySpec {
            kind: StrategyKind(crate::evict::window::ENTRY.name),
            cache_tokens: Some(slots),
            recent: None,
            window: None,
            kernel: None,
            sink_tokens: None,
            block_size: None,
            ..self.clone()
        };
        // Each side's cache sees a plain model of its layers (no local layers left to plan).
        let arch = Arch { sliding_window: None, ..config.arch };
        let layers = |n_layers| ModelConfig { n_layers, arch, ..config.clone() };
        let local = local_window.build_uniform(&layers(n_local), None, batch, max_seq, device)?;
        let global =
            self.build_uniform(&layers(config.n_layers - n_local), None, batch, max_seq, device)?;
        Ok(Box::new(PlannedCache::new(&is_local, slots, local, global)))
    }

    /// Builds the cache for `batch` sequences of at most `max_seq` tokens.
    fn build_uniform<B: Backend>(
        &self,
        config: &ModelConfig,
        bases: Option<BasesSource<'_>>,
        batch: usize,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<Box<dyn KvCache<B>>, SpecError> {
        self.validate()?;
        let layout = KvLayout::new(config, batch);
        let build = |e: kvlab_model::CacheError| SpecError::Build(e.to_string());
        Ok(match self.kind.entry().holds {
            Holds::Nothing => Box::new(NoCache::new(batch)),
            Holds::Concat => Box::new(ConcatCache::<B>::new(layout)),
            Holds::Static => match self.rank {
                None => Box::new(
                    StaticCache::new(
                        layout,
                        max_seq,
                        self.store(layout, batch * max_seq, max_seq, device)?,
                    )
                    .map_err(build)?,
                ),
                Some(rank) => {
                    let store =
                        self.low_rank_store(layout, bases, rank, batch * max_seq, max_seq, device)?;
                    Box::new(
                        StaticCache::new(layout, max_seq, store)
                            .map_err(build)?
                            .with_rope_on_read(),
                    )
                }
            },
            Holds::Paged => {
                let block = self.block_size.unwrap_or(0);
                let blocks = PagedCache::<B>::blocks_for(batch, max_seq, block);
                let store = self.store(layout, blocks * block, block, device)?;
                Box::new(PagedCache::new(layout, blocks, block, store).map_err(build)?)
            }
            Holds::Policy(policy) => Box::new(self.evicting(policy, layout, max_seq, device)?),
        })
    }

    /// An [`EvictingCache`] with this spec's policy: per-head slots, so its store sees
    /// `batch × kv_heads` rows of one head each — per-row slots for a positional policy.
    fn evicting<B: Backend>(
        &self,
        policy: fn(&PolicyArgs) -> Box<dyn KeepPolicy>,
        layout: KvLayout,
        max_seq: usize,
        device: &B::Device,
    ) -> Result<EvictingCache<B>, SpecError> {
        let args = PolicyArgs {
            spec: self,
            layers: layout.n_layers,
            batch: layout.batch,
            kv_heads: layout.n_kv_heads,
        };
        let policy = policy(&args);
        let capacity = match policy.scope() {
            Scope::EveryStep => args.budget(),
            // The whole prompt is held until it is cut.
            Scope::Prompt => max_seq.max(args.budget()),
        };
        let slots = if policy.discipline().positional {
            layout
        } else {
            KvLayout { batch: layout.batch * layout.n_kv_heads, n_kv_heads: 1, ..layout }
        };
        let store = self.store(slots, slots.batch * capacity, capacity, device)?;
        EvictingCache::new(layout, capacity, policy, store)
            .map_err(|e| SpecError::Build(e.to_string()))
    }

    /// A [`LowRankStore`] over the store this spec's bits and rotation make, holding `rank`
    /// dimensions per head; `bases` fitted already, or made from the projections (one per
    /// layer of `layout`).
    fn low_rank_store<B: Backend>(
        &self,
        layout: KvLayout,
        bases: Option<BasesSource<'_>>,
        rank: usize,
        n_slots: usize,
        region: usize,
        device: &B::Device,
    ) -> Result<Box<dyn SlotStore<B>>, SpecError> {
        let fail =
            |why: String| Err(SpecError::Invalid { key: "rank", value: rank.to_string(), why });
        if rank > layout.head_dim {
            return fail(format!("must be at most head_dim = {}", layout.head_dim));
        }
        let Some(source) = bases else {
            return Err(SpecError::Build(
                "rank needs the model's K/V projections (StrategySpec::build_for_model)".into(),
            ));
        };
        let layers = match &source {
            BasesSource::Fitted(bases) => bases.layers.len(),
            BasesSource::Projections(p) => p.len(),
        };
        if layers != layout.n_layers {
            return Err(SpecError::Build(format!(
                "rank: bases of {layers} layers for a {}-layer cache",
                layout.n_layers
            )));
        }
        let projections = match source {
            BasesSource::Fitted(bases) => {
                return self.latent_store(layout, &bases, n_slots, region, device);
            }
            BasesSource::Projections(p) => p,
        };
        if projections.iter().any(|p| p.k_normed) {
            return fail(
                "keys are RMS-normed after their projection on this model (QK-norm): an SVD of \
                 the projection does not span them (rank_basis = \"calibrated\" does)"
                    .into(),
            );
        }
        let bases =
            LowRankBases::from_projections(projections, layout.n_kv_heads, layout.head_dim, rank);
        self.latent_store(layout, &bases, n_slots, region, device)
    }

    /// A [`LowRankStore`] with `bases` over the store this spec's bits and rotation make.
    fn latent_store<B: Backend>(
        &self,
        layout: KvLayout,
        bases: &LowRankBases,
        n_slots: usize,
        region: usize,
        device: &B::Device,
    ) -> Result<Box<dyn SlotStore<B>>, SpecError> {
        let rank = bases.rank;
        let latent = KvLayout { head_dim: rank, ..layout };
        // The latent store's checks speak of its width: say it is the rank's.
        let inner = self.store(latent, n_slots, region, device).map_err(|e| match e {
            SpecError::Invalid { key, value, why } => SpecError::Invalid {
                key,
                value,
                why: format!("{why} (with rank = {rank}, the store holds {rank}-dim latents)"),
            },
            other => other,
        })?;
        Ok(Box::new(LowRankStore::new(inner, bases, device)))
    }

    /// The slot store holding `n_slots` slots in every layer; `region` is the slots one
    /// sequence owns contiguously (its rows, or one block), which per-channel groups must divide.
    fn store<B: Backend>(
        &self,
        layout: KvLayout,
        n_slots: usize,
        region: usize,
        device: &B::Device,
    ) -> Result<Box<dyn SlotStore<B>>, SpecError> {
        let store = self.encoding_store(layout, n_slots, region, device)?;
        let store = match self.query_bits {
            Some(QUERY_BITS) => {
                if !layout.head_dim.is_multiple_of(QUERY_BLOCK) {
                    return Err(SpecError::Invalid {
                        key: "query_bits",
                        value: QUERY_BITS.to_string(),
                        why: format!(
                            "rounds queries in blocks of {QUERY_BLOCK}; head_dim is {}",
                            layout.head_dim
                        ),
                    });
                }
                Box::new(QueryRounding::new(store))
            }
            _ => store,
        };
        let store: Box<dyn SlotStore<B>> = match self.rotation.unwrap_or_default() {
            Rotation::None => store,
            Rotation::Hadamard => Box::new(RotatedStore::new(store, layout.head_dim, device)?),
        };
        // Outermost: keys are put in llama.cpp's channel order before they are rotated and
        // encoded, as its cache holds them.
        Ok(match self.key_order.unwrap_or_default() {
            KeyOrder::HalfSplit => store,
            KeyOrder::Interleaved => Box::new(InterleavedKeys::new(store, layout.head_dim, device)),
            KeyOrder::LlamaCpp => {
                return Err(SpecError::Build(
                    "key_order \"llama-cpp\" is resolved for the model before a store is built"
                        .into(),
                ));
            }
        })
    }

    /// The store that encodes slots: f32, or int8/int4/int3/int2 codes.
    fn encoding_store<B: Backend>(
        &self,
        layout: KvLayout,
        n_slots: usize,
        region: usize,
        device: &B::Device,
    ) -> Result<Box<dyn SlotStore<B>>, SpecError> {
        let (n, h, d) = (layout.n_layers, layout.n_kv_heads, layout.head_dim);
        let Some((key_bits, value_bits)) = self.side_bits() else {
            return Ok(Box::new(F32Store::new(n, n_slots, h, d, device)));
        };
        let preset = self.quant_axis.unwrap_or(QuantPreset::PerToken);
        let mut config = preset.config(key_bits, self.group_size.unwrap_or(32), 0);
        config.values.bits = value_bits;
        let scheme = self.scheme.unwrap_or(Scheme::Asymmetric);
        config.keys.scheme = self.key_scheme.unwrap_or(scheme);
        config.values.scheme = self.value_scheme.unwrap_or(scheme);
        // The store counts residual slots over all rows.
        config.residual = self.residual.unwrap_or(0) * layout.batch;
        config.check_alignment(region)?;
        Ok(Box::new(QuantStore::new(config, n, n_slots, h, d, device)?))
    }
}

//! An evicting cache: at most a budget of tokens per (layer, row, KV head), and a
//! [`KeepPolicy`] that says which token leaves. The bounded windows (window, sink, shift-window),
//! H2O, TOVA, key-norm (one token leaves per new token once full) and SnapKV, PyramidKV (the
//! prompt is cut once, after prefill) are policies of this one cache.
//!
//! Slots are per KV head — the store holds `[1, head_dim]` slots, `batch × kv_heads × capacity`
//! of them per layer — because the papers choose per head; a policy whose rule reads positions
//! only has one region per row instead, its slots `[n_kv, head_dim]` ([`Discipline`]). Every
//! head of a layer keeps as many tokens, so attention reads one dense
//! `[batch, kv_heads, kept, head_dim]` tensor. Keys are rotated at their text positions when
//! written, as H2O, TOVA and SnapKV keep them, unless the policy rotates them in the cache (sink).
//!
//! The slots of a step's new tokens are chosen in [`KvCache::reserve`], before any layer runs
//! (the victim of a full region is picked from what the policy has seen so far), so a step that
//! cannot get room fails before anything is written.

pub(crate) mod discipline;
pub mod policy;
pub mod table;

/// Declares each keep-policy's file and lists its registry entry (`ENTRY`) in [`POLICIES`]:
/// adding a policy is its file plus its name here.
macro_rules! keep_policies {
    ($($policy:ident),* $(,)?) => {
        $(pub mod $policy;)*
        /// Every keep-policy's entry, in the order `runner list` and reports show them.
        pub const POLICIES: &[&crate::entry::Entry] = &[$(&$policy::ENTRY),*];
    };
}

keep_policies![window, shift_window, sink, h2o, tova, key_norm, snapkv, pyramidkv, random];

use std::ops::Range;

use burn::prelude::*;
use kvlab_model::{AttentionMask, CacheError, KvCache, KvMemory, KvView, RotaryEncoding};

use crate::layout::KvLayout;
use crate::slot_runs::runs;
use crate::store::{SlotStore, from_slots, read_rows, round_queries, to_slots};
use discipline::{Discipline, Evict, Rope};
use policy::{KeepPolicy, Scope, Shown};
use table::SlotTable;

pub use h2o::H2o;
pub use key_norm::KeyNorm;
pub use shift_window::ShiftWindow;
pub use sink::Sink;
pub use snapkv::SnapKv;
pub use tova::Tova;
pub use window::Window;

/// Bytes of one slot → position entry (a u32 on a device).
const POSITION_BYTES: usize = 4;

#[derive(Debug)]
pub struct EvictingCache<B: Backend> {
    layout: KvLayout,
    /// Per layer `batch × kv_heads × capacity` slots of `[1, head_dim]`: region `(row, head)`
    /// owns slots `(row · kv_heads + head) · capacity ..` of it. For a positional policy
    /// `batch × capacity` slots of `[n_kv, head_dim]`, region `row` owning `row · capacity ..`.
    store: StoreBox<B>,
    /// Regions per row: `kv_heads`, or 1 for a positional policy.
    table: SlotTable,
    policy: Box<dyn KeepPolicy>,
    discipline: Discipline,
    /// Tokens seen per row (not all kept).
    seen: usize,
    /// Per region, the slots of this forward's new tokens, set by `reserve`.
    pending: Vec<Vec<usize>>,
    /// New tokens per row of the forward `reserve` prepared.
    reserved: Option<usize>,
}

/// A boxed store with a `Debug` that prints nothing of its tensors.
struct StoreBox<B: Backend>(Box<dyn SlotStore<B>>);

impl<B: Backend> std::fmt::Debug for StoreBox<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotStore")
    }
}

impl<B: Backend> EvictingCache<B> {
    /// `capacity` slots per region: the budget for a policy of [`Scope::EveryStep`], the longest
    /// sequence for [`Scope::Prompt`] (the whole prompt is held until it is cut). `store` must
    /// hold `layout.batch · layout.n_kv_heads · capacity` slots of `[1, head_dim]`, or for a
    /// positional policy `layout.batch · capacity` slots of `[n_kv_heads, head_dim]`.
    pub fn new(
        layout: KvLayout,
        capacity: usize,
        policy: Box<dyn KeepPolicy>,
        store: Box<dyn SlotStore<B>>,
    ) -> Result<Self, CacheError> {
        if capacity == 0 {
            return Err(CacheError::Invalid("evicting cache: capacity must be > 0".into()));
        }
        let discipline = policy.discipline();
        if discipline.positional && policy.reads_key_norms() {
            return Err(CacheError::Invalid(
                "evicting cache: a positional policy has one region per row; key norms are per head"
                    .into(),
            ));
        }
        let region_heads = if discipline.positional { 1 } else { layout.n_kv_heads };
        let table = SlotTable::new(layout.n_layers, layout.batch, region_heads, capacity);
        let regions = table.regions();
        Ok(Self {
            layout,
            store: StoreBox(store),
            table,
            policy,
            discipline,
            seen: 0,
            pending: vec![Vec::new(); regions],
            reserved: None,
        })
    }

    pub fn table(&self) -> &SlotTable {
        &self.table
    }

    pub fn policy(&self) -> &dyn KeepPolicy {
        self.policy.as_ref()
    }

    fn capacity(&self) -> usize {
        self.table.capacity
    }

    /// The store slot of `slot` in region `(row, head)` (regions of every layer share offsets).
    fn store_slot(&self, row: usize, head: usize, slot: usize) -> usize {
        (row * self.table.heads + head) * self.capacity() + slot
    }

    /// Every region's slots for `t` new tokens (see [`place`]).
    fn prepare(&mut self, t: usize) -> Result<(), CacheError> {
        self.pending = place(&mut self.table, self.policy.as_mut(), self.seen, t)?;
        self.reserved = Some(t);
        Ok(())
    }

    /// Reports the L2 norm of every written key to a policy that reads them.
    ///
    /// # Shapes
    /// - k: `[batch, n_kv, t, head_dim]`
    fn report_key_norms(&mut self, layer: usize, k: &Tensor<B, 4>) {
        let [b, h, t, _] = k.dims();
        // [b, h, t, 1]
        let norms = k.clone().powi_scalar(2).sum_dim(3).sqrt();
        let norms: Vec<f32> = norms.into_data().convert::<f32>().to_vec().expect("f32 norms");
        for row in 0..b {
            for g in 0..h {
                let region = self.table.region(layer, row, g);
                for i in 0..t {
                    let slot = self.pending[region][i];
                    self.policy.key_norm(region, slot, norms[(row * h + g) * t + i]);
                }
            }
        }
    }
}

/// Chooses, in every region, the slots of `t` new tokens arriving after `seen`, and records them
/// in `table`: while a region fills (and always under a [`Scope::Prompt`] policy) token `q` takes
/// slot `q`; a full region's one new token replaces the policy's victim, or under [`Evict::Roll`]
/// enters the last slot as the others move up. Returns the slots per region. Fails, changing
/// nothing, when the step does not fit.
pub fn place(
    table: &mut SlotTable,
    policy: &mut dyn KeepPolicy,
    seen: usize,
    t: usize,
) -> Result<Vec<Vec<usize>>, CacheError> {
    let cap = table.capacity;
    let full = match policy.scope() {
        Scope::EveryStep if seen + t > cap && t != 1 => {
            return Err(CacheError::Invalid(format!(
                "evicting cache: a full cache takes one token per step, got {t}"
            )));
        }
        Scope::EveryStep => seen + t > cap,
        Scope::Prompt if seen + t > cap => {
            return Err(CacheError::Capacity(format!(
                "evicting cache holds {cap} tokens per sequence, this step needs {}",
                seen + t
            )));
        }
        Scope::Prompt => false,
    };
    let discipline = policy.discipline();
    let mut placed = Vec::with_capacity(table.regions());
    for region in 0..table.regions() {
        let slots: Vec<usize> = if full && discipline.evict == Evict::Roll {
            table.roll(region, seen);
            vec![cap - 1]
        } else if full {
            let victim = policy.victim(region, table, seen);
            table.replace(region, victim, seen);
            if discipline.rope == Rope::InCache {
                // Read oldest first: in-cache positions are ranks in age order.
                table.move_to_back(region, victim);
            }
            vec![victim]
        } else {
            (seen..seen + t).inspect(|&q| table.append(region, q, q)).collect()
        };
        slots.iter().for_each(|&s| policy.entered(region, s));
        placed.push(slots);
    }
    Ok(placed)
}

/// At the end of a step: the layers a [`Scope::Prompt`] policy cut keep only what it chose.
pub fn apply_cuts(table: &mut SlotTable, policy: &mut dyn KeepPolicy) {
    for layer in 0..table.layers {
        if let Some(kept) = policy.compressed(layer) {
            for (region, keep) in table.layer_regions(layer).zip(kept) {
                table.retain(region, keep);
            }
        }
    }
}

impl<B: Backend> KvCache<B> for EvictingCache<B> {
    fn next_input(&self, total: usize) -> Range<usize> {
        self.seen..total
    }

    fn round_query(&self, _layer: usize, q: Tensor<B, 4>) -> Tensor<B, 4> {
        round_queries(self.store.0.as_ref(), q)
    }

    /// Filling, a step may fill the budget; full, one token at a time. A prompt policy takes
    /// the whole prompt in one step: its last queries are what it scores with.
    fn max_step_tokens(&self) -> usize {
        match self.policy.scope() {
            Scope::EveryStep => self.capacity().saturating_sub(self.seen).max(1),
            Scope::Prompt => usize::MAX,
        }
    }

    /// The text position; under in-cache positions, the last in-cache slot once full.
    fn query_start(&self) -> Vec<usize> {
        let p = match self.discipline.rope {
            Rope::Text => self.seen,
            Rope::InCache => self.seen.min(self.capacity() - 1),
        };
        vec![p; self.layout.batch]
    }

    fn reserve(&mut self, new_tokens: usize) -> Result<(), CacheError> {
        self.prepare(new_tokens)
    }

    fn observes_attention(&self, _layer: usize) -> bool {
        self.reserved.is_some_and(|t| self.policy.observes(self.seen, t))
    }

    fn observe_attention(&mut self, layer: usize, probs: Tensor<B, 4>) {
        let [b, h, t, s] = probs.dims();
        let read = self.policy.observed_queries(t);
        let probs = if read.len() == t { probs } else { probs.slice([0..b, 0..h, read, 0..s]) };
        let [batch, heads, queries, keys] = probs.dims();
        let data = probs.into_data().convert::<f32>().to_vec().expect("f32 probabilities");
        let kv_heads = self.layout.n_kv_heads;
        let shown = Shown { data, batch, heads, kv_heads, queries, keys };
        self.policy.observe(layer, &shown, &self.table);
    }

    fn write(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        rope: &RotaryEncoding<B>,
    ) -> Result<(), CacheError> {
        let [b, h, t, d] = k.dims();
        if b != self.layout.batch || h != self.layout.n_kv_heads {
            return Err(CacheError::Invalid(format!(
                "evicting cache built for [{}, {}] rows × KV heads, got [{b}, {h}]",
                self.layout.batch, self.layout.n_kv_heads
            )));
        }
        // A caller driving `update` by hand, without the model's `reserve`, prepares here.
        if layer == 0 && self.reserved != Some(t) {
            self.prepare(t)?;
        }
        if self.policy.reads_key_norms() {
            self.report_key_norms(layer, &k);
        }
        let k = match self.discipline.rope {
            Rope::Text => rope.apply(k, &[self.seen]),
            Rope::InCache => k,
        };
        let (cap, regions) = (self.capacity(), self.table.heads);
        if self.discipline.evict == Evict::Roll && self.seen + t > cap {
            // The table has rolled: every region's slots 1.. move one place toward the front.
            for row in 0..b {
                for g in 0..regions {
                    let base = self.store_slot(row, g, 0);
                    self.store.0.move_slots(layer, base + 1, base, cap - 1);
                }
            }
        }
        let mut slots = Vec::with_capacity(b * regions * t);
        for row in 0..b {
            for g in 0..regions {
                let region = self.table.region(layer, row, g);
                slots.extend(self.pending[region].iter().map(|&s| self.store_slot(row, g, s)));
            }
        }
        // Region-major, as `slots` lists them: [b, h, t, d] -> [b · h · t, 1, d] per head, or
        // [b · t, h, d] per row.
        let flat = |x: Tensor<B, 4>| {
            if regions == 1 { to_slots(x) } else { x.reshape([b * h * t, 1, d]) }
        };
        self.store.0.write(layer, &slots, flat(k), flat(v));
        Ok(())
    }

    fn view(
        &self,
        layer: usize,
        _new_tokens: usize,
        rope: &RotaryEncoding<B>,
    ) -> Result<KvView<B>, CacheError> {
        let (b, h, d) = (self.layout.batch, self.layout.n_kv_heads, self.layout.head_dim);
        let (kept, regions) = (self.table.kept(layer), self.table.heads);
        // Per row, then per region: the live slots as store ranges, in live-list order.
        let ranges: Vec<Vec<Range<usize>>> = (0..b)
            .flat_map(|row| (0..regions).map(move |g| (row, g)))
            .map(|(row, g)| {
                let base = self.store_slot(row, g, 0);
                let live = self.table.live(self.table.region(layer, row, g));
                runs(live)
                    .iter()
                    .map(|r| base + r.first_slot..base + r.first_slot + r.len)
                    .collect()
            })
            .collect();
        if regions == 1 && self.discipline.rope == Rope::Text {
            // Slots hold every KV head, keys already rotated: attention may read them in place.
            let kv = read_rows(self.store.0.as_ref(), layer, &ranges, h, d);
            return Ok(KvView { kv, mask: AttentionMask::CausalEnd });
        }
        let ranges: Vec<Range<usize>> = ranges.into_iter().flatten().collect();
        let (k, v) = self.store.0.read_ranges(layer, &ranges);
        // [b · h · kept, 1, d] per head, or [b · kept, h, d] per row -> [b, h, kept, d]. New
        // tokens are last in every live list (or alone, once full), in position order: the
        // causal mask of the last `t` keys holds.
        let shape = |x: Tensor<B, 3>| {
            if regions == 1 { from_slots(x, b) } else { x.reshape([b, h, kept, d]) }
        };
        let k = match self.discipline.rope {
            Rope::Text => shape(k),
            // Live lists are oldest first: rank `i` is in-cache position `i`.
            Rope::InCache => rope.apply(shape(k), &[0]),
        };
        Ok(KvView::dense(k, shape(v), AttentionMask::CausalEnd))
    }

    fn commit(&mut self, new_tokens: usize) {
        apply_cuts(&mut self.table, self.policy.as_mut());
        self.seen += new_tokens;
        self.reserved = None;
    }

    fn reset(&mut self) {
        self.table.clear();
        self.policy.reset();
        self.seen = 0;
        self.reserved = None;
    }

    /// Allocated: every slot of the store. Live: the kept slots of every layer. Metadata: the
    /// store's (scales), the slot → position table (a u32 per slot; none for a positional
    /// policy, whose slots follow from positions) and the policy's scores.
    fn memory(&self) -> KvMemory {
        let layers = self.layout.n_layers;
        // The store counts a slot over all layers and adds what is live whatever is kept
        // (int staging, the f32 residual); the table counts slots per layer, and layers may
        // keep different counts (PyramidKV): the per-slot bytes times the mean over layers.
        let whole = self.store.0.memory(0);
        let per_slot = self.store.0.memory(1).live_bytes - whole.live_bytes;
        let live_bytes = whole.live_bytes + per_slot * self.table.live_total() / layers;
        let table_bytes = if self.discipline.positional {
            0
        } else {
            self.table.regions() * self.capacity() * POSITION_BYTES
        };
        KvMemory {
            allocated_bytes: whole.allocated_bytes,
            live_bytes,
            metadata_bytes: whole.metadata_bytes
                + table_bytes
                + self.policy.metadata_bytes(&self.table),
            tokens: (0..layers).map(|l| self.table.kept(l)).max().unwrap_or(0),
        }
    }

    fn stored_shape(&self, _layer: usize) -> Option<[usize; 4]> {
        let l = &self.layout;
        Some([l.batch, l.n_kv_heads, self.capacity(), l.head_dim])
    }

    fn held_share(&self, positions: Range<usize>) -> Option<f64> {
        let want = positions.len() * self.table.regions();
        let held: usize = (0..self.table.regions())
            .map(|r| {
                let live = self.table.live(r);
                live.iter().filter(|&&s| positions.contains(&self.table.pos(r, s))).count()
            })
            .sum();
        Some(if want == 0 { 1.0 } else { held as f64 / want as f64 })
    }
}

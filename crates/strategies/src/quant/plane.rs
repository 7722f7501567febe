//! One layer's keys (or values), quantized along one [`Axis`]: packed `u8` codes and f32
//! scale/zero tensors on the device, plus, for per-channel groups, f32 staging for the groups
//! that are not complete yet.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::{BasicOps, DType};

use super::codec::{Codec, buffer_bytes, zeros_u8};
use super::config::Axis;
use super::flex_decode;
use crate::chunked::Chunked;
use crate::slot_runs::runs;

/// Writes row `i` of `src` into row `rows[i]` of `buf`, one `slice_assign` per run.
pub(crate) fn assign<B: Backend, K: BasicOps<B>>(
    mut buf: Tensor<B, 3, K>,
    rows: &[usize],
    src: Tensor<B, 3, K>,
) -> Tensor<B, 3, K> {
    let [_, h, d] = buf.dims();
    for run in runs(rows) {
        let (row, i, len) = (run.first_slot, run.first_token, run.len);
        let part = src.clone().slice([i..i + len, 0..h, 0..d]);
        buf = buf.slice_assign([row..row + len, 0..h, 0..d], part);
    }
    buf
}

#[derive(Debug)]
pub struct Plane<B: Backend> {
    codec: Codec,
    axis: Axis,
    group: usize,
    n_kv: usize,
    head_dim: usize,
    /// `[n_slots, n_kv, head_dim · bits / 8]` `u8`, chunked so a write costs O(slots written).
    codes: Chunked<B, Int>,
    /// Per-token: `[n_slots, n_kv, head_dim / group]`; per-channel: `[n_slots / group, n_kv,
    /// head_dim]`; f32, or f16 for llama.cpp's formats ([`Codec::metadata_dtype`]).
    scale: Chunked<B>,
    /// Same shape as `scale`; absent for the symmetric scheme.
    zero: Option<Chunked<B>>,
    /// `[2^bits]` f32: a codebook scheme's levels, held once per plane (and counted with its
    /// metadata); absent for evenly spaced codes.
    levels: Option<Tensor<B, 1>>,
    /// Per-channel only: pending group -> its `[group, n_kv, head_dim]` f32 values.
    staging: BTreeMap<usize, Tensor<B, 3>>,
    /// Per-channel only, per slot: written since its group was last staged.
    fresh: Vec<bool>,
}

impl<B: Backend> Plane<B> {
    /// `n_slots` must be a multiple of `group` for [`Axis::PerChannel`] (checked by the store).
    pub fn new(
        codec: Codec,
        axis: Axis,
        group: usize,
        [n_slots, n_kv, head_dim]: [usize; 3],
        device: &B::Device,
    ) -> Self {
        let code_width = codec.code_bytes(head_dim);
        let codes = Chunked::new(n_slots, [n_kv, code_width], |rows| {
            zeros_u8([rows, n_kv, code_width], device)
        });
        let [rows, a, b] = match axis {
            Axis::PerToken => [n_slots, n_kv, head_dim / group],
            Axis::PerChannel => [n_slots / group, n_kv, head_dim],
        };
        let dtype = codec.metadata_dtype();
        let meta = || Chunked::new(rows, [a, b], |r| Tensor::zeros([r, a, b], (device, dtype)));
        let zero = (codec.params_per_group() == 2).then(meta);
        let fresh = if axis == Axis::PerChannel { vec![false; n_slots] } else { Vec::new() };
        Self {
            codec,
            axis,
            group,
            n_kv,
            head_dim,
            codes,
            scale: meta(),
            zero,
            levels: codec.levels_tensor(device),
            staging: BTreeMap::new(),
            fresh,
        }
    }

    /// Bytes of packed codes.
    pub fn code_bytes(&self) -> usize {
        self.codes.bytes()
    }

    /// Bytes of scales and zero points.
    pub fn metadata_bytes(&self) -> usize {
        let levels = self.levels.as_ref().map_or(0, |l| buffer_bytes(l.shape(), l.dtype()));
        self.scale.bytes() + self.zero.as_ref().map_or(0, |z| z.bytes()) + levels
    }

    /// Bytes of f32 staging held by pending per-channel groups.
    pub fn staging_bytes(&self) -> usize {
        self.staging.values().map(|t| buffer_bytes(t.shape(), t.dtype())).sum()
    }

    /// Groups currently staged in f32.
    pub fn pending_groups(&self) -> usize {
        self.staging.len()
    }

    /// Encodes `x` (`[slots.len(), n_kv, head_dim]`) into `slots`.
    pub fn write(&mut self, slots: &[usize], x: Tensor<B, 3>) {
        match self.axis {
            Axis::PerToken => self.write_tokens(slots, x),
            Axis::PerChannel => self.write_channels(slots, x),
        }
    }

    fn write_tokens(&mut self, slots: &[usize], x: Tensor<B, 3>) {
        let (n, h, d, g) = (slots.len(), self.n_kv, self.head_dim, self.group);
        let q = self.codec.quantize(x.reshape([n, h, d / g, g]), 3);
        let codes = self.codec.pack(q.codes.reshape([n, h, d]));
        self.store_rows(
            slots,
            codes,
            q.scale.reshape([n, h, d / g]),
            q.zero.map(|z| z.reshape([n, h, d / g])),
        );
    }

    /// Writes code rows at `code_rows` and scale/zero rows at the same rows (per-token) or at
    /// `meta_rows` (per-channel).
    fn store_rows(
        &mut self,
        code_rows: &[usize],
        codes: Tensor<B, 3, Int>,
        scale: Tensor<B, 3>,
        zero: Option<Tensor<B, 3>>,
    ) {
        self.codes.assign(code_rows, codes);
        self.store_meta(code_rows, scale, zero);
    }

    /// Stores f32 `scale`/`zero` rows in the metadata dtype (rounding them to f16 for
    /// llama.cpp's formats, as `GGML_FP32_TO_FP16(d)` does).
    fn store_meta(&mut self, rows: &[usize], scale: Tensor<B, 3>, zero: Option<Tensor<B, 3>>) {
        let dtype = self.codec.metadata_dtype();
        self.scale.assign(rows, scale.cast(dtype));
        if let (Some(buf), Some(z)) = (self.zero.as_mut(), zero) {
            buf.assign(rows, z.cast(dtype));
        }
    }

    /// Metadata rows as f32 (a cast only for f16 metadata: one value per group).
    fn gather_meta(&self, buf: &Chunked<B>, rows: &[usize]) -> Tensor<B, 3> {
        let t = buf.gather(rows);
        if t.dtype() == DType::F32 { t } else { t.cast(DType::F32) }
    }

    fn write_channels(&mut self, slots: &[usize], x: Tensor<B, 3>) {
        let (h, d, g) = (self.n_kv, self.head_dim, self.group);
        for run in runs(slots) {
            let (slot, token, len) = (run.first_slot, run.first_token, run.len);
            // Split the run at group boundaries.
            let mut done = 0;
            while done < len {
                let s = slot + done;
                let group = s / g;
                let take = (g - s % g).min(len - done);
                let part = x.clone().slice([token + done..token + done + take, 0..h, 0..d]);
                let staged = match self.staging.remove(&group) {
                    Some(t) => t,
                    None => self.restage(group),
                };
                let staged = staged.slice_assign([s % g..s % g + take, 0..h, 0..d], part);
                self.fresh[s..s + take].fill(true);
                if self.fresh[group * g..(group + 1) * g].iter().all(|&f| f) {
                    self.quantize_group(group, staged);
                } else {
                    self.staging.insert(group, staged);
                }
                done += take;
            }
        }
    }

    /// A group leaving the quantized state: its decoded values (zeros if never written) become
    /// its staging, and none of its slots is fresh.
    fn restage(&mut self, group: usize) -> Tensor<B, 3> {
        let g = self.group;
        self.fresh[group * g..(group + 1) * g].fill(false);
        self.decode_rows(&(group * g..(group + 1) * g).collect::<Vec<_>>())
    }

    fn quantize_group(&mut self, group: usize, values: Tensor<B, 3>) {
        let g = self.group;
        let q = self.codec.quantize(values, 0);
        let rows: Vec<usize> = (group * g..(group + 1) * g).collect();
        self.codes.assign(&rows, self.codec.pack(q.codes));
        self.store_meta(&[group], q.scale, q.zero);
    }

    /// Decodes `slots` from codes alone (ignoring staging).
    fn decode_rows(&self, slots: &[usize]) -> Tensor<B, 3> {
        let (n, h, d, g) = (slots.len(), self.n_kv, self.head_dim, self.group);
        let packed = self.codes.gather(slots);
        // Per-token metadata is one row per slot already, `[n, h, d / g]`, a scale per `g`
        // values; per-channel metadata is one row per group, gathered to one row per slot,
        // `[n, h, d]`, a scale per value.
        let (rows, per): (Vec<usize>, usize) = match self.axis {
            Axis::PerToken => (slots.to_vec(), g),
            Axis::PerChannel => (slots.iter().map(|s| s / g).collect(), 1),
        };
        let scale = self.gather_meta(&self.scale, &rows);
        let zero = self.zero.as_ref().map(|z| self.gather_meta(z, &rows));
        if let Some(fused) = flex_decode::decode(self.codec, &packed, &scale, zero.as_ref(), per) {
            return fused;
        }
        let codes = self.codec.unpack(packed);
        match self.axis {
            Axis::PerToken => {
                let meta = |t: Tensor<B, 3>| t.reshape([n, h, d / g, 1]);
                let out = self.codec.dequantize_with(
                    codes.reshape([n, h, d / g, g]),
                    meta(scale),
                    zero.map(meta),
                    self.levels.as_ref(),
                );
                out.reshape([n, h, d])
            }
            Axis::PerChannel => {
                self.codec.dequantize_with(codes, scale, zero, self.levels.as_ref())
            }
        }
    }

    /// Decodes `slots` in order: `[slots.len(), n_kv, head_dim]` f32. Slots of pending
    /// per-channel groups come from staging, exact.
    pub fn read(&self, slots: &[usize]) -> Tensor<B, 3> {
        let decoded = self.decode_rows(slots);
        if self.staging.is_empty() {
            return decoded;
        }
        let g = self.group;
        let mut sources = vec![decoded];
        let mut base: BTreeMap<usize, usize> = BTreeMap::new();
        let mut next = slots.len();
        let mut idx = Vec::with_capacity(slots.len());
        for (i, &s) in slots.iter().enumerate() {
            match self.staging.get(&(s / g)) {
                None => idx.push(i as i64),
                Some(t) => {
                    let b = *base.entry(s / g).or_insert_with(|| {
                        sources.push(t.clone());
                        next += g;
                        next - g
                    });
                    idx.push((b + s % g) as i64);
                }
            }
        }
        if base.is_empty() {
            return sources.remove(0);
        }
        let all = Tensor::cat(sources, 0);
        let idx =
            Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [slots.len()]), &all.device());
        all.select(0, idx)
    }

    /// Copies slots `from..from + n` onto `to..to + n` (overlap allowed). Per-token planes
    /// and group-aligned per-channel moves copy codes and metadata exactly; any other
    /// per-channel move re-stages: the source slots are decoded and written to the target
    /// slots, so the target groups are re-quantized once complete.
    pub fn move_slots(&mut self, from: usize, to: usize, n: usize) {
        if n == 0 || from == to {
            return;
        }
        let g = self.group;
        match self.axis {
            Axis::PerToken => {
                self.codes.copy_rows(from, to, n);
                self.scale.copy_rows(from, to, n);
                if let Some(z) = self.zero.as_mut() {
                    z.copy_rows(from, to, n);
                }
            }
            Axis::PerChannel if [from, to, n].iter().all(|x| x.is_multiple_of(g)) => {
                let (fg, tg, ng) = (from / g, to / g, n / g);
                self.codes.copy_rows(from, to, n);
                self.scale.copy_rows(fg, tg, ng);
                if let Some(z) = self.zero.as_mut() {
                    z.copy_rows(fg, tg, ng);
                }
                self.fresh.copy_within(from..from + n, to);
                let moved: Vec<(usize, Tensor<B, 3>)> = (fg..fg + ng)
                    .filter_map(|grp| self.staging.get(&grp).map(|t| (grp + tg - fg, t.clone())))
                    .collect();
                self.staging.retain(|grp, _| !(tg..tg + ng).contains(grp));
                self.staging.extend(moved);
            }
            Axis::PerChannel => {
                let values = self.read(&(from..from + n).collect::<Vec<_>>());
                self.write_channels(&(to..to + n).collect::<Vec<_>>(), values);
            }
        }
    }
}

//! GGUF: a valid header, metadata (every value type, nested arrays, sometimes a llama model's
//! keys) and tensor table with its data, written by an encoder that may lie in any count,
//! length, type id, dimension, offset or alignment; then byte mutations.

use std::path::Path;

use kvlab_model::gguf::{GgmlType, GgufFile};
use kvlab_model::loader::config_from_gguf;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::harness::Target;
use crate::mutate::{self, interesting_u64};

/// Bytes one parsed input byte may become: a `u8` array element is a 32-byte `MetadataValue`,
/// and a growing `Vec` (or a B-tree of keys) can hold up to twice what it stores, so 64; the
/// dequantized `f32`s of a tensor are at most 8 per data byte (4-bit blocks), 32 bytes, within
/// that. The constant covers the fixed-size parts (the map's first node, error text).
const BYTES_PER_INPUT_BYTE: usize = 64;
const FIXED_BYTES: usize = 64 << 10;

#[derive(Debug)]
pub struct Gguf;

/// Writes GGUF fields, replacing each count, length, id or offset with a boundary number with
/// probability `lie`.
struct Encoder<'a> {
    rng: &'a mut ChaCha8Rng,
    lie: f64,
    out: Vec<u8>,
}

impl Encoder<'_> {
    fn maybe(&mut self, honest: u64) -> u64 {
        if self.lie > 0.0 && self.rng.random_bool(self.lie) {
            interesting_u64(self.rng, honest)
        } else {
            honest
        }
    }
    fn u32(&mut self, honest: u32) {
        let v = self.maybe(honest.into()) as u32;
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, honest: u64) {
        let v = self.maybe(honest);
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A metadata value of type `ty` (GGUF value type ids), arrays up to `depth` deep.
    fn value(&mut self, ty: u32, depth: usize) {
        let n = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => {
                let s = random_name(self.rng);
                return self.string(&s);
            }
            _ => {
                let elem =
                    if depth == 0 { self.rng.random_range(0..9) } else { random_type(self.rng) };
                let len = self.rng.random_range(0..6);
                self.u32(elem);
                self.u64(len);
                for _ in 0..len {
                    self.value(elem, depth.saturating_sub(1));
                }
                return;
            }
        };
        let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
        self.out.extend_from_slice(&bytes);
    }

    fn kv(&mut self, key: &str, ty: u32, payload: impl FnOnce(&mut Self)) {
        self.string(key);
        self.u32(ty);
        payload(self);
    }
}

fn random_type(rng: &mut ChaCha8Rng) -> u32 {
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12][rng.random_range(0..13)]
}

fn random_name(rng: &mut ChaCha8Rng) -> String {
    const PARTS: [&str; 8] = ["general", "llama", "token", "blk.0", "attn_q", "weight", "é", "\n"];
    (0..rng.random_range(0..4))
        .map(|_| PARTS[rng.random_range(0..PARTS.len())])
        .collect::<Vec<_>>()
        .join(".")
}

/// The ggml types this reader knows, with their block sizes and bytes per block.
fn known_types() -> Vec<GgmlType> {
    (0..64).filter_map(GgmlType::from_id).collect()
}

/// A llama model's keys, some of them: enough for `config_from_gguf` to reach its arithmetic.
fn llama_keys(e: &mut Encoder) -> u64 {
    const KEYS: [&str; 9] = [
        "llama.attention.head_count",
        "llama.embedding_length",
        "llama.vocab_size",
        "llama.feed_forward_length",
        "llama.block_count",
        "llama.attention.head_count_kv",
        "llama.attention.key_length",
        "llama.rope.dimension_count",
        "llama.context_length",
    ];
    e.kv("general.architecture", 8, |e| e.string("llama"));
    let mut n = 1;
    for key in KEYS {
        if e.rng.random_bool(0.8) {
            let v = [0u32, 1, 2, 4, 8, 64, 4096, u32::MAX][e.rng.random_range(0..8)];
            e.kv(key, 4, |e| e.out.extend_from_slice(&v.to_le_bytes()));
            n += 1;
        }
    }
    e.kv("llama.attention.layer_norm_rms_epsilon", 6, |e| {
        e.out.extend_from_slice(&1e-5f32.to_le_bytes())
    });
    n + 1
}

impl Gguf {
    fn document(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let lie = [0.0, 0.0, 0.02, 0.1][rng.random_range(0..4)];
        let types = known_types();
        let alignment: u64 = [32, 32, 1, 8, 64][rng.random_range(0..5)];
        let mut meta = Encoder { rng, lie, out: Vec::new() };
        let mut n_kv = 0u64;
        if meta.rng.random_bool(0.3) {
            n_kv += llama_keys(&mut meta);
        }
        if alignment != 32 || meta.rng.random_bool(0.1) {
            let align_ty = if meta.rng.random_bool(0.9) { 4 } else { random_type(meta.rng) };
            meta.kv("general.alignment", align_ty, |e| {
                if align_ty == 4 { e.u32(alignment as u32) } else { e.value(align_ty, 1) }
            });
            n_kv += 1;
        }
        for _ in 0..meta.rng.random_range(0..6) {
            let key = format!("k{}.{}", n_kv, random_name(meta.rng));
            let ty = random_type(meta.rng);
            meta.kv(&key, ty, |e| e.value(ty, 2));
            n_kv += 1;
        }
        // Tensor infos and their data, each at an aligned offset of the data section.
        let mut data = Vec::new();
        let mut n_tensors = 0u64;
        for i in 0..meta.rng.random_range(0..4) {
            let ty = types[meta.rng.random_range(0..types.len())];
            let n_dims = meta.rng.random_range(1..=3);
            let mut dims: Vec<u64> = (0..n_dims).map(|_| meta.rng.random_range(1..=3)).collect();
            dims[0] *= ty.block_size() as u64;
            while !(data.len() as u64).is_multiple_of(alignment) {
                data.push(0);
            }
            let offset = data.len() as u64;
            let size = ty.bytes_for(dims.iter().product()).unwrap_or(0) as usize;
            data.extend((0..size).map(|_| meta.rng.random::<u8>()));
            let name = if i == 0 && meta.rng.random_bool(0.5) {
                "output.weight".to_string()
            } else {
                format!("t{i}")
            };
            meta.string(&name);
            meta.u32(n_dims);
            for d in dims {
                meta.u64(d);
            }
            meta.u32(ty.id());
            meta.u64(offset);
            n_tensors += 1;
        }
        let body = std::mem::take(&mut meta.out);
        let mut head = Encoder { rng: meta.rng, lie, out: b"GGUF".to_vec() };
        head.u32(3);
        head.u64(n_tensors);
        head.u64(n_kv);
        let mut file = head.out;
        file.extend_from_slice(&body);
        while !(file.len() as u64).is_multiple_of(alignment) {
            file.push(0);
        }
        file.extend_from_slice(&data);
        file
    }
}

impl Target for Gguf {
    fn name(&self) -> &'static str {
        "gguf"
    }

    fn input(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let mut file = self.document(rng);
        if rng.random_bool(0.5) {
            mutate::bytes(rng, &mut file, 4);
        }
        file
    }

    /// Opens the bytes as `GgufFile::open` does, then reads what a load reads: every tensor
    /// dequantized, and the model config where the metadata names an architecture.
    fn parse(&self, input: Vec<u8>) -> Result<(), Vec<String>> {
        let file =
            GgufFile::from_bytes(Path::new("fuzz.gguf"), input).map_err(|e| vec![e.to_string()])?;
        for t in file.tensors() {
            if t.ggml_type.can_dequantize() {
                file.tensor_f32(&t.name).map_err(|e| vec![e.to_string()])?;
            }
        }
        if file.get("general.architecture").is_some() {
            config_from_gguf(&file).map_err(|e| vec![e.to_string()])?;
        }
        Ok(())
    }

    fn budget(&self, len: usize) -> usize {
        BYTES_PER_INPUT_BYTE * len + FIXED_BYTES
    }

    fn bad_line(&self, line: &str) -> Option<String> {
        if line.contains(['\n', '\r']) {
            Some(format!("an error spanning lines: {line:?}"))
        } else if !line.contains("fuzz.gguf") {
            Some(format!("an error not naming the file: {line:?}"))
        } else {
            None
        }
    }

    fn show(&self, input: &[u8]) -> String {
        let hex: Vec<String> = input.iter().take(512).map(|b| format!("{b:02x}")).collect();
        format!(
            "{} bytes: {}{}",
            input.len(),
            hex.join(""),
            if input.len() > 512 { "..." } else { "" }
        )
    }
}

/// A GGUF header and `rest`, with `n_tensors` tensors and `n_kv` metadata entries claimed.
fn claiming(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(rest);
    b
}

/// Claims far beyond the file (2^40 tensors, a 2^60-byte string, a 2^60-element array) are
/// refused with at most the budget's allocation: nothing is sized by a claim alone.
#[test]
fn claims_beyond_the_file_are_refused_within_the_budget() {
    let key_then = |ty: u32, payload: &[u8]| {
        let mut b = 1u64.to_le_bytes().to_vec();
        b.push(b'k');
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(payload);
        b
    };
    let mut array = 0u32.to_le_bytes().to_vec();
    array.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let inputs = [
        claiming(1 << 40, 0, &[0; 64]),
        claiming(0, 1 << 40, &[0; 64]),
        claiming(0, 1, &(1u64 << 60).to_le_bytes()),
        claiming(0, 1, &key_then(8, &(1u64 << 60).to_le_bytes())),
        claiming(0, 1, &key_then(9, &array)),
    ];
    for input in inputs {
        let len = input.len();
        let (result, usage) = crate::alloc::measure("gguf", 0, 1 << 30, || Gguf.parse(input));
        let e = result.unwrap_err();
        assert!(e.len() == 1 && !e[0].contains('\n'), "{e:?}");
        assert!(usage.peak_growth <= Gguf.budget(len), "{usage:?} for {len} bytes: {e:?}");
    }
}

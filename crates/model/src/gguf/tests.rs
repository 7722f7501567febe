//! Unit tests: small GGUF files written by hand to a temp dir, valid and corrupt.

use super::*;
use half::f16;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Minimal GGUF writer for tests.
#[derive(Default)]
struct Builder {
    version: u32,
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    alignment: u64,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

impl Builder {
    fn new() -> Builder {
        Builder { version: 3, alignment: 32, ..Default::default() }
    }
    /// Adds a raw key/value: `ty` id and already-encoded payload.
    fn kv_raw(mut self, key: &str, ty: u32, payload: &[u8]) -> Builder {
        put_str(&mut self.kv, key);
        self.kv.extend_from_slice(&ty.to_le_bytes());
        self.kv.extend_from_slice(payload);
        self.n_kv += 1;
        self
    }
    fn kv_u32(self, key: &str, v: u32) -> Builder {
        self.kv_raw(key, 4, &v.to_le_bytes())
    }
    fn kv_str(self, key: &str, v: &str) -> Builder {
        let mut p = Vec::new();
        put_str(&mut p, v);
        self.kv_raw(key, 8, &p)
    }
    /// Adds a tensor whose data is appended (aligned) to the data section.
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, data: &[u8]) -> Builder {
        while !(self.data.len() as u64).is_multiple_of(self.alignment) {
            self.data.push(0);
        }
        let offset = self.data.len() as u64;
        self.data.extend_from_slice(data);
        self.tensor_at(name, dims, ty, offset)
    }
    fn tensor_at(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Builder {
        put_str(&mut self.infos, name);
        self.infos.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend_from_slice(&d.to_le_bytes());
        }
        self.infos.extend_from_slice(&ty.to_le_bytes());
        self.infos.extend_from_slice(&offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }
    fn build(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.n_tensors.to_le_bytes());
        b.extend_from_slice(&self.n_kv.to_le_bytes());
        b.extend_from_slice(&self.kv);
        b.extend_from_slice(&self.infos);
        while !(b.len() as u64).is_multiple_of(self.alignment) {
            b.push(0);
        }
        b.extend_from_slice(&self.data);
        b
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `bytes` to a unique file in the temp dir and opens it; removes the file afterwards.
fn open_bytes(bytes: &[u8]) -> (Result<GgufFile, GgufError>, PathBuf) {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("kvlab-gguf-test-{}-{n}.gguf", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let r = GgufFile::open(&path);
    std::fs::remove_file(&path).ok();
    (r, path)
}

fn q8_block(d: f32, start: i8) -> Vec<u8> {
    let mut b = f16::from_f32(d).to_le_bytes().to_vec();
    b.extend((0..32).map(|i| start.wrapping_add(i) as u8));
    b
}

#[test]
fn parses_metadata_of_every_type_and_tensors() {
    let mut nested = Vec::new();
    // array<array<i32>>: 2 arrays of [1,2] and [3]
    nested.extend_from_slice(&9u32.to_le_bytes());
    nested.extend_from_slice(&2u64.to_le_bytes());
    for inner in [&[1i32, 2][..], &[3][..]] {
        nested.extend_from_slice(&5u32.to_le_bytes());
        nested.extend_from_slice(&(inner.len() as u64).to_le_bytes());
        for v in inner {
            nested.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut strs = Vec::new();
    strs.extend_from_slice(&8u32.to_le_bytes());
    strs.extend_from_slice(&2u64.to_le_bytes());
    put_str(&mut strs, "a b");
    put_str(&mut strs, "Ġx");

    let f32_data: Vec<u8> =
        [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut q8 = q8_block(0.5, -16);
    q8.extend(q8_block(1.0, 0));
    let b = Builder::new()
        .kv_raw("t.u8", 0, &[200])
        .kv_raw("t.i8", 1, &[0xFF])
        .kv_raw("t.u16", 2, &700u16.to_le_bytes())
        .kv_raw("t.i16", 3, &(-700i16).to_le_bytes())
        .kv_u32("t.u32", 70000)
        .kv_raw("t.i32", 5, &(-70000i32).to_le_bytes())
        .kv_raw("t.f32", 6, &1.5f32.to_le_bytes())
        .kv_raw("t.bool", 7, &[1])
        .kv_str("t.str", "héllo")
        .kv_raw("t.u64", 10, &(1u64 << 40).to_le_bytes())
        .kv_raw("t.i64", 11, &(-5i64).to_le_bytes())
        .kv_raw("t.f64", 12, &2.5f64.to_le_bytes())
        .kv_raw("t.nested", 9, &nested)
        .kv_raw("t.strs", 9, &strs)
        .tensor("w", &[3, 2], 0, &f32_data)
        .tensor("q", &[32, 2], 8, &q8);
    let (f, _) = open_bytes(&b.build());
    let f = f.unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.get("t.u8"), Some(&MetadataValue::U8(200)));
    assert_eq!(f.get("t.i8"), Some(&MetadataValue::I8(-1)));
    assert_eq!(f.get_u32("t.u16").unwrap(), 700);
    assert_eq!(f.get_i32("t.i16").unwrap(), -700);
    assert_eq!(f.get_u32("t.u32").unwrap(), 70000);
    assert_eq!(f.get_i32("t.i32").unwrap(), -70000);
    assert_eq!(f.get_f32("t.f32").unwrap(), 1.5);
    assert!(f.get_bool("t.bool").unwrap());
    assert_eq!(f.get_str("t.str").unwrap(), "héllo");
    assert_eq!(f.get_u64("t.u64").unwrap(), 1 << 40);
    assert_eq!(f.get("t.i64"), Some(&MetadataValue::I64(-5)));
    assert_eq!(f.get_f64("t.f64").unwrap(), 2.5);
    assert_eq!(f.get_str_array("t.strs").unwrap(), vec!["a b", "Ġx"]);
    let nested = f.get("t.nested").unwrap().as_array().unwrap();
    assert_eq!(nested.len(), 2);
    assert_eq!(nested[0], MetadataValue::Array(vec![MetadataValue::I32(1), MetadataValue::I32(2)]));
    assert_eq!(nested[1], MetadataValue::Array(vec![MetadataValue::I32(3)]));

    // Errors name the key and the found type; out-of-range integers are refused.
    let e = f.get_u32("t.i32").unwrap_err().to_string();
    assert!(e.contains("'t.i32'") && e.contains("i32"), "{e}");
    let e = f.get_str("t.u32").unwrap_err().to_string();
    assert!(e.contains("'t.u32' has type u32, expected string"), "{e}");
    let e = f.get_str_array("t.nested").unwrap_err().to_string();
    assert!(e.contains("array<array<i32>[2]>[2]"), "{e}");
    let e = f.get_f32("no.such.key").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey { ref key, .. } if key == "no.such.key"));

    let (w, shape) = f.tensor_f32("w").unwrap();
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(w, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (q, shape) = f.tensor_f32("q").unwrap();
    assert_eq!(shape, vec![2, 32]);
    assert_eq!(q[0], -8.0);
    assert_eq!(q[31], 7.5);
    assert_eq!(q[32], 0.0);
    assert_eq!(q[63], 31.0);
    assert_eq!(f.tensor("q").unwrap().ggml_type, GgmlType::Q8_0);
    assert!(matches!(f.tensor_f32("nope"), Err(GgufError::NoSuchTensor { .. })));
}

#[test]
fn honours_general_alignment_and_version_2() {
    let mut b = Builder::new().kv_u32("general.alignment", 64).tensor("w", &[4], 0, &[0u8; 16]);
    b.alignment = 64;
    b.version = 2;
    let (f, _) = open_bytes(&b.build());
    let f = f.unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.tensor_f32("w").unwrap().0, vec![0.0; 4]);
}

#[test]
fn wrong_magic_says_what_was_found() {
    let mut bytes = Builder::new().build();
    bytes[..4].copy_from_slice(b"GGML");
    let (r, path) = open_bytes(&bytes);
    let e = r.unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }));
    let msg = e.to_string();
    assert!(msg.contains("\"GGML\"") && msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn unsupported_version_is_named() {
    let mut b = Builder::new();
    b.version = 7;
    let (r, _) = open_bytes(&b.build());
    let e = r.unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedVersion { version: 7, .. }));
    assert!(e.to_string().contains("version 7"));
}

#[test]
fn truncated_files_name_field_and_offset() {
    let full =
        Builder::new().kv_str("general.name", "abcdef").tensor("w", &[4], 0, &[0u8; 16]).build();
    // Cut inside the header counts.
    let (r, _) = open_bytes(&full[..10]);
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("truncated") && e.contains("header tensor count") && e.contains("offset 8"),
        "{e}"
    );
    // Cut inside the string value of general.name: header 24 + key (8 + 12) + type 4 = 48,
    // string length at 48..56, string bytes at 56..62.
    let (r, _) = open_bytes(&full[..58]);
    let e = r.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GgufError::Truncated { offset: 56, needed: 6, .. }), "{msg}");
    assert!(msg.contains("'general.name'"), "{msg}");
    // Cut inside the tensor infos.
    let (r, _) = open_bytes(&full[..70]);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("tensor"), "{msg}");
}

#[test]
fn huge_counts_do_not_allocate_or_panic() {
    let mut bytes = Builder::new().build();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let (r, _) = open_bytes(&bytes);
    assert!(matches!(r.unwrap_err(), GgufError::Truncated { .. }));
    // An array claiming 2^60 elements.
    let mut p = 4u32.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let (r, _) = open_bytes(&Builder::new().kv_raw("a", 9, &p).build());
    assert!(matches!(r.unwrap_err(), GgufError::Truncated { .. }));
}

#[test]
fn tensor_data_past_end_names_tensor() {
    let b = Builder::new().tensor("ok", &[4], 0, &[0u8; 16]).tensor_at(
        "blk.9.ffn_up.weight",
        &[64],
        0,
        4096,
    );
    let (r, _) = open_bytes(&b.build());
    let e = r.unwrap_err();
    assert!(
        matches!(e, GgufError::TensorPastEnd { ref tensor, .. } if tensor == "blk.9.ffn_up.weight")
    );
    assert!(e.to_string().contains("past the end"));
}

#[test]
fn unknown_ggml_type_names_tensor_and_id() {
    let b = Builder::new().tensor("odd", &[32], 19, &[0u8; 64]);
    let (r, _) = open_bytes(&b.build());
    let e = r.unwrap_err();
    assert!(matches!(e, GgufError::UnknownGgmlType { ref tensor, id: 19, .. } if tensor == "odd"));
    assert!(e.to_string().contains("type id 19"));
}

#[test]
fn element_count_not_block_multiple() {
    let b = Builder::new().tensor("q", &[33, 2], 8, &[0u8; 200]);
    let (r, _) = open_bytes(&b.build());
    let e = r.unwrap_err();
    assert!(
        matches!(e, GgufError::NotBlockMultiple { ref tensor, row_elements: 33, block_size: 32, .. } if tensor == "q"),
        "{e}"
    );
}

#[test]
fn unknown_metadata_value_type() {
    let (r, _) = open_bytes(&Builder::new().kv_raw("x.y", 42, &[0; 8]).build());
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("'x.y'") && msg.contains("value type id 42"), "{msg}");
}

#[test]
fn missing_file_names_path() {
    let p = std::env::temp_dir().join("kvlab-definitely-missing.gguf");
    let e = GgufFile::open(&p).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }));
    assert!(e.to_string().contains("kvlab-definitely-missing.gguf"));
}

#[test]
fn unsupported_dequant_is_an_error_not_a_panic() {
    // q5_K (id 13): a real ggml type kvlab does not dequantize; one line naming tensor and type.
    let b = Builder::new().tensor("k", &[256], 13, &[0u8; 176]);
    let (f, _) = open_bytes(&b.build());
    let f = f.unwrap();
    let e = f.tensor_f32("k").unwrap_err().to_string();
    assert!(e.contains("'k'") && e.contains("q5_K") && !e.contains('\n'), "{e}");
}

#[test]
fn an_unsupported_architecture_is_refused_in_one_line_naming_it() {
    let (f, _) = open_bytes(&Builder::new().kv_str("general.architecture", "mamba").build());
    let e = crate::loader::config_from_gguf(&f.unwrap()).unwrap_err().to_string();
    assert!(e.contains("architecture 'mamba' is not supported") && !e.contains('\n'), "{e}");
    assert!(e.contains("llama, gemma3, qwen2"), "{e}");
}

#[test]
fn names_with_control_characters_stay_on_one_line_in_errors() {
    // Fuzz input: a metadata key holding a newline, the file ending before its value type.
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    put_str(&mut b, "k1.\n.blk");
    let e = open_bytes(&b).0.unwrap_err().to_string();
    assert!(e.contains("'k1.\\n.blk'") && !e.contains('\n'), "{e}");
    // A tensor named with a carriage return, of an unknown type.
    let e = open_bytes(&Builder::new().tensor_at("t\r", &[4], 99, 0).build()).0.unwrap_err();
    let e = e.to_string();
    assert!(e.contains("'t\\r'") && !e.contains('\r'), "{e}");
    // An architecture name with a newline.
    let f = open_bytes(&Builder::new().kv_str("general.architecture", "ma\nmba").build()).0;
    let e = crate::loader::config_from_gguf(&f.unwrap()).unwrap_err().to_string();
    assert!(e.contains("'ma\\nmba'") && !e.contains('\n'), "{e}");
}

#[test]
fn no_heads_is_refused_not_a_division_by_zero() {
    // Fuzz input: head_count = 0 without key_length or rope.dimension_count, from which the
    // head width is hidden / heads.
    let b = Builder::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.attention.head_count", 0)
        .kv_u32("llama.embedding_length", 64)
        .kv_u32("llama.vocab_size", 16)
        .kv_u32("llama.feed_forward_length", 128)
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.attention.head_count_kv", 1)
        .kv_raw("llama.attention.layer_norm_rms_epsilon", 6, &1e-5f32.to_le_bytes());
    let f = open_bytes(&b.build()).0.unwrap();
    let e = crate::loader::config_from_gguf(&f).unwrap_err().to_string();
    assert!(e.contains("n_heads must be > 0"), "{e}");
}

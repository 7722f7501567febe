//! Reads the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched into the cache on first use).

use kvlab_model::assets;
use kvlab_model::gguf::{GgmlType, GgufFile};

fn open() -> GgufFile {
    let path = assets::smollm2_gguf(None).expect("fetch the SmolLM2 GGUF");
    GgufFile::open(&path).expect("parse the SmolLM2 GGUF")
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() < 1e-6
}

#[test]
fn smollm2_metadata_and_tensors() {
    let f = open();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset(), 1_785_664);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("llama.context_length").unwrap(), 8192);
    assert_eq!(f.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(f.get_u32("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(f.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(f.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(f.get_u32("llama.rope.dimension_count").unwrap(), 64);
    assert_eq!(f.get_u32("llama.vocab_size").unwrap(), 49152);
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert!((f.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap() - 1e-5).abs() < 1e-9);
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(f.get_str_array("tokenizer.ggml.merges").unwrap().len(), 48900);

    assert_eq!(f.tensors().len(), 272);
    for t in f.tensors() {
        let expected = match t.name.as_str() {
            "token_embd.weight" => GgmlType::Q8_0,
            n if n.ends_with("_norm.weight") => GgmlType::F32,
            _ => GgmlType::Q4_1,
        };
        assert_eq!(t.ggml_type, expected, "{}", t.name);
    }
    assert!(f.tensor("output.weight").is_none(), "embeddings are tied");
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, vec![576, 576]);
    assert_eq!(f.tensor("blk.0.attn_k.weight").unwrap().shape(), vec![192, 576]);
    assert_eq!(f.tensor("blk.29.ffn_down.weight").unwrap().dims, vec![1536, 576]);
    assert_eq!(f.tensor("blk.29.ffn_gate.weight").unwrap().dims, vec![576, 1536]);
}

#[test]
fn smollm2_dequantizes_to_reference_values() {
    // Reference values computed independently (Python struct over the same bytes).
    let f = open();
    let (q, shape) = f.tensor_f32("blk.0.attn_q.weight").unwrap();
    assert_eq!(shape, vec![576, 576]);
    for (i, r) in [
        (0, -0.0963134765625),
        (1, 0.1573486328125),
        (3, -0.73046875),
        (16, -0.22314453125),
        (40, 0.0592041015625),
    ] {
        assert!(close(q[i], r), "attn_q[{i}] = {} vs {r}", q[i]);
    }
    let (e, shape) = f.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(shape, vec![49152, 576]);
    for (i, r) in [(576, -0.0238037109375), (577, -0.015869140625), (579, 0.015869140625)] {
        assert!(close(e[i], r), "embd[{i}] = {} vs {r}", e[i]);
    }
    assert!(close(*e.last().unwrap(), -0.0417022705078125));
    let (n, shape) = f.tensor_f32("blk.0.attn_norm.weight").unwrap();
    assert_eq!(shape, vec![576]);
    assert!(close(n[0], 0.01397705078125) && close(n[3], -0.0302734375));
    // Every tensor dequantizes and is finite.
    for t in f.tensors() {
        let (d, s) = f.tensor_f32(&t.name).unwrap();
        assert_eq!(d.len(), s.iter().product::<usize>());
        assert!(d.iter().all(|x| x.is_finite()), "{}", t.name);
    }
}

//! Tokenizer built from the real SmolLM2 GGUF (fetched into the cache on first use).

use kvlab_model::assets;
use kvlab_model::gguf::GgufFile;
use kvlab_model::tokenizer::Tokenizer;
use std::sync::OnceLock;

fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = assets::smollm2_gguf(None).expect("fetch the SmolLM2 GGUF");
        Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap()
    })
}

#[test]
fn ids_and_vocab() {
    let t = tok();
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.bos_id(), Some(1));
    assert!(!t.adds_bos());
    assert_eq!(t.token(0), Some("<|endoftext|>"));
    assert_eq!(t.token(1), Some("<|im_start|>"));
    assert_eq!(t.token(49152), None);
}

#[test]
fn round_trips() {
    let t = tok();
    for text in [
        "In 1984, 12345 people",
        "Hello, world! How's it going?",
        "a    b     c  ",
        "   leading spaces",
        "line one\nline two\n\n\nthree\r\n",
        "tab\there\t\tand\t",
        "naïve café — 東京 🚀",
        "<|im_start|>user\nHi there<|im_end|>\n",
        "",
    ] {
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), text, "{ids:?}");
    }
}

#[test]
fn digits_are_split_individually() {
    let t = tok();
    let ids = t.encode("12345").unwrap();
    let digit = |c: char| t.token_id(&c.to_string()).unwrap();
    assert_eq!(ids, "12345".chars().map(digit).collect::<Vec<_>>());
    let ids = t.encode("In 1984,").unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| t.token(i).unwrap()).collect();
    assert_eq!(pieces, vec!["In", "Ġ", "1", "9", "8", "4", ","]);
}

#[test]
fn special_tokens_match_whole_and_no_bos() {
    let t = tok();
    let ids = t.encode("<|im_start|>assistant\n").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(t.decode(&ids[..1]).unwrap(), "<|im_start|>");
    let ids = t.encode("The cat").unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| t.token(i).unwrap()).collect();
    assert_eq!(pieces, vec!["The", "Ġcat"]);
    assert!(t.decode(&[49152]).is_err());
}

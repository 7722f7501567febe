//! Byte-level BPE (`tokenizer.ggml.model == "gpt2"`: SmolLM2, Qwen2.5), rebuilt from GGUF
//! metadata with Hugging Face's `tokenizers` crate.
//!
//! Supported: `tokenizer.ggml.model == "gpt2"` (byte-level BPE) with the vocabulary
//! (`tokenizer.ggml.tokens`), merges (`tokenizer.ggml.merges`, `"left right"` strings, rank =
//! position), token types (`tokenizer.ggml.token_type`) and special ids.
//!
//! # Pre-tokenizer (`tokenizer.ggml.pre`)
//!
//! SmolLM2's GGUF says `pre = "smollm"`. What that means, from the public sources:
//!
//! * llama.cpp's `convert_hf_to_gguf_update.py` registers `"smollm"` for the HF repo
//!   `HuggingFaceTB/SmolLM-135M` (SmolLM2 reuses the same tokenizer, so its tokenizer.json
//!   hashes to the same pre-tokenizer).
//! * llama.cpp's `src/llama-vocab.cpp` maps `LLAMA_VOCAB_PRE_TYPE_SMOLLM` to the same
//!   two-stage split as StarCoder / Refact / Command-R: first `\p{N}` (every number character
//!   on its own), then the GPT-2 regex
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` on the pieces.
//! * That is llama.cpp's rendering of the HF tokenizer.json pre-tokenizer of these
//!   StarCoder-family tokenizers, `Sequence[Digits(individual_digits=true),
//!   ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)]`, with a
//!   `ByteLevel` decoder and no normalizer; several independent projects that pin SmolLM2's
//!   tokenizer.json assert exactly this Digits → ByteLevel sequence. SmolLM2's
//!   tokenizer_config.json has `add_prefix_space: false`, and its 17 added tokens (ids 0..=16,
//!   `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<repo_name>`, ...) are all `special`,
//!   matching `token_type == 3` (control) in the GGUF.
//!
//! Qwen2's GGUF says `pre = "qwen2"`: llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` splits with one
//! regex, `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! (every digit alone), before the byte-level mapping; HF's tokenizer.json for Qwen2.5 has the
//! same `Split` then `ByteLevel(use_regex = false)` (plus an NFC normalizer, which llama.cpp
//! does not apply and which changes nothing in ASCII text).
//!
//! So this module builds exactly that: HF `Digits(true)` then HF `ByteLevel(false, true, true)`
//! (or, for `qwen2`, HF `Split(regex, Isolated)` then `ByteLevel(false, true, false)`), a BPE
//! model with no unk token and no byte fallback, and a `ByteLevel` decoder. Control
//! tokens (type 3) are registered as special added tokens and user-defined ones (type 4) as
//! plain added tokens, so both are matched whole in input text. `"gpt2"`, `"default"`,
//! `"starcoder"`, `"refact"`, `"smollm"` (the latter three with the digit split) and `"qwen2"`
//! pre-tokenizers are accepted; any other value is an error rather than a silently wrong split.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use super::error::{TokenizerError, hf};
use super::token_type::{TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED};
use crate::gguf::GgufFile;

/// Qwen2's split (see the module docs).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a `tokenizer.ggml.pre` value splits text before the byte-level mapping.
enum PreSplit {
    /// GPT-2's regex only.
    Gpt2,
    /// Every digit alone, then GPT-2's regex.
    DigitsThenGpt2,
    /// One regex (its own), then the byte-level mapping without GPT-2's.
    Regex(&'static str),
}

/// The byte-level BPE of a `gpt2` vocabulary.
pub(super) fn build(
    gguf: &GgufFile,
    tokens: &[String],
    types: &[i32],
) -> Result<HfTokenizer, TokenizerError> {
    let pre = match gguf.get("tokenizer.ggml.pre") {
        Some(_) => gguf.get_str("tokenizer.ggml.pre")?,
        None => "default",
    };
    let split = match pre {
        "default" | "gpt2" => PreSplit::Gpt2,
        "smollm" | "starcoder" | "refact" => PreSplit::DigitsThenGpt2,
        "qwen2" => PreSplit::Regex(QWEN2_SPLIT),
        other => return Err(TokenizerError::UnsupportedPre(other.into())),
    };
    let merges_raw = gguf.get_str_array("tokenizer.ggml.merges")?;
    let mut merges: Merges = Vec::with_capacity(merges_raw.len());
    for (index, m) in merges_raw.iter().enumerate() {
        let Some((a, b)) = m.split_once(' ') else {
            return Err(TokenizerError::BadMerge { index, merge: (*m).into() });
        };
        merges.push((a.to_string(), b.to_string()));
    }
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(hf)?;
    let mut inner = HfTokenizer::new(bpe);
    let pre_tokenizer: PreTokenizerWrapper = match split {
        PreSplit::Gpt2 => ByteLevel::new(false, true, true).into(),
        PreSplit::DigitsThenGpt2 => {
            Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()])
                .into()
        }
        PreSplit::Regex(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(hf)?;
            Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
        }
    };
    inner.with_pre_tokenizer(Some(pre_tokenizer));
    inner.with_decoder(Some(ByteLevelDecoder::default()));

    let added = |ty: i32, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(types)
            .filter(|&(_, &t)| t == ty)
            .map(|(tok, _)| AddedToken::from(tok.clone(), special).normalized(false))
            .collect()
    };
    inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
    inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));
    Ok(inner)
}

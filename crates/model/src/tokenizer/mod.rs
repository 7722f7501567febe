//! The model's tokenizer, rebuilt from GGUF metadata with Hugging Face's `tokenizers` crate.
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
//! So this module builds exactly that: HF `Digits(true)` then HF `ByteLevel(false, true, true)`,
//! a BPE model with no unk token and no byte fallback, and a `ByteLevel` decoder. Control
//! tokens (type 3) are registered as special added tokens and user-defined ones (type 4) as
//! plain added tokens, so both are matched whole in input text. `"gpt2"`, `"default"`,
//! `"starcoder"`, `"refact"` and `"smollm"` style pre-tokenizers are accepted (the latter three
//! with the digit split); any other value is an error rather than a silently wrong split.
//!
//! No BOS is prepended unless `tokenizer.ggml.add_bos_token` is true (SmolLM2's file says
//! false, matching HF, which adds nothing).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::gguf::{GgufError, GgufFile};

/// GGUF token type of control tokens (`<|im_start|>` ...).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Errors building or using the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported tokenizer model '{0}' (only \"gpt2\" byte-level BPE is supported)")]
    UnsupportedModel(String),
    #[error(
        "unsupported pre-tokenizer '{0}' (supported: default, gpt2, smollm, starcoder, refact)"
    )]
    UnsupportedPre(String),
    #[error("merge {index} ('{merge}') is not two space-separated tokens")]
    BadMerge { index: usize, merge: String },
    #[error("tokenizer.ggml.token_type has {types} entries but there are {tokens} tokens")]
    TokenTypeCount { types: usize, tokens: usize },
    #[error("special token id {id} ({what}) is outside the vocabulary of {vocab} tokens")]
    BadSpecialId { what: &'static str, id: u32, vocab: usize },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadId { id: u32, vocab: usize },
    #[error("tokenizers: {0}")]
    Hf(String),
}

/// Byte-level BPE tokenizer for the model.
#[derive(Debug)]
pub struct Tokenizer {
    inner: HfTokenizer,
    tokens: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
}

fn hf(e: tokenizers::Error) -> TokenizerError {
    TokenizerError::Hf(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.into()));
        }
        let pre = match gguf.get("tokenizer.ggml.pre") {
            Some(_) => gguf.get_str("tokenizer.ggml.pre")?,
            None => "default",
        };
        let split_digits = match pre {
            "default" | "gpt2" => false,
            "smollm" | "starcoder" | "refact" => true,
            other => return Err(TokenizerError::UnsupportedPre(other.into())),
        };

        let tokens: Vec<String> =
            gguf.get_str_array("tokenizer.ggml.tokens")?.into_iter().map(String::from).collect();
        let merges_raw = gguf.get_str_array("tokenizer.ggml.merges")?;
        let mut merges: Merges = Vec::with_capacity(merges_raw.len());
        for (index, m) in merges_raw.iter().enumerate() {
            let Some((a, b)) = m.split_once(' ') else {
                return Err(TokenizerError::BadMerge { index, merge: (*m).into() });
            };
            merges.push((a.to_string(), b.to_string()));
        }
        let types = match gguf.get("tokenizer.ggml.token_type") {
            Some(_) => gguf.get_i32_array("tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::TokenTypeCount {
                types: types.len(),
                tokens: tokens.len(),
            });
        }

        let optional_id = |key: &str, what: &'static str| -> Result<Option<u32>, TokenizerError> {
            if gguf.get(key).is_none() {
                return Ok(None);
            }
            let id = gguf.get_u32(key)?;
            if id as usize >= tokens.len() {
                return Err(TokenizerError::BadSpecialId { what, id, vocab: tokens.len() });
            }
            Ok(Some(id))
        };
        let bos = optional_id("tokenizer.ggml.bos_token_id", "bos")?;
        let eos = optional_id("tokenizer.ggml.eos_token_id", "eos")?;
        let unk = optional_id("tokenizer.ggml.unknown_token_id", "unk")?;
        let pad = optional_id("tokenizer.ggml.padding_token_id", "padding")?;
        let add_bos = match gguf.get("tokenizer.ggml.add_bos_token") {
            Some(_) => gguf.get_bool("tokenizer.ggml.add_bos_token")?,
            None => false,
        };

        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(hf)?;
        let mut inner = HfTokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer: PreTokenizerWrapper = if split_digits {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else {
            byte_level.into()
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let added = |ty: i32, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|&(_, &t)| t == ty)
                .map(|(tok, _)| AddedToken::from(tok.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));

        Ok(Tokenizer { inner, tokens, bos, eos, unk, pad, add_bos })
    }

    /// Encodes text to token ids (special tokens in the text are matched whole; a BOS is
    /// prepended only when the GGUF asks for it).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(hf)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos
            && let Some(bos) = self.bos
        {
            ids.push(bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text, special tokens included verbatim. Byte sequences that are not
    /// valid UTF-8 (e.g. half a multi-byte character) decode to U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.tokens.len()) {
            return Err(TokenizerError::BadId { id, vocab: self.tokens.len() });
        }
        self.inner.decode(ids, false).map_err(hf)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }
    /// Whether [`encode`](Self::encode) prepends the BOS token.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }
    /// The raw vocabulary string of a token (byte-level form, e.g. `"Ġthe"`).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
    /// The id of a raw vocabulary string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

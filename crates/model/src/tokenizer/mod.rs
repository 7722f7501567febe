//! The model's tokenizer, rebuilt from GGUF metadata: byte-level BPE for `gpt2` vocabularies
//! (SmolLM2, Qwen2.5; [`bpe`]) and SentencePiece-style merges by score for `llama` vocabularies
//! (Gemma 3; [`spm`]).
//!
//! A BOS is prepended only when `tokenizer.ggml.add_bos_token` is true (SmolLM2's and Qwen's
//! files say false, matching HF, which adds nothing; Gemma's says true).

mod bpe;
mod error;
mod spm;
mod token_type;

use tokenizers::Tokenizer as HfTokenizer;

use crate::gguf::GgufFile;
pub use error::TokenizerError;
use error::hf;
use spm::Spm;
use token_type::TOKEN_TYPE_USER_DEFINED;

/// How the vocabulary splits text.
#[derive(Debug)]
enum Engine {
    Bpe(Box<HfTokenizer>),
    Spm(Box<Spm>),
}

/// The model's tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    engine: Engine,
    tokens: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" && model != "llama" {
            return Err(TokenizerError::UnsupportedModel(model.into()));
        }
        let tokens: Vec<String> =
            gguf.get_str_array("tokenizer.ggml.tokens")?.into_iter().map(String::from).collect();
        let types = match gguf.get("tokenizer.ggml.token_type") {
            Some(_) => gguf.get_i32_array("tokenizer.ggml.token_type")?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::ArrayLength {
                key: "token_type",
                entries: types.len(),
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
        let flag = |key: &str| -> Result<bool, TokenizerError> {
            Ok(gguf.get(key).is_some() && gguf.get_bool(key)?)
        };
        let add_bos = flag("tokenizer.ggml.add_bos_token")?;

        let engine = if model == "gpt2" {
            Engine::Bpe(Box::new(bpe::build(gguf, &tokens, &types)?))
        } else {
            let scores = gguf.get_f32_array("tokenizer.ggml.scores")?;
            if scores.len() != tokens.len() {
                return Err(TokenizerError::ArrayLength {
                    key: "scores",
                    entries: scores.len(),
                    tokens: tokens.len(),
                });
            }
            let space_prefix = flag("tokenizer.ggml.add_space_prefix")?;
            let spm =
                Spm::new(&tokens, &scores, &types, unk, space_prefix, TOKEN_TYPE_USER_DEFINED);
            Engine::Spm(Box::new(spm))
        };
        Ok(Tokenizer { engine, tokens, bos, eos, unk, pad, add_bos })
    }

    /// Encodes text to token ids (special tokens in the text are matched whole; a BOS is
    /// prepended only when the GGUF asks for it).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        if self.add_bos
            && let Some(bos) = self.bos
        {
            ids.push(bos);
        }
        match &self.engine {
            Engine::Bpe(inner) => {
                ids.extend_from_slice(inner.encode(text, false).map_err(hf)?.get_ids())
            }
            Engine::Spm(spm) => ids.extend(spm.encode(text)),
        }
        Ok(ids)
    }

    /// Decodes ids to text, special tokens included verbatim. Byte sequences that are not
    /// valid UTF-8 (e.g. half a multi-byte character) decode to U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.tokens.len()) {
            return Err(TokenizerError::BadId { id, vocab: self.tokens.len() });
        }
        match &self.engine {
            Engine::Bpe(inner) => inner.decode(ids, false).map_err(hf),
            Engine::Spm(spm) => {
                Ok(spm.decode(ids.iter().map(|&id| (id, self.tokens[id as usize].clone()))))
            }
        }
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
    /// The raw vocabulary string of a token (byte-level form, e.g. `"Ġthe"`; SentencePiece
    /// form, e.g. `"▁the"`).
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
    /// The id of a raw vocabulary string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.engine {
            Engine::Bpe(inner) => inner.token_to_id(token),
            Engine::Spm(spm) => spm.token_id(token),
        }
    }
}

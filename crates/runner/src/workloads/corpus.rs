//! The token ids a run evaluates (or calibrates on): the first tokens of a corpus, tokenized by
//! the run's own model file, or seeded random ids.

use anyhow::Result;
use kvlab_model::gguf::GgufFile;

use super::random_prompts;
use crate::experiment::PerplexityParams;

/// The evaluated token ids: the first `p.tokens` tokens of the corpus.
pub(crate) fn corpus_tokens(
    p: &PerplexityParams,
    seed: u64,
    model: &str,
    vocab: usize,
    source: &crate::model::ModelSource,
) -> Result<Vec<u32>> {
    crate::experiment::check_corpus(&p.corpus).map_err(anyhow::Error::msg)?;
    if p.corpus == "random" {
        return Ok(random_prompts(seed ^ 0x5eed_c0de, 1, p.tokens, vocab).remove(0));
    }
    let text = kvlab_model::corpus::corpus_spec(&p.corpus, source.cache_dir.as_deref())?;
    // The run's own model file: a `.gguf` model brings its tokenizer.
    let path = crate::model::gguf_path(model, source).map_err(anyhow::Error::msg)?;
    let tokenizer = kvlab_model::tokenizer::Tokenizer::from_gguf(&GgufFile::open(&path)?)?;
    if tokenizer.vocab_size() != vocab {
        anyhow::bail!(
            "corpus {}: the tokenizer of {} has {} tokens, the model {vocab}",
            p.corpus,
            path.display(),
            tokenizer.vocab_size()
        );
    }
    // Tokenize a prefix large enough for the request (a play is ~4 characters per token).
    let mut take = (p.tokens * 8).min(text.len());
    loop {
        while !text.is_char_boundary(take) {
            take += 1;
        }
        let mut ids = tokenizer.encode(&text[..take])?;
        if ids.len() > p.tokens || take == text.len() {
            // Drop the last token: a cut may have split it.
            ids.truncate(p.tokens.min(ids.len().saturating_sub(1)));
            if ids.len() < p.tokens {
                anyhow::bail!(
                    "corpus {} has only {} tokens, {} asked",
                    p.corpus,
                    ids.len(),
                    p.tokens
                );
            }
            return Ok(ids);
        }
        take = (take * 2).min(text.len());
    }
}

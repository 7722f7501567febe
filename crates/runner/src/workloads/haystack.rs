//! The passkey haystack (Mohtashami & Jaggi, 2023; the "needle in a haystack" test): a prompt of
//! exactly `length` tokens with a five-digit key planted at a depth, and the question that asks
//! for it. Built from token ids, so a case's length and the needle's position are exact.
//!
//! ```text
//! [intro][haystack before][needle][haystack after] [question]
//! |<------------------------ length tokens ------------------------>|
//! ```
//!
//! The haystack is real text (a seeded window of the corpus, the same for every depth of a
//! sample) or the classic repeated filler. The wording was chosen on SmolLM2-135M-Instruct with
//! a full cache: a plain "important info" intro lets it answer from filler but not from
//! Hamlet, where it describes what a pass key is; an intro that says a five-digit number is
//! hidden, and blank lines around the needle, make it answer from both.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use kvlab_model::tokenizer::Tokenizer;

pub(crate) const INTRO: &str = "A pass key (a five-digit number) is hidden inside the text below. Find \
                         it and memorize it. I will ask you for the pass key.\n\n";
pub(crate) const QUESTION: &str = "\n\nWhat is the pass key? The pass key is";
/// The filler of the original passkey test.
pub(crate) const FILLER: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. \
                          There and back again. ";

fn needle(key: u32) -> String {
    format!("\n\nThe pass key is {key}. Remember it. {key} is the pass key.\n\n")
}

/// What the haystack is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaystackKind {
    /// A window of the corpus text.
    #[default]
    Corpus,
    /// [`FILLER`] repeated.
    Filler,
}

impl HaystackKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Corpus => "corpus",
            Self::Filler => "filler",
        }
    }
}

/// When the question reaches the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionMode {
    /// Part of the prefill (a cache that compresses at the end of prefill sees it, as
    /// SnapKV's observation window does).
    #[default]
    InPrompt,
    /// Fed after the context was prefilled (and compressed, for a cache that compresses).
    After,
}

impl QuestionMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::InPrompt => "in-prompt",
            Self::After => "after",
        }
    }
}

/// One haystack with its needle.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub depth_pct: u32,
    pub sample: usize,
    pub key: u32,
    /// The intro and the haystack with the needle: `length - question.len()` ids.
    pub context: Vec<u32>,
    pub question: Vec<u32>,
    /// Where the needle's ids are in `context`.
    pub needle: Range<usize>,
}

impl Case {
    /// Every prompt id: context then question.
    pub fn prompt(&self) -> Vec<u32> {
        [self.context.as_slice(), &self.question].concat()
    }
}

/// The tokenized pieces haystacks are cut from.
pub struct Haystacks {
    tokenizer: Tokenizer,
    intro: Vec<u32>,
    question: Vec<u32>,
    /// Corpus ids, or the filler repeated to the longest length asked.
    text: Vec<u32>,
    kind: HaystackKind,
    seed: u64,
}

impl Haystacks {
    /// `corpus` is the corpus text (read for [`HaystackKind::Corpus`]); `longest` the largest
    /// length a case will ask for.
    pub fn new(
        tokenizer: Tokenizer,
        kind: HaystackKind,
        corpus: &str,
        longest: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let encode = |s: &str| tokenizer.encode(s).map_err(|e| e.to_string());
        let (intro, question) = (encode(INTRO)?, encode(QUESTION)?);
        let text = match kind {
            HaystackKind::Corpus => encode(corpus)?,
            HaystackKind::Filler => {
                // Tokenized as one text, so the repeats join as they would in a prompt.
                let once = encode(FILLER)?.len().max(1);
                encode(&FILLER.repeat(longest / once + 2))?
            }
        };
        Ok(Self { tokenizer, intro, question, text, kind, seed })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Haystack ids a case of `length` tokens needs (the needle's length is that of a
    /// five-digit key's), or why it cannot be built.
    pub fn check(&self, length: usize) -> Result<(), String> {
        let needle = self.encode_needle(10_000)?.len();
        let fixed = self.intro.len() + needle + self.question.len();
        if length <= fixed {
            return Err(format!(
                "{length} tokens leave no haystack: the intro, needle and question take {fixed}"
            ));
        }
        let hay = length - fixed;
        if self.text.len() < hay {
            return Err(format!(
                "the {} holds {} tokens, a haystack of {length} tokens needs {hay}",
                self.kind.name(),
                self.text.len()
            ));
        }
        Ok(())
    }

    fn encode_needle(&self, key: u32) -> Result<Vec<u32>, String> {
        self.tokenizer.encode(&needle(key)).map_err(|e| e.to_string())
    }

    /// The case of `length` tokens with a key at `depth_pct` (0: right after the intro, 100:
    /// right before the question). The key depends on (seed, length, depth, sample); the
    /// haystack's window of the corpus on (seed, length, sample) only, so the depths of a
    /// sample share their text.
    pub fn case(&self, length: usize, depth_pct: u32, sample: usize) -> Result<Case, String> {
        self.check(length)?;
        let mix = |salt: u64| {
            self.seed
                ^ (length as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ (sample as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
                ^ salt
        };
        let key = ChaCha8Rng::seed_from_u64(mix(u64::from(depth_pct) << 32 | 1))
            .random_range(10_000..100_000);
        let needle = self.encode_needle(key)?;
        let hay = length - self.intro.len() - needle.len() - self.question.len();
        let start = match self.kind {
            HaystackKind::Corpus => {
                ChaCha8Rng::seed_from_u64(mix(2)).random_range(0..=self.text.len() - hay)
            }
            HaystackKind::Filler => 0,
        };
        let hay = &self.text[start..start + hay];
        let before = (hay.len() * depth_pct as usize + 50) / 100;
        let at = self.intro.len() + before;
        let context = [&self.intro, &hay[..before], &needle, &hay[before..]].concat();
        Ok(Case {
            depth_pct,
            sample,
            key,
            context,
            question: self.question.clone(),
            needle: at..at + needle.len(),
        })
    }
}

/// The first run of ASCII digits in a decoded answer ("" if none).
pub(crate) fn answer_digits(text: &str) -> String {
    text.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_digit_run_is_the_answer() {
        assert_eq!(answer_digits(" 71432. Remember it."), "71432");
        assert_eq!(answer_digits(" a key that unlocks"), "");
        assert_eq!(answer_digits("7143 2"), "7143");
    }
}

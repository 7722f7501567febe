//! SentencePiece-style tokenization from a GGUF's `tokenizer.ggml.model == "llama"` vocabulary
//! (Gemma 3): pieces with scores, merged greedily, bytes as `<0xXX>` fallback tokens.
//!
//! What llama.cpp does for such a vocabulary (`llm_tokenizer_spm` in `src/llama-vocab.cpp`),
//! rebuilt here from its description:
//! 1. The text is split around user-defined tokens (GGUF token type 4), which are matched whole
//!    (leftmost, longest first); control tokens are not matched in plain text.
//! 2. Each other fragment has its spaces replaced by `▁` (U+2581; a leading space is added only
//!    when `tokenizer.ggml.add_space_prefix` is true — Gemma's file says false), then is split
//!    into UTF-8 characters.
//! 3. Repeatedly, of all adjacent pairs whose concatenation is a vocabulary piece, the one with
//!    the highest score (ties: the leftmost) is merged, until no pair is a piece.
//! 4. Each remaining symbol is its piece's id; a symbol that is not a piece (a character
//!    outside the vocabulary) becomes one `<0xXX>` token per byte.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use aho_corasick::{AhoCorasick, MatchKind};

/// The SentencePiece vocabulary and its merge scores.
#[derive(Debug)]
pub(crate) struct Spm {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// `<0xXX>` tokens by byte value.
    bytes: [Option<u32>; 256],
    unk: Option<u32>,
    add_space_prefix: bool,
    /// Matches user-defined tokens in raw text; `None` when the vocabulary has none.
    user_defined: Option<(AhoCorasick, Vec<u32>)>,
}

/// A candidate merge of two adjacent symbols into one piece.
#[derive(Debug, PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Bytes of the merged text: a bigram whose symbols changed since it was queued is stale.
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// The heap pops the highest score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A run of the fragment's bytes, linked to its neighbours (merged-away symbols have `len` 0).
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    /// `tokens`, `scores` and `types` are the GGUF's parallel arrays.
    pub fn new(
        tokens: &[String],
        scores: &[f32],
        types: &[i32],
        unk: Option<u32>,
        add_space_prefix: bool,
        user_defined_type: i32,
    ) -> Self {
        let ids: HashMap<String, u32> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut bytes = [None; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            *slot = ids.get(&format!("<0x{b:02X}>")).copied();
        }
        let (patterns, pattern_ids): (Vec<&str>, Vec<u32>) = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (t, ty))| **ty == user_defined_type && !t.is_empty())
            .map(|(i, (t, _))| (t.as_str(), i as u32))
            .unzip();
        let user_defined = (!patterns.is_empty()).then(|| {
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("user-defined tokens form a valid automaton");
            (matcher, pattern_ids)
        });
        Self { ids, scores: scores.to_vec(), bytes, unk, add_space_prefix, user_defined }
    }

    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }

    /// Token ids of `text` (no BOS: the caller adds it).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = 0;
        if let Some((matcher, ids)) = &self.user_defined {
            for m in matcher.find_iter(text) {
                self.encode_fragment(&text[rest..m.start()], rest == 0, &mut out);
                out.push(ids[m.pattern().as_usize()]);
                rest = m.end();
            }
        }
        self.encode_fragment(&text[rest..], rest == 0, &mut out);
        out
    }

    fn encode_fragment(&self, fragment: &str, first: bool, out: &mut Vec<u32>) {
        if fragment.is_empty() {
            return;
        }
        let prefix = if self.add_space_prefix && first { "▁" } else { "" };
        let text = format!("{prefix}{}", fragment.replace(' ', "▁"));
        let mut symbols: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let n = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: n.checked_sub(1),
                next: (start + c.len_utf8() < text.len()).then_some(n + 1),
            });
        }
        let mut queue: BinaryHeap<Bigram> = BinaryHeap::new();
        for i in 1..symbols.len() {
            queue.extend(self.bigram(&text, &symbols, Some(i - 1), Some(i)));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.left].next = r.next;
            symbols[b.right].len = 0;
            if let Some(next) = r.next {
                symbols[next].prev = Some(b.left);
            }
            queue.extend(self.bigram(&text, &symbols, l.prev, Some(b.left)));
            queue.extend(self.bigram(&text, &symbols, Some(b.left), r.next));
        }
        let mut at = Some(0);
        while let Some(i) = at {
            let s = symbols[i];
            self.emit(&text, s.start, s.len, out);
            at = s.next;
        }
    }

    /// The merge of two adjacent symbols, if their concatenation is a piece. (Every merged
    /// symbol is a piece, so llama.cpp's re-segmentation of non-pieces only ever meets single
    /// characters, which become bytes here.)
    fn bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: Option<usize>,
        right: Option<usize>,
    ) -> Option<Bigram> {
        let (left, right) = (left?, right?);
        let (l, r) = (symbols[left], symbols[right]);
        let piece = &text[l.start..r.start + r.len];
        let id = *self.ids.get(piece)?;
        let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
        Some(Bigram { score, left, right, len: piece.len() })
    }

    /// A symbol's id, or its bytes as `<0xXX>` tokens (the unknown token where a byte has none).
    fn emit(&self, text: &str, start: usize, len: usize, out: &mut Vec<u32>) {
        let piece = &text[start..start + len];
        if let Some(&id) = self.ids.get(piece) {
            out.push(id);
            return;
        }
        for &byte in piece.as_bytes() {
            if let Some(id) = self.bytes[byte as usize].or(self.unk) {
                out.push(id);
            }
        }
    }

    /// Text of `ids`: pieces with `▁` back to spaces, byte tokens to their bytes.
    pub fn decode(&self, pieces: impl Iterator<Item = (u32, String)>) -> String {
        let mut bytes = Vec::new();
        for (id, piece) in pieces {
            match self.bytes.iter().position(|b| *b == Some(id)) {
                Some(byte) => bytes.push(byte as u8),
                None => bytes.extend_from_slice(piece.replace('▁', " ").as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: merges prefer "▁th" + "e" over "▁" + "the".
    fn toy() -> Spm {
        let pieces = [
            ("<unk>", 0.0, 2),
            ("<0x41>", 0.0, 6),
            ("<0xC3>", 0.0, 6),
            ("<0xA9>", 0.0, 6),
            ("▁", -1.0, 1),
            ("t", -2.0, 1),
            ("h", -2.0, 1),
            ("e", -2.0, 1),
            ("▁t", -3.0, 1),
            ("th", -1.5, 1),
            ("▁th", -0.5, 1),
            ("▁the", -0.1, 1),
            ("<b>", 0.0, 4),
        ];
        let tokens: Vec<String> = pieces.iter().map(|p| p.0.to_string()).collect();
        let scores: Vec<f32> = pieces.iter().map(|p| p.1).collect();
        let types: Vec<i32> = pieces.iter().map(|p| p.2).collect();
        Spm::new(&tokens, &scores, &types, Some(0), false, 4)
    }

    #[test]
    fn merges_by_score_then_falls_back_to_bytes() {
        let spm = toy();
        // " the": ▁ t h e → (th: -1.5 beats ▁t: -3) ▁ th e → ▁th (-0.5) e → ▁the.
        assert_eq!(spm.encode(" the"), vec![11]);
        // "A" is not a piece: its byte token; "é" (C3 A9) two byte tokens; "x" has no byte token:
        // unknown.
        assert_eq!(spm.encode("Aé"), vec![1, 2, 3]);
        assert_eq!(spm.encode("x"), vec![0]);
        // A user-defined token is matched whole, between fragments.
        assert_eq!(spm.encode("th<b> the"), vec![9, 12, 11]);
    }

    #[test]
    fn decode_restores_spaces_and_bytes() {
        let spm = toy();
        let pieces = [(11, "▁the".to_string()), (2, "<0xC3>".into()), (3, "<0xA9>".into())];
        assert_eq!(spm.decode(pieces.into_iter()), " theé");
    }
}

//! Id files (`runner generate --ids-file`, `--ids`): ids separated by commas and whitespace,
//! then huge and negative numbers, other separators, signs, garbage and non-ASCII text.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use runner::error_line::error_line;
use runner::tools::parse_ids;

use crate::harness::Target;
use crate::mutate::{self, interesting_number_text};

/// Every id is at least 2 bytes (`0,`) and becomes a 4-byte `u32`; a growing `Vec` holds up to
/// twice that: 4 bytes per input byte, so 8; an error quotes the bad id (at most the input).
const BYTES_PER_INPUT_BYTE: usize = 8;
const FIXED_BYTES: usize = 4 << 10;

#[derive(Debug)]
pub struct Ids;

impl Target for Ids {
    fn name(&self) -> &'static str {
        "ids"
    }

    fn input(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        const SEPARATORS: [&str; 9] = [",", ", ", " ", "\n", "\t", ",,", "\r\n", ";", "\u{a0}"];
        let mut text = String::new();
        for i in 0..rng.random_range(0..40) {
            if i > 0 {
                let sep =
                    if rng.random_bool(0.9) { 0 } else { rng.random_range(0..SEPARATORS.len()) };
                text += SEPARATORS[sep];
            }
            if rng.random_bool(0.9) {
                text += &rng.random_range(0..50_000u32).to_string();
            } else {
                text += &interesting_number_text(rng);
            }
        }
        let mut bytes = text.into_bytes();
        if rng.random_bool(0.3) {
            mutate::bytes(rng, &mut bytes, 3);
        }
        bytes
    }

    /// As `--ids-file` reads it: text (a file that is not UTF-8 is refused when read), then
    /// `parse_ids`, the error printed as the runner prints it.
    fn parse(&self, input: Vec<u8>) -> Result<(), Vec<String>> {
        let text = String::from_utf8(input).map_err(|e| vec![format!("fuzz.ids: {e}")])?;
        parse_ids(&text).map(drop).map_err(|e| vec![error_line(&e)])
    }

    fn budget(&self, len: usize) -> usize {
        BYTES_PER_INPUT_BYTE * len + FIXED_BYTES
    }
}

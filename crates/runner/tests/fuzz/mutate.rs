//! Byte-level mutations shared by every target, and the boundary numbers structure-aware
//! generators put where a count, length or value belongs.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A number near a boundary a parser might mishandle, or a nearby one of `honest`.
pub fn interesting_u64(rng: &mut ChaCha8Rng, honest: u64) -> u64 {
    match rng.random_range(0..14) {
        0 => 0,
        1 => 1,
        2 => honest.wrapping_sub(1),
        3 => honest.wrapping_add(1),
        4 => honest.wrapping_mul(2),
        5 => 1 << 31,
        6 => u32::MAX as u64,
        7 => 1 << 32,
        8 => 1 << 40,
        9 => 1 << 60,
        10 => 1 << 63,
        11 => u64::MAX,
        12 => rng.random_range(0..1 << 16),
        _ => rng.random(),
    }
}

/// Text a number field might hold instead of a plain small number.
pub fn interesting_number_text(rng: &mut ChaCha8Rng) -> String {
    const WORDS: [&str; 24] = [
        "0",
        "-1",
        "-0",
        "1",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999999999",
        "1e308",
        "1e309",
        "-1e309",
        "NaN",
        "inf",
        "-inf",
        "0.5",
        "1.5e3",
        "0x10",
        "1_000",
        "+7",
        " 3 ",
        "",
    ];
    match rng.random_range(0..4) {
        0 => rng.random::<u64>().to_string(),
        1 => format!("-{}", rng.random_range(0..1u64 << 40)),
        _ => WORDS[rng.random_range(0..WORDS.len())].to_string(),
    }
}

/// Applies 1–`max` random byte-level mutations: bit flips, overwritten bytes, boundary
/// integers written over the data, deleted, duplicated or inserted ranges, truncation.
pub fn bytes(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, max: usize) {
    for _ in 0..rng.random_range(1..=max) {
        let len = data.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..8) {
            0 if len > 0 => data[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => data[at] = rng.random(),
            2 => {
                let v = interesting_u64(rng, 0).to_le_bytes();
                let n = [1, 2, 4, 8][rng.random_range(0..4)].min(len - at.min(len));
                data[at..at + n].copy_from_slice(&v[..n]);
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + rng.random_range(1..=32)).min(len);
                let chunk = data[at..end].to_vec();
                data.splice(at..at, chunk);
            }
            5 => {
                let extra: Vec<u8> = (0..rng.random_range(1..=8)).map(|_| rng.random()).collect();
                data.splice(at..at, extra);
            }
            6 => data.truncate(at),
            _ => {
                // A printable character a text format gives meaning to.
                const SPECIAL: &[u8] = b"\n\r\t ,.\"'=[]{}#-+_:;\\\x00\xff";
                let c = SPECIAL[rng.random_range(0..SPECIAL.len())];
                data.insert(at, c);
            }
        }
    }
}

//! Text from a user's file quoted in an error: control characters escaped, so the error stays
//! the one line the project promises for bad input.

/// `s` with its control characters escaped as `char::escape_debug` writes them (`\n` for a
/// newline, `\0` for a NUL), everything else as it is: keys, names and values read from files
/// are arbitrary UTF-8.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("a\nb\r\u{0}c"), "a\\nb\\r\\0c");
        assert_eq!(printable("blk.0 'é' \"x\""), "blk.0 'é' \"x\"");
    }
}

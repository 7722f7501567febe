//! File-name-safe forms of labels (model names, paths) in chart file names.

/// A file-name-safe form of a label.
pub(super) fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_letters_digits_and_dashes() {
        assert_eq!(slug("smollm2-135m"), "smollm2-135m");
        assert_eq!(slug("models/tiny model.gguf"), "models_tiny_model_gguf");
    }
}

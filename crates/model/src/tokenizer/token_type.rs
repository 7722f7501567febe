//! The GGUF token types that the builders treat specially (`tokenizer.ggml.token_type`).

/// GGUF token type of control tokens (`<|im_start|>` ...).
pub(super) const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens.
pub(super) const TOKEN_TYPE_USER_DEFINED: i32 = 4;

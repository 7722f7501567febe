//! The error of loading an experiment, in a leaf file that loading, validation and the fit
//! checks all use.

use std::fmt;

/// Validation errors, one line each, every line naming the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid(pub Vec<String>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Invalid {}

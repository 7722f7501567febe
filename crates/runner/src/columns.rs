//! The columns every result CSV starts with, shared by the writers and the report.

/// The columns every CSV starts with, before the axis columns.
pub(crate) const PREFIX: &[&str] = &["experiment", "run_id", "git_commit", "backend", "device"];

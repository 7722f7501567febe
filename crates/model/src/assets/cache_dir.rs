//! Where assets are cached, and the environment variables that point kvlab elsewhere.

use std::path::{Path, PathBuf};

/// Environment variable naming the cache directory.
pub const CACHE_ENV: &str = "KVLAB_CACHE_DIR";
/// Environment variable naming a local `.gguf` to use instead of the fetched one.
pub const MODEL_ENV: &str = "KVLAB_MODEL";

/// The cache directory: `override_dir`, else `$KVLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/kvlab`,
/// else `$HOME/.cache/kvlab`, else `./.kvlab-cache`.
pub fn cache_dir(override_dir: Option<&Path>) -> PathBuf {
    if let Some(p) = override_dir {
        return p.to_path_buf();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = env(CACHE_ENV) {
        return p;
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return p.join("kvlab");
    }
    if let Some(p) = env("HOME") {
        return p.join(".cache").join("kvlab");
    }
    PathBuf::from(".kvlab-cache")
}

//! Where the tool keeps files between runs, as the XDG Base Directory Specification says.

use std::path::PathBuf;

/// `$<variable>/omx-ecr-helper/<name>` (e.g. `XDG_CACHE_HOME`), else
/// `$HOME/<default_under_home>/omx-ecr-helper/<name>` (e.g. `.cache`), the specification's
/// default; `None` when neither variable is set.
pub fn tool_dir(variable: &str, default_under_home: &str, name: &str) -> Option<PathBuf> {
    let base = std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|value| !value.is_empty())
                .map(|home| PathBuf::from(home).join(default_under_home))
        })?;
    Some(base.join("omx-ecr-helper").join(name))
}

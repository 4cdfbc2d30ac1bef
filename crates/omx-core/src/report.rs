//! What happened to each image, in the shape the original tool's outputs used.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::EntryError;

/// The end state of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageStatus {
    /// The target already held the image; nothing was transferred.
    Skipped,
    Succeeded,
    Failed,
    /// A dry run found work to do and did none of it.
    Planned,
}

/// One image's line of a run report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReport {
    pub input: String,
    pub source: String,
    pub target: String,
    /// The manifest digest in the target registry, once known.
    pub digest: Option<Digest>,
    pub status: ImageStatus,
    pub message: String,
}

/// A whole run: every planned image, and the entries that could not be planned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub images: Vec<ImageReport>,
    pub errors: Vec<EntryError>,
}

impl RunReport {
    pub fn count(&self, status: ImageStatus) -> usize {
        self.images.iter().filter(|i| i.status == status).count()
    }

    /// True when every image succeeded or was skipped and every entry was valid.
    pub fn all_ok(&self) -> bool {
        self.errors.is_empty() && self.count(ImageStatus::Failed) == 0
    }
}

/// An error and its causes on one line (`outer: cause: root cause`), as reports show them; a
/// cause whose text its parent already repeats is not said twice. Reports are shared and shown
/// on terminals: credentials in the chain (a URL's query, a userinfo) are redacted and control
/// characters escaped, whichever layer let them in.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    crate::excerpt::escape(&crate::secret::redact(&message)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("copy failed: inner cause")]
    struct Repeating(#[source] Inner);

    #[test]
    fn error_chains_read_as_one_line_without_saying_a_cause_twice() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner cause");
        assert_eq!(error_chain(&Repeating(Inner)), "copy failed: inner cause");
    }
}

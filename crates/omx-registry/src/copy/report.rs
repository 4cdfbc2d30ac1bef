//! What a copy hands back: the [`CopyReport`] of one that succeeded, with the
//! [`CopyWarning`]s the user should read, or the [`CopyError`] that says which part failed.

use std::fmt;

use omx_core::{Digest, Reference};

use crate::error::RegistryError;
use omx_core::Platform;

/// What one copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub source: Reference,
    /// The target with the tag that was written (the source's when the target named none).
    pub target: Reference,
    /// The digest the target now has: the source's, unless a platform was selected from an index.
    pub digest: Digest,
    /// The digest the source reference resolved to.
    pub source_digest: Digest,
    pub media_type: String,
    /// Blob bytes uploaded (not counting skipped or mounted blobs).
    pub bytes_copied: u64,
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
    pub blobs_mounted: usize,
    /// Manifests written, child manifests of an index included.
    pub manifests_pushed: usize,
    /// The target already had this exact image under this name; nothing was transferred.
    pub up_to_date: bool,
    /// The target said it holds `digest` under the name written (the push's
    /// `Docker-Content-Digest`, or the up-to-date check): reading it back would tell nothing new.
    pub confirmed_by_target: bool,
    pub warnings: Vec<CopyWarning>,
}

/// Something the user should know about a copy that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyWarning {
    /// HealthOmics runs x86_64 only; this image cannot run there.
    NoLinuxAmd64 {
        image: String,
        platforms: Vec<Platform>,
    },
    /// One platform was taken out of an index, so the target digest is not the source's.
    PlatformSelected {
        platform: Platform,
        index_digest: Digest,
        manifest_digest: Digest,
    },
}

impl fmt::Display for CopyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyWarning::NoLinuxAmd64 { image, platforms } => {
                let list: Vec<String> = platforms.iter().map(Platform::to_string).collect();
                write!(
                    f,
                    "{image} has no linux/amd64 image ({}); HealthOmics runs only x86_64",
                    if list.is_empty() {
                        "platform unknown".to_string()
                    } else {
                        format!("it has {}", list.join(", "))
                    }
                )
            }
            CopyWarning::PlatformSelected {
                platform,
                index_digest,
                manifest_digest,
            } => write!(
                f,
                "copied only {platform}: the target digest {manifest_digest} differs from the \
                 source index digest {index_digest}"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("source image {image} not found")]
    SourceNotFound {
        image: String,
        #[source]
        source: RegistryError,
    },
    #[error("cannot read source image {image}")]
    Source {
        image: String,
        #[source]
        source: RegistryError,
    },
    #[error("copying {image}: blob {digest} failed")]
    Blob {
        image: String,
        digest: Digest,
        #[source]
        source: RegistryError,
    },
    #[error("copying {image}: cannot push manifest to {target}")]
    Push {
        image: String,
        target: String,
        #[source]
        source: RegistryError,
    },
    #[error("image {image} has no {platform} variant (available: {available})")]
    PlatformNotFound {
        image: String,
        platform: Platform,
        available: String,
    },
    #[error("copying {image}: {reason}")]
    Invalid { image: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_explain_themselves() {
        let warning = CopyWarning::NoLinuxAmd64 {
            image: "docker.io/library/x:1".into(),
            platforms: vec![Platform::new("linux", "arm64", None)],
        };
        let text = warning.to_string();
        assert!(
            text.contains("linux/arm64") && text.contains("x86_64"),
            "{text}"
        );
    }
}

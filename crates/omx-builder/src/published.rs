//! What the target registry already holds under a tag: its digest and the source digest its
//! image config records, read through the registry API (the same for ECR and any registry).

use omx_core::{Digest, Reference};
use omx_registry::{
    ManifestKind, ManifestRef, Platform, RegistryClient, RegistryError, Repository,
};

/// The image config label that records the source digest of a build.
pub const SOURCE_DIGEST_LABEL: &str = "org.omx-ecr-helper.source-digest";

/// Image configs are small; this bounds what a broken registry can make us hold in memory.
const MAX_CONFIG_BYTES: usize = 8 * 1024 * 1024;

/// An image the target already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The manifest (or index) digest the tag points at.
    pub digest: Digest,
    /// The [`SOURCE_DIGEST_LABEL`] of the image for `platform`, if it carries one.
    pub source_digest: Option<String>,
}

/// Looks up `image` (a tag): `None` when it does not exist. For a multi-platform index, the
/// label is read from the image for `platform`.
pub async fn published(
    client: &RegistryClient,
    image: &Reference,
    platform: &Platform,
) -> Result<Option<Published>, RegistryError> {
    let Some(head) = client.head_manifest(image).await? else {
        return Ok(None);
    };
    let repository = Repository::of(image);
    let mut manifest = client
        .get_manifest_in(&repository, ManifestRef::Digest(&head.digest))
        .await?;
    if let ManifestKind::Index(index) = &manifest.kind {
        let chosen = platform
            .select(index.platforms())
            .and_then(|position| {
                index
                    .manifests
                    .iter()
                    .filter(|child| child.platform.is_some())
                    .nth(position)
            })
            .map(|child| child.digest.clone());
        let Some(child) = chosen else {
            return Ok(Some(Published {
                digest: head.digest,
                source_digest: None,
            }));
        };
        manifest = client
            .get_manifest_in(&repository, ManifestRef::Digest(&child))
            .await?;
    }
    let ManifestKind::Image(image_manifest) = &manifest.kind else {
        return Ok(Some(Published {
            digest: head.digest,
            source_digest: None,
        }));
    };
    let config = client
        .get_blob_bytes(&repository, &image_manifest.config.digest, MAX_CONFIG_BYTES)
        .await?;
    Ok(Some(Published {
        digest: head.digest,
        source_digest: source_digest_label(&config),
    }))
}

/// The label from an image config document (`config.Labels`), if present.
pub fn source_digest_label(config: &[u8]) -> Option<String> {
    let config: serde_json::Value = serde_json::from_slice(config).ok()?;
    config
        .get("config")?
        .get("Labels")?
        .get(SOURCE_DIGEST_LABEL)?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_label_from_an_image_config() {
        let config = br#"{"architecture": "amd64", "config": {"Labels":
            {"org.omx-ecr-helper.source-digest": "sha256:abc", "other": "x"}}}"#;
        assert_eq!(source_digest_label(config), Some("sha256:abc".into()));
        for without in [
            &br#"{"config": {"Labels": null}}"#[..],
            br#"{"config": {}}"#,
            br#"{}"#,
            b"not json",
        ] {
            assert_eq!(source_digest_label(without), None);
        }
    }
}

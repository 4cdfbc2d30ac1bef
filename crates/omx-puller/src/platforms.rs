//! What platforms an image runs on: its index's children, or its config's `os` and
//! `architecture`. `verify` and `lock` both ask, since HealthOmics runs linux/amd64 only.

use omx_core::{Platform, Repository};
use omx_registry::{ManifestKind, RegistryClient};

/// The largest image config read to learn its platform.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// What an image runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platforms {
    /// A multi-platform index (else a single image).
    pub index: bool,
    pub platforms: Vec<Platform>,
}

impl Platforms {
    pub fn has_linux_amd64(&self) -> bool {
        self.platforms.iter().any(Platform::is_linux_amd64)
    }
}

impl std::fmt::Display for Platforms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        match (self.index, names.as_slice()) {
            (true, []) => f.write_str("an index that names no platform"),
            (true, names) => write!(f, "an index of {}", names.join(", ")),
            (false, names) => write!(f, "a {} image", names.join(", ")),
        }
    }
}

/// The platforms of the manifest `manifest` names in `repository`: one manifest GET, and for a
/// single image one read of its config blob.
pub async fn platforms_of(
    client: &RegistryClient,
    repository: &Repository,
    manifest: omx_registry::ManifestRef<'_>,
) -> Result<Platforms, String> {
    let manifest = client
        .get_manifest_in(repository, manifest)
        .await
        .map_err(|e| e.to_string())?;
    match manifest.kind {
        ManifestKind::Index(index) => Ok(Platforms {
            index: true,
            platforms: index.platforms().into_iter().cloned().collect(),
        }),
        ManifestKind::Image(image) => {
            let config = client
                .get_blob_bytes(repository, &image.config.digest, MAX_CONFIG_BYTES)
                .await
                .map_err(|e| e.to_string())?;
            let platform: Platform = serde_json::from_slice(&config)
                .map_err(|e| format!("the image config is not readable: {e}"))?;
            if platform.os.is_empty() || platform.architecture.is_empty() {
                return Err("the image config names no os and architecture".to_string());
            }
            Ok(Platforms {
                index: false,
                platforms: vec![platform],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_described_for_people() {
        let describe = |index, platforms: &[Platform]| {
            Platforms {
                index,
                platforms: platforms.to_vec(),
            }
            .to_string()
        };
        let arm64 = Platform::new("linux", "arm64", None);
        assert_eq!(describe(true, &[]), "an index that names no platform");
        assert_eq!(
            describe(false, std::slice::from_ref(&arm64)),
            "a linux/arm64 image"
        );
        assert_eq!(describe(true, &[arm64]), "an index of linux/arm64");
        assert_eq!(
            describe(
                true,
                &[
                    Platform::new("linux", "amd64", None),
                    Platform::new("linux", "arm64", Some("v8"))
                ]
            ),
            "an index of linux/amd64, linux/arm64/v8"
        );
    }
}

//! Which image of the source is copied, and what the choice warns about: with a platform
//! asked for, that platform's child of an index (or the single image, if it is that platform);
//! without, the whole index or image, with a warning when nothing in it runs on linux/amd64
//! (HealthOmics runs x86_64 only).

use super::report::{CopyError, CopyWarning};
use super::{CopyEngine, ImageJob};
use crate::manifest::{media_type, ConfigPlatform, ImageManifest, Manifest, ManifestKind};
use omx_core::Platform;

/// Configs are read to learn a single-platform image's platform; real ones are a few KiB.
const MAX_CONFIG_SIZE: usize = 4 * 1024 * 1024;

impl CopyEngine {
    /// The manifest to copy out of the source's `top` one, and the warnings the choice earns.
    pub(super) async fn select_image(
        &self,
        job: &ImageJob<'_>,
        top: &Manifest,
    ) -> Result<(Manifest, Vec<CopyWarning>), CopyError> {
        let mut warnings = Vec::new();
        let selected = match (&top.kind, &self.options.platform) {
            (ManifestKind::Index(index), Some(platform)) => {
                let candidates: Vec<Platform> = index
                    .manifests
                    .iter()
                    .map(|d| {
                        d.platform
                            .clone()
                            .unwrap_or_else(|| Platform::new("", "", None))
                    })
                    .collect();
                let chosen =
                    platform
                        .select(&candidates)
                        .ok_or_else(|| CopyError::PlatformNotFound {
                            image: job.image.clone(),
                            platform: platform.clone(),
                            available: describe_platforms(index.platforms()),
                        })?;
                let child = self.fetch_child(job, &index.manifests[chosen]).await?;
                warnings.push(CopyWarning::PlatformSelected {
                    platform: candidates[chosen].clone(),
                    index_digest: top.digest.clone(),
                    manifest_digest: child.digest.clone(),
                });
                child
            }
            (ManifestKind::Index(index), None) => {
                let platforms: Vec<Platform> = index
                    .platforms()
                    .into_iter()
                    .filter(|p| p.os != "unknown")
                    .cloned()
                    .collect();
                if !platforms.iter().any(Platform::is_linux_amd64) {
                    warnings.push(CopyWarning::NoLinuxAmd64 {
                        image: job.image.clone(),
                        platforms,
                    });
                }
                top.clone()
            }
            (ManifestKind::Image(image), filter) => {
                let platform = self.image_platform(job, image).await;
                if let (Some(filter), Some(actual)) = (filter, &platform) {
                    if !filter.matches(actual) {
                        return Err(CopyError::PlatformNotFound {
                            image: job.image.clone(),
                            platform: filter.clone(),
                            available: actual.to_string(),
                        });
                    }
                }
                if let Some(actual) = platform.filter(|p| !p.is_linux_amd64()) {
                    warnings.push(CopyWarning::NoLinuxAmd64 {
                        image: job.image.clone(),
                        platforms: vec![actual],
                    });
                }
                top.clone()
            }
        };
        Ok((selected, warnings))
    }

    /// The platform recorded in a single-platform image's config, when it can be read.
    /// Failure to read it is not an error here: copying the config blob reports the real cause.
    async fn image_platform(&self, job: &ImageJob<'_>, image: &ImageManifest) -> Option<Platform> {
        let config = &image.config;
        let is_image_config = config.media_type == media_type::DOCKER_CONFIG
            || config.media_type == media_type::OCI_CONFIG;
        if !is_image_config || config.size > MAX_CONFIG_SIZE as u64 {
            return None;
        }
        let bytes = self
            .client
            .get_blob_bytes(&job.source, &config.digest, MAX_CONFIG_SIZE)
            .await
            .ok()?;
        job.fetched_configs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(config.digest.clone(), bytes.clone());
        let parsed: ConfigPlatform = serde_json::from_slice(&bytes).ok()?;
        Some(Platform::from(parsed)).filter(|p| !p.os.is_empty() && !p.architecture.is_empty())
    }
}

fn describe_platforms(platforms: Vec<&Platform>) -> String {
    if platforms.is_empty() {
        return "no platforms declared".to_string();
    }
    platforms
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

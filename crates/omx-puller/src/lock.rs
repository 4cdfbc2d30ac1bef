//! `lock`: every image of a pull plan resolved upstream to the digest its tag points at now, and
//! `lock --check`: whether the tags of a locked manifest still point at their pins.
//!
//! A tag is resolved with a manifest `HEAD` (the four manifest types accepted), which reads
//! `Docker-Content-Digest`: Docker Hub counts manifest GETs as pulls, not HEADs (Docker docs,
//! content/manuals/docker-hub/usage/pulls.md, "Definition of a pull"; containers/image #1078
//! switched to HEAD for this). Only when the registry names no digest on `HEAD` is the manifest
//! fetched and hashed ([`RegistryClient::head_manifest_in`]). The platform check then reads the
//! manifest once by digest (and a single image's config blob): HealthOmics runs linux/amd64 only
//! (HealthOmics user guide, "Container images for private workflows").

use std::collections::HashMap;

use omx_core::lock::{pinned_spelling, LockReport, LockStatus, LockedEntry};
use omx_core::manifest_file::{shown_input, PullEntry};
use omx_core::namespace::NamespaceTable;
use omx_core::pull_plan::{PlannedImage, PullPlan};
use omx_core::report::error_chain;
use omx_core::Digest;
use omx_registry::{ManifestDescriptor, ManifestRef, RegistryClient, Repository};

use crate::platforms::{platforms_of, Platforms};
use crate::puller::reports_in_order;

/// Resolves the images of plans upstream, with read calls only.
pub struct Locker {
    client: RegistryClient,
    table: NamespaceTable,
    concurrency: usize,
}

/// What one image resolved to, before it is written out per manifest entry.
struct Resolution {
    digest: Option<Digest>,
    pinned: Option<Digest>,
    media_type: Option<String>,
    platforms: Vec<String>,
    status: LockStatus,
    reason: String,
}

impl Resolution {
    fn failed(reason: String) -> Resolution {
        Resolution {
            digest: None,
            pinned: None,
            media_type: None,
            platforms: Vec::new(),
            status: LockStatus::Failed,
            reason,
        }
    }
}

impl Locker {
    /// `client` reaches the source registries with their credentials; `table` is the one the plan
    /// was made with (it tells whether an entry named a tag).
    pub fn new(client: RegistryClient, table: NamespaceTable, concurrency: usize) -> Locker {
        Locker {
            client,
            table,
            concurrency,
        }
    }

    /// Pins every entry: a tag gets the digest it points at upstream, a digest is checked to
    /// exist; either must offer linux/amd64. One report entry per manifest entry, in order.
    pub async fn lock(&self, plan: &PullPlan, entries: &[PullEntry]) -> LockReport {
        let resolved = reports_in_order(&plan.images, self.concurrency, |image| {
            self.lock_image(image)
        })
        .await;
        self.report(plan, entries, resolved, true)
    }

    /// Re-resolves the tag of every pinned entry: `Moved` when it points elsewhere now.
    pub async fn check(&self, plan: &PullPlan, entries: &[PullEntry]) -> LockReport {
        let resolved = reports_in_order(&plan.images, self.concurrency, |image| {
            self.check_image(image)
        })
        .await;
        self.report(plan, entries, resolved, false)
    }

    async fn lock_image(&self, image: &PlannedImage) -> Resolution {
        let source = &image.source;
        let repository = Repository::of(source);
        let found = match self.head(&repository, ManifestRef::of(source)).await {
            Ok(found) => found,
            Err(reason) => return Resolution::failed(reason),
        };
        let platforms = platforms_of(
            &self.client,
            &repository,
            ManifestRef::Digest(&found.digest),
        )
        .await;
        let (status, reason, platforms) = match platforms {
            Ok(platforms) if platforms.has_linux_amd64() => {
                let status = match source.digest() {
                    Some(_) => LockStatus::Kept,
                    None => LockStatus::Locked,
                };
                (status, platforms.to_string(), names(&platforms))
            }
            Ok(platforms) => (
                LockStatus::Failed,
                format!("{platforms}; HealthOmics runs linux/amd64 only"),
                names(&platforms),
            ),
            Err(reason) => (LockStatus::Failed, reason, Vec::new()),
        };
        Resolution {
            digest: Some(found.digest),
            pinned: None,
            media_type: Some(found.media_type),
            platforms,
            status,
            reason,
        }
    }

    async fn check_image(&self, image: &PlannedImage) -> Resolution {
        let source = &image.source;
        let Some(pinned) = source.digest() else {
            return Resolution::failed(
                "not pinned to a digest: run `omx-ecr-helper lock` on the manifest first"
                    .to_string(),
            );
        };
        let repository = Repository::of(source);
        // A digest alone cannot move; it only has to still exist.
        let follow = match source.tag() {
            Some(tag) => ManifestRef::Tag(tag),
            None => ManifestRef::Digest(pinned),
        };
        let found = match self.head(&repository, follow).await {
            Ok(found) => found,
            Err(reason) => return Resolution::failed(reason),
        };
        let (status, reason) = match (&found.digest == pinned, source.tag()) {
            (true, Some(tag)) => (
                LockStatus::Unchanged,
                format!("{tag} still points at the pin"),
            ),
            (true, None) => (LockStatus::Unchanged, "pinned by digest only".to_string()),
            (false, tag) => (
                LockStatus::Moved,
                format!(
                    "{} now points at {}, the lock pins {pinned}",
                    tag.unwrap_or_default(),
                    found.digest
                ),
            ),
        };
        Resolution {
            digest: Some(found.digest),
            pinned: Some(pinned.clone()),
            media_type: Some(found.media_type),
            platforms: Vec::new(),
            status,
            reason,
        }
    }

    /// The manifest `manifest` names, or why there is none.
    async fn head(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
    ) -> Result<ManifestDescriptor, String> {
        match self.client.head_manifest_in(repository, manifest).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(format!(
                "source image {repository}{} does not exist",
                match manifest {
                    ManifestRef::Tag(tag) => format!(":{tag}"),
                    ManifestRef::Digest(digest) => format!("@{digest}"),
                }
            )),
            Err(error) => Err(error_chain(&error)),
        }
    }

    /// One entry per manifest entry, in manifest order: merged duplicates each get their own,
    /// with their own spelling; entries the plan refused are failures written back unchanged.
    fn report(
        &self,
        plan: &PullPlan,
        entries: &[PullEntry],
        resolved: Vec<Resolution>,
        pin: bool,
    ) -> LockReport {
        let inputs: HashMap<usize, &str> = entries
            .iter()
            .map(|entry| (entry.index, entry.input.as_str()))
            .collect();
        let mut out: Vec<LockedEntry> = plan
            .errors
            .iter()
            .map(|error| {
                let input = inputs.get(&error.index).copied().unwrap_or(&error.input);
                LockedEntry::invalid(error, input)
            })
            .collect();
        for (image, resolution) in plan.images.iter().zip(resolved) {
            for &index in &image.indexes {
                let input = inputs.get(&index).copied().unwrap_or(&image.input);
                let locked = match (&resolution.digest, resolution.status, pin) {
                    (Some(digest), LockStatus::Locked, true) => {
                        pinned_spelling(input, self.names_tag(input), digest)
                    }
                    _ => input.trim().to_string(),
                };
                out.push(LockedEntry {
                    index,
                    input: shown_input(input.trim()),
                    source: image.source.to_string(),
                    tag: image.source.tag().map(str::to_string),
                    digest: resolution.digest.clone(),
                    pinned: resolution.pinned.clone(),
                    media_type: resolution.media_type.clone(),
                    platforms: resolution.platforms.clone(),
                    status: resolution.status,
                    reason: resolution.reason.clone(),
                    locked,
                });
            }
        }
        out.sort_by_key(|entry| entry.index);
        LockReport { entries: out }
    }

    /// Whether the user wrote a tag (else `latest` was implied).
    fn names_tag(&self, input: &str) -> bool {
        self.table
            .parse_source(input)
            .is_ok_and(|reference| !reference.is_implicit_latest())
    }
}

fn names(platforms: &Platforms) -> Vec<String> {
    platforms
        .platforms
        .iter()
        .map(ToString::to_string)
        .collect()
}

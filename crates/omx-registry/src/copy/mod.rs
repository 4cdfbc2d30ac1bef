//! The copy engine: image (or whole multi-arch index) from one repository to another, digests
//! preserved, blobs streamed and verified, each blob transferred at most once per run.
//!
//! One concern per file:
//! - `mod.rs` (here): options, the engine, and one image's copy from top to bottom: read the
//!   source manifest, choose what to copy, copy what it refers to (child manifests of an
//!   index, recursively), push the manifests once everything they refer to is there.
//! - `select.rs`: which image (platform) is copied, and the warnings that choice earns.
//! - `blob.rs`: each blob's way into the target (present, mounted or uploaded), the record of
//!   which repositories hold which blob, and the retry of a blob's transfer.
//! - `blob_locations.rs`: the model of where earlier runs saw each blob (bounded, mergeable,
//!   its file format); `blob_cache.rs`: that cache's file, read at the start, saved at the end.
//! - `upload.rs`: one blob's bytes from source to target, streamed or in chunks, with progress.
//! - `stream.rs`: the verifying stream that keeps a bad blob from ever being committed.
//! - `report.rs`: what a copy returns: report, warnings, errors.

mod blob;
mod blob_cache;
mod blob_locations;
mod referrers;
mod report;
mod select;
mod stream;
mod transfer_slot;
mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::{try_join_all, BoxFuture};
use omx_core::{Digest, Reference};
use tokio::sync::Semaphore;

use crate::client::{ManifestDescriptor, ManifestRef, RegistryClient, Repository};
use crate::manifest::{Descriptor, Manifest, ManifestKind};
use crate::progress::{ImageId, ProgressEvent, ProgressSink};
use crate::transport::ErrorChain;
use blob::BlobHomes;
use omx_core::Platform;

pub use blob_cache::BlobCache;
pub use report::{CopyError, CopyReport, CopyWarning};

/// Indexes nest (an index of indexes) only in exotic images; deeper than this is a loop or abuse.
const MAX_INDEX_DEPTH: usize = 4;
/// Pushes of one manifest refused over its references (see `push_manifest`) before giving up.
const MANIFEST_REFERENCE_ATTEMPTS: u32 = 4;

/// What a caller already found out about one copy, so that the engine does not ask again.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The source's manifest or index, as fetched (verified) from the source reference.
    pub source: Option<Manifest>,
    /// What the target holds under the name the copy writes: `Some(None)` for nothing.
    pub target: Option<Option<ManifestDescriptor>>,
}

/// How the engine copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Blob transfers (HEAD, mount or upload) in flight at once, across all images. An upload
    /// whose bytes are all sent gives its place up while the registry commits it.
    pub jobs: usize,
    /// Copy only this platform's image out of a multi-arch index (the target then gets that
    /// child manifest, whose digest differs from the index's).
    pub platform: Option<Platform>,
    /// Upload in `PATCH` chunks of this many bytes (holding one chunk in memory) instead of one
    /// streaming `PUT`, for registries that need it.
    pub chunk_size: Option<u64>,
    /// Try cross-repository mounts when the target registry already holds a blob elsewhere.
    pub mount: bool,
    /// The target registry mounts a blob only from a repository where a manifest references it
    /// (ECR: aws/containers-roadmap #2860; ECR user guide, "Blob mounting"). A copy then waits a
    /// little for another image of the run to push its manifest instead of uploading a shared
    /// layer again.
    pub mount_needs_manifest: bool,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            jobs: 4,
            platform: None,
            chunk_size: None,
            mount: true,
            mount_needs_manifest: false,
        }
    }
}

/// Copies images between registries. One engine is one run: it remembers which blobs it has
/// put where, so concurrent copies sharing layers transfer each layer once and mount it after.
pub struct CopyEngine {
    client: RegistryClient,
    options: CopyOptions,
    blob_permits: Semaphore,
    /// Manifest pushes in flight, bounded like blob transfers: registries rate-limit them (ECR's
    /// PutImage: 10/s by default, ECR service quotas), and many images finishing together would
    /// otherwise push all at once.
    push_permits: Semaphore,
    /// Per (target registry, digest): the repositories of that registry known to hold the blob.
    /// The async mutex also makes a second transfer of the same blob wait for the first.
    blob_homes: Mutex<HashMap<(String, Digest), BlobHomes>>,
    /// Where earlier runs saw blobs: mount candidates for a blob this run has no home for yet.
    blob_cache: Option<Arc<BlobCache>>,
    next_image: AtomicU64,
}

/// One `copy` call in progress.
struct ImageJob<'a> {
    id: ImageId,
    image: String,
    source: Repository,
    target: Repository,
    progress: &'a dyn ProgressSink,
    bytes_copied: AtomicU64,
    blobs_copied: AtomicUsize,
    blobs_skipped: AtomicUsize,
    blobs_mounted: AtomicUsize,
    manifests_pushed: AtomicUsize,
    /// Config blobs read from the source to learn an image's platform (verified, small): uploaded
    /// from here rather than fetched again.
    fetched_configs: std::sync::Mutex<HashMap<Digest, Bytes>>,
}

/// How the target's top-level manifest is named.
enum PushAs {
    Tag(String),
    /// By its own digest; `Some` when the target reference pinned one that must match.
    Digest(Option<Digest>),
}

impl CopyEngine {
    pub fn new(client: RegistryClient, options: CopyOptions) -> CopyEngine {
        let jobs = options.jobs.max(1);
        CopyEngine {
            client,
            options,
            blob_permits: Semaphore::new(jobs),
            push_permits: Semaphore::new(jobs),
            blob_homes: Mutex::new(HashMap::new()),
            blob_cache: None,
            next_image: AtomicU64::new(0),
        }
    }

    /// Consults and updates `cache` (which the caller saves when the run is over): a blob the
    /// target registry held in another repository in an earlier run is mounted from there
    /// rather than sent again.
    pub fn with_blob_cache(mut self, cache: Arc<BlobCache>) -> CopyEngine {
        self.blob_cache = Some(cache);
        self
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    pub fn options(&self) -> &CopyOptions {
        &self.options
    }

    /// Copies `source` to `target`. A target without tag or digest gets the source's tag.
    /// Nothing is written under the target tag unless every blob and child manifest arrived
    /// verified.
    pub async fn copy(
        &self,
        source: &Reference,
        target: &Reference,
        progress: &dyn ProgressSink,
    ) -> Result<CopyReport, CopyError> {
        self.copy_known(source, target, Known::default(), progress)
            .await
    }

    /// [`CopyEngine::copy`] with what the caller already knows about the source and target.
    pub async fn copy_known(
        &self,
        source: &Reference,
        target: &Reference,
        known: Known,
        progress: &dyn ProgressSink,
    ) -> Result<CopyReport, CopyError> {
        let id = ImageId(self.next_image.fetch_add(1, Ordering::Relaxed));
        let image = source.to_string();
        let push_as = push_name(source, target);
        let shown_target = match &push_as {
            PushAs::Tag(tag) if target.tag() != Some(tag.as_str()) => {
                with_tag(target, tag).unwrap_or_else(|| target.clone())
            }
            _ => target.clone(),
        };
        progress.event(ProgressEvent::ImageStarted {
            image: id,
            source,
            target: &shown_target,
        });
        let job = ImageJob {
            id,
            image,
            source: Repository::of(source),
            target: Repository::of(target),
            progress,
            bytes_copied: AtomicU64::new(0),
            blobs_copied: AtomicUsize::new(0),
            blobs_skipped: AtomicUsize::new(0),
            blobs_mounted: AtomicUsize::new(0),
            manifests_pushed: AtomicUsize::new(0),
            fetched_configs: std::sync::Mutex::new(HashMap::new()),
        };
        let result = self
            .copy_image(&job, source, &shown_target, push_as, known)
            .await;
        match &result {
            Ok(report) => progress.event(ProgressEvent::ImageDone {
                image: id,
                digest: &report.digest,
                up_to_date: report.up_to_date,
            }),
            Err(error) => progress.event(ProgressEvent::ImageFailed {
                image: id,
                error: &ErrorChain(error).to_string(),
            }),
        }
        result
    }

    async fn copy_image(
        &self,
        job: &ImageJob<'_>,
        source: &Reference,
        target: &Reference,
        push_as: PushAs,
        known: Known,
    ) -> Result<CopyReport, CopyError> {
        let fetched = match known.source {
            Some(manifest) => Ok(manifest),
            None => self.client.get_manifest(source).await,
        };
        let top = fetched.map_err(|error| {
            if error.is_not_found() {
                CopyError::SourceNotFound {
                    image: job.image.clone(),
                    source: error,
                }
            } else {
                CopyError::Source {
                    image: job.image.clone(),
                    source: error,
                }
            }
        })?;
        let (selected, warnings) = self.select_image(job, &top).await?;

        let target_name = match &push_as {
            PushAs::Tag(tag) => ManifestRef::Tag(tag),
            PushAs::Digest(pinned) => {
                if let Some(pinned) = pinned.as_ref().filter(|pinned| **pinned != selected.digest) {
                    return Err(CopyError::Invalid {
                        image: job.image.clone(),
                        reason: format!(
                            "the target pins digest {pinned} but the image to copy has digest {}",
                            selected.digest
                        ),
                    });
                }
                ManifestRef::Digest(&selected.digest)
            }
        };
        let current = match known.target {
            Some(current) => current,
            None => self
                .client
                .head_manifest_in(&job.target, target_name)
                .await
                .map_err(|source| CopyError::Push {
                    image: job.image.clone(),
                    target: job.target.to_string(),
                    source,
                })?,
        };
        // The registry accepted a manifest under that name only once everything it refers to
        // was there, so the same digest means the same complete image: nothing to do (and
        // nothing to re-push, which immutable tags would refuse).
        let up_to_date = current.is_some_and(|current| current.digest == selected.digest);
        let confirmed_by_target = if up_to_date {
            // For the same reason the target holds every blob of that image, where a manifest
            // references it: mount sources for the rest of the run and for later runs.
            if let ManifestKind::Image(image) = &selected.kind {
                self.record_references(job, image).await;
            }
            true
        } else {
            self.copy_tree(job, &selected, 0).await?;
            self.push_manifest(job, target_name, &selected).await?
        };
        Ok(CopyReport {
            source: source.clone(),
            target: target.clone(),
            digest: selected.digest.clone(),
            source_digest: top.digest.clone(),
            media_type: selected.media_type.clone(),
            bytes_copied: job.bytes_copied.load(Ordering::Relaxed),
            blobs_copied: job.blobs_copied.load(Ordering::Relaxed),
            blobs_skipped: job.blobs_skipped.load(Ordering::Relaxed),
            blobs_mounted: job.blobs_mounted.load(Ordering::Relaxed),
            manifests_pushed: job.manifests_pushed.load(Ordering::Relaxed),
            up_to_date,
            confirmed_by_target,
            warnings,
        })
    }

    /// Copies everything `manifest` refers to: an image's blobs, or an index's child manifests
    /// (each with its blobs, then pushed by digest). The manifest itself is not pushed.
    fn copy_tree<'a>(
        &'a self,
        job: &'a ImageJob<'a>,
        manifest: &'a Manifest,
        depth: usize,
    ) -> BoxFuture<'a, Result<(), CopyError>> {
        Box::pin(async move {
            match &manifest.kind {
                ManifestKind::Image(image) => self.copy_blobs(job, image).await,
                ManifestKind::Index(index) => {
                    if depth >= MAX_INDEX_DEPTH {
                        return Err(CopyError::Invalid {
                            image: job.image.clone(),
                            reason: format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                        });
                    }
                    try_join_all(index.manifests.iter().map(|descriptor| async move {
                        let child = self.fetch_child(job, descriptor).await?;
                        self.copy_tree(job, &child, depth + 1).await?;
                        self.push_manifest(job, ManifestRef::Digest(&child.digest), &child)
                            .await
                    }))
                    .await
                    .map(drop)
                }
            }
        })
    }

    async fn fetch_child(
        &self,
        job: &ImageJob<'_>,
        descriptor: &Descriptor,
    ) -> Result<Manifest, CopyError> {
        self.client
            .get_manifest_in(&job.source, ManifestRef::Digest(&descriptor.digest))
            .await
            .map_err(|source| CopyError::Source {
                image: job.image.clone(),
                source,
            })
    }

    /// Pushes one manifest; `true` when the registry confirmed its digest.
    async fn push_manifest(
        &self,
        job: &ImageJob<'_>,
        name: ManifestRef<'_>,
        manifest: &Manifest,
    ) -> Result<bool, CopyError> {
        let mut attempt = 1;
        let confirmed = loop {
            let pushed = {
                let _permit = self
                    .push_permits
                    .acquire()
                    .await
                    .expect("the push semaphore is never closed");
                self.client.put_manifest(&job.target, name, manifest).await
            };
            match pushed {
                Ok(confirmed) => break confirmed,
                // distribution rewrites a repository's link file in place whenever content is
                // linked again, so while another client links the same blob or manifest the
                // link reads empty and a manifest that references it is refused. The content
                // is there: check that (re-sending whatever really is missing) and try again.
                Err(error)
                    if error.is_unresolved_manifest_reference()
                        && attempt < MANIFEST_REFERENCE_ATTEMPTS =>
                {
                    tracing::debug!(
                        image = %job.image,
                        error = %ErrorChain(&error),
                        "manifest refused over its references; re-checking them"
                    );
                    if let ManifestKind::Image(image) = &manifest.kind {
                        self.resend_missing_blobs(job, image).await?;
                    }
                    tokio::time::sleep(self.client.retry_policy().backoff(attempt)).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(CopyError::Push {
                        image: job.image.clone(),
                        target: job.target.to_string(),
                        source,
                    })
                }
            }
        };
        job.manifests_pushed.fetch_add(1, Ordering::Relaxed);
        if let ManifestKind::Image(image) = &manifest.kind {
            self.record_references(job, image).await;
        }
        Ok(confirmed)
    }
}

/// The name the target gets: its own tag or digest, else the source's tag.
fn push_name(source: &Reference, target: &Reference) -> PushAs {
    if let Some(tag) = target.tag() {
        return PushAs::Tag(tag.to_string());
    }
    if let Some(digest) = target.digest() {
        return PushAs::Digest(Some(digest.clone()));
    }
    match (source.tag(), source.digest()) {
        (Some(tag), _) => PushAs::Tag(tag.to_string()),
        (None, Some(_)) => PushAs::Digest(None),
        (None, None) => PushAs::Tag("latest".to_string()),
    }
}

fn with_tag(reference: &Reference, tag: &str) -> Option<Reference> {
    Reference::parse(&format!("{}:{tag}", reference.name())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_futures_can_be_spawned_on_a_multi_threaded_runtime() {
        fn assert_send<T: Send>(_: &T) {}
        let client = RegistryClient::new(crate::ClientConfig::default()).unwrap();
        let engine = CopyEngine::new(client, CopyOptions::default());
        let image = Reference::parse("127.0.0.1:1/a/b:1").unwrap();
        let sink = crate::NoProgress;
        let copy = engine.copy(&image, &image, &sink);
        assert_send(&copy);
    }
}

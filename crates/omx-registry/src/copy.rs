//! The copy engine: image (or whole multi-arch index) from one repository to another, digests
//! preserved, blobs streamed and verified, each blob transferred at most once per run.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::{try_join_all, BoxFuture};
use futures_util::{Stream, StreamExt};
use omx_core::digest::Verifier;
use omx_core::{Digest, Reference};
use reqwest::{Body, Url};
use tokio::sync::Semaphore;

use crate::auth::Scope;
use crate::client::{ManifestRef, MountOutcome, RegistryClient, Repository};
use crate::error::RegistryError;
use crate::manifest::{
    media_type, ConfigPlatform, Descriptor, ImageManifest, Manifest, ManifestKind,
};
use crate::platform::Platform;
use crate::progress::{ImageId, ProgressEvent, ProgressSink};
use crate::transport::{retrying, ErrorChain};

/// Indexes nest (an index of indexes) only in exotic images; deeper than this is a loop or abuse.
const MAX_INDEX_DEPTH: usize = 4;
/// How often per-blob byte counts are reported while a transfer runs.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Configs are read to learn a single-platform image's platform; real ones are a few KiB.
const MAX_CONFIG_SIZE: usize = 4 * 1024 * 1024;
/// Pushes of one manifest refused over its references (see `push_manifest`) before giving up.
const MANIFEST_REFERENCE_ATTEMPTS: u32 = 4;

/// How the engine copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Blob transfers (HEAD, mount or upload) in flight at once, across all images.
    pub jobs: usize,
    /// Copy only this platform's image out of a multi-arch index (the target then gets that
    /// child manifest, whose digest differs from the index's).
    pub platform: Option<Platform>,
    /// Upload in `PATCH` chunks of this many bytes (holding one chunk in memory) instead of one
    /// streaming `PUT`, for registries that need it.
    pub chunk_size: Option<u64>,
    /// Try cross-repository mounts when the target registry already holds a blob elsewhere.
    pub mount: bool,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            jobs: 4,
            platform: None,
            chunk_size: None,
            mount: true,
        }
    }
}

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

/// Copies images between registries. One engine is one run: it remembers which blobs it has
/// put where, so concurrent copies sharing layers transfer each layer once and mount it after.
pub struct CopyEngine {
    client: RegistryClient,
    options: CopyOptions,
    blob_permits: Semaphore,
    /// Per (target registry, digest): the repositories of that registry known to hold the blob.
    /// The async mutex also makes a second transfer of the same blob wait for the first.
    blob_homes: Mutex<HashMap<(String, Digest), BlobHomes>>,
    next_image: AtomicU64,
}

/// Repositories (of one registry) holding one blob, behind the lock that serializes its transfer.
type BlobHomes = Arc<tokio::sync::Mutex<Vec<String>>>;

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
}

enum BlobOutcome {
    Present,
    Mounted(String),
    Uploaded,
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
            blob_homes: Mutex::new(HashMap::new()),
            next_image: AtomicU64::new(0),
        }
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
        };
        let result = self.copy_image(&job, source, &shown_target, push_as).await;
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
    ) -> Result<CopyReport, CopyError> {
        let top = self.client.get_manifest(source).await.map_err(|error| {
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
        let current = self
            .client
            .head_manifest_in(&job.target, target_name)
            .await
            .map_err(|source| CopyError::Push {
                image: job.image.clone(),
                target: job.target.to_string(),
                source,
            })?;
        // The registry accepted a manifest under that name only once everything it refers to
        // was there, so the same digest means the same complete image: nothing to do (and
        // nothing to re-push, which immutable tags would refuse).
        let up_to_date = current.is_some_and(|current| current.digest == selected.digest);
        if !up_to_date {
            self.copy_tree(job, &selected, 0).await?;
            self.push_manifest(job, target_name, &selected).await?;
        }
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

    async fn push_manifest(
        &self,
        job: &ImageJob<'_>,
        name: ManifestRef<'_>,
        manifest: &Manifest,
    ) -> Result<(), CopyError> {
        let mut attempt = 1;
        loop {
            match self.client.put_manifest(&job.target, name, manifest).await {
                Ok(_) => break,
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
        }
        job.manifests_pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes sure the target repository holds every blob of `image`, uploading any it lacks
    /// (whatever this run's record of blob homes says).
    async fn resend_missing_blobs(
        &self,
        job: &ImageJob<'_>,
        image: &ImageManifest,
    ) -> Result<(), CopyError> {
        try_join_all(
            image
                .blobs()
                .into_iter()
                .filter(|blob| !blob.is_foreign())
                .map(|blob| self.transfer_blob(job, blob, &[])),
        )
        .await
        .map(drop)
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
        let parsed: ConfigPlatform = serde_json::from_slice(&bytes).ok()?;
        Some(Platform::from(parsed)).filter(|p| !p.os.is_empty() && !p.architecture.is_empty())
    }

    async fn copy_blobs(&self, job: &ImageJob<'_>, image: &ImageManifest) -> Result<(), CopyError> {
        let blobs = image.blobs();
        job.progress.event(ProgressEvent::BlobsPlanned {
            image: job.id,
            blobs: blobs.len(),
            bytes: blobs.iter().map(|d| d.size).sum(),
        });
        try_join_all(blobs.into_iter().map(|blob| self.copy_blob(job, blob)))
            .await
            .map(drop)
    }

    fn blob_homes(&self, registry: &str, digest: &Digest) -> BlobHomes {
        let mut homes = self
            .blob_homes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        homes
            .entry((registry.to_string(), digest.clone()))
            .or_default()
            .clone()
    }

    async fn copy_blob(&self, job: &ImageJob<'_>, blob: &Descriptor) -> Result<(), CopyError> {
        let event_skipped = || {
            job.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            job.progress.event(ProgressEvent::BlobSkipped {
                image: job.id,
                digest: &blob.digest,
                size: blob.size,
            });
        };
        if blob.is_foreign() {
            event_skipped();
            return Ok(());
        }
        let homes_lock = self.blob_homes(&job.target.registry, &blob.digest);
        let homes = homes_lock.lock().await;
        if homes.contains(&job.target.path) {
            event_skipped();
            return Ok(());
        }
        let mut mount_sources: Vec<String> = homes.clone();
        // Only the first transfer of a blob into a registry needs to be alone: it is what the
        // others wait for. Once the registry holds the blob, copies into further repositories are
        // mounts (or finds) that can run side by side.
        let first_transfer = if mount_sources.is_empty() {
            Some(homes)
        } else {
            drop(homes);
            None
        };
        let _permit = self
            .blob_permits
            .acquire()
            .await
            .expect("the blob semaphore is never closed");
        if job.source.registry == job.target.registry && job.source.path != job.target.path {
            mount_sources.push(job.source.path.clone());
        }
        let outcome = self.transfer_blob(job, blob, &mount_sources).await?;
        match first_transfer {
            Some(mut homes) => homes.push(job.target.path.clone()),
            None => homes_lock.lock().await.push(job.target.path.clone()),
        }
        match outcome {
            BlobOutcome::Present => event_skipped(),
            BlobOutcome::Mounted(from) => {
                job.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                job.progress.event(ProgressEvent::BlobMounted {
                    image: job.id,
                    digest: &blob.digest,
                    size: blob.size,
                    from: &from,
                });
            }
            BlobOutcome::Uploaded => {
                job.blobs_copied.fetch_add(1, Ordering::Relaxed);
                job.bytes_copied.fetch_add(blob.size, Ordering::Relaxed);
                job.progress.event(ProgressEvent::BlobFinished {
                    image: job.id,
                    digest: &blob.digest,
                    size: blob.size,
                });
            }
        }
        Ok(())
    }

    /// Brings one blob into the target with the client's retry policy, reporting each retry.
    async fn transfer_blob(
        &self,
        job: &ImageJob<'_>,
        blob: &Descriptor,
        mount_sources: &[String],
    ) -> Result<BlobOutcome, CopyError> {
        let what = format!("blob {} of {}", blob.digest, job.image);
        retrying(
            self.client.retry_policy(),
            &what,
            |attempt, error| {
                job.progress.event(ProgressEvent::BlobRetrying {
                    image: job.id,
                    digest: &blob.digest,
                    attempt,
                    reason: &ErrorChain(error).to_string(),
                })
            },
            || self.transfer_blob_once(job, blob, mount_sources),
        )
        .await
        .map_err(|source| CopyError::Blob {
            image: job.image.clone(),
            digest: blob.digest.clone(),
            source,
        })
    }

    /// One attempt: skip if present, else mount, else stream it across.
    async fn transfer_blob_once(
        &self,
        job: &ImageJob<'_>,
        blob: &Descriptor,
        mount_sources: &[String],
    ) -> Result<BlobOutcome, RegistryError> {
        let target = &job.target;
        let push_scope = [Scope::pull_push(&target.path)];
        if self
            .client
            .head_blob_scoped(target, &blob.digest, &push_scope)
            .await?
            .is_some()
        {
            return Ok(BlobOutcome::Present);
        }
        let mut session = None;
        if self.options.mount {
            if let Some(from) = mount_sources.first() {
                match self.client.mount_blob(target, &blob.digest, from).await {
                    Ok(MountOutcome::Mounted) => return Ok(BlobOutcome::Mounted(from.clone())),
                    Ok(MountOutcome::Upload(url)) => session = Some(url),
                    // A registry may refuse mounts outright (permissions on the other
                    // repository); an ordinary upload still works.
                    Err(error) if !error.is_retryable() => {
                        tracing::debug!(error = %ErrorChain(&error), "mount refused, uploading");
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        let upload = match session {
            Some(url) => url,
            None => self.client.start_upload(target).await?,
        };
        job.progress.event(ProgressEvent::BlobStarted {
            image: job.id,
            digest: &blob.digest,
            size: blob.size,
        });
        match self.upload(job, blob, &upload).await {
            Ok(()) => Ok(BlobOutcome::Uploaded),
            Err(error) => {
                self.client.cancel_upload(target, &upload).await;
                Err(error)
            }
        }
    }

    /// Streams the blob from the source into the open upload session, verifying as it goes.
    async fn upload(
        &self,
        job: &ImageJob<'_>,
        blob: &Descriptor,
        upload: &Url,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {} from {}", blob.digest, job.source);
        if blob.size == 0 {
            // Nothing will stream past the verifier, so check the empty content's digest now.
            let empty = blob.digest.verifier().finish();
            if empty != blob.digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: blob.digest.clone(),
                    actual: empty,
                });
            }
        }
        let response = self.client.get_blob(&job.source, &blob.digest).await?;
        if let Some(length) = response.content_length().filter(|&len| len != blob.size) {
            return Err(RegistryError::SizeMismatch {
                what,
                reason: format!(
                    "the source serves {length} bytes but the manifest says {}",
                    blob.size
                ),
            });
        }
        let check = StreamCheck {
            what,
            digest: blob.digest.clone(),
            size: blob.size,
            verifier: blob.digest.verifier(),
            transferred: Arc::new(AtomicU64::new(0)),
            failure: Arc::new(Mutex::new(None)),
        };
        let transferred = check.transferred.clone();
        let failure = check.failure.clone();
        let stream = verified_stream(Box::pin(response.bytes_stream()), check);
        let transfer = async {
            match self.options.chunk_size {
                None => {
                    self.client
                        .put_blob_stream(
                            &job.target,
                            upload,
                            &blob.digest,
                            blob.size,
                            Body::wrap_stream(stream),
                        )
                        .await
                }
                Some(chunk_size) => {
                    self.upload_chunked(&job.target, upload, &blob.digest, stream, chunk_size)
                        .await
                }
            }
        };
        let result = report_progress(transfer, &transferred, |bytes| {
            job.progress.event(ProgressEvent::BlobProgress {
                image: job.id,
                digest: &blob.digest,
                transferred: bytes,
                size: blob.size,
            })
        })
        .await;
        // When the source stream failed, the upload request failed because of it: the stream's
        // own error is the cause worth reporting.
        let stream_failure = failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match (stream_failure, result) {
            (Some(cause), _) => Err(cause),
            (None, result) => result,
        }
    }

    async fn upload_chunked(
        &self,
        target: &Repository,
        upload: &Url,
        digest: &Digest,
        stream: impl Stream<Item = Result<Bytes, StreamAborted>>,
        chunk_size: u64,
    ) -> Result<(), RegistryError> {
        let chunk_size = usize::try_from(chunk_size.max(1)).unwrap_or(usize::MAX);
        let mut stream = std::pin::pin!(stream);
        let mut url = upload.clone();
        let mut offset = 0u64;
        let mut buffer = BytesMut::new();
        let aborted = || RegistryError::Protocol {
            what: format!("upload blob {digest} to {target}"),
            reason: "the source stream was aborted".to_string(),
        };
        while let Some(piece) = stream.next().await {
            buffer.extend_from_slice(&piece.map_err(|_| aborted())?);
            while buffer.len() >= chunk_size {
                let chunk = buffer.split_to(chunk_size).freeze();
                let len = chunk.len() as u64;
                url = self.client.patch_chunk(target, &url, offset, chunk).await?;
                offset += len;
            }
        }
        if !buffer.is_empty() {
            url = self
                .client
                .patch_chunk(target, &url, offset, buffer.freeze())
                .await?;
        }
        // The stream ended without error, so every byte was verified: safe to commit.
        self.client.finish_upload(target, &url, digest).await
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

/// Runs `transfer`, reporting the byte counter's value every [`PROGRESS_INTERVAL`] while it
/// changes.
async fn report_progress<F: Future>(
    transfer: F,
    counter: &AtomicU64,
    mut report: impl FnMut(u64),
) -> F::Output {
    let mut transfer = std::pin::pin!(transfer);
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = 0;
    loop {
        tokio::select! {
            output = &mut transfer => return output,
            _ = ticker.tick() => {
                let now = counter.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    report(now);
                }
            }
        }
    }
}

/// The body-stream error that aborts an upload; the reason is in [`StreamCheck::failure`].
#[derive(Debug)]
pub(crate) struct StreamAborted;

impl fmt::Display for StreamAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blob content failed verification or the source connection broke")
    }
}

impl std::error::Error for StreamAborted {}

/// Checks a blob's bytes as they stream from source to target.
struct StreamCheck {
    what: String,
    digest: Digest,
    size: u64,
    verifier: Verifier,
    transferred: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<RegistryError>>>,
}

impl StreamCheck {
    /// Accepts a chunk, or says why the content is wrong. The digest is checked when the last
    /// declared byte arrives, *before* that chunk is passed on: a registry that has received
    /// the full `Content-Length` may commit, so it must never receive all of a bad blob.
    fn accept(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.verifier.update(chunk);
        let seen = self.verifier.len();
        if seen > self.size {
            return Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                reason: format!(
                    "the source sent more than the {} bytes the manifest declares",
                    self.size
                ),
            });
        }
        if seen == self.size {
            let actual = self.verifier.clone().finish();
            if actual != self.digest {
                return Err(RegistryError::DigestMismatch {
                    what: self.what.clone(),
                    expected: self.digest.clone(),
                    actual,
                });
            }
        }
        self.transferred.store(seen, Ordering::Relaxed);
        Ok(())
    }

    /// The stream ended: all declared bytes must have arrived (and were verified in `accept`).
    fn finish(&self) -> Result<(), RegistryError> {
        let seen = self.verifier.len();
        if seen < self.size {
            return Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                reason: format!(
                    "the source connection ended after {seen} of {} bytes",
                    self.size
                ),
            });
        }
        Ok(())
    }

    fn abort(self, error: RegistryError) -> StreamAborted {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
        StreamAborted
    }
}

type SourceStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Passes the source's chunks through [`StreamCheck`]; the first problem ends the stream with
/// an error (which aborts the upload request) after recording the cause.
fn verified_stream(
    source: SourceStream,
    check: StreamCheck,
) -> impl Stream<Item = Result<Bytes, StreamAborted>> + Send + 'static {
    futures_util::stream::unfold(Some((source, check)), |state| async move {
        let (mut source, mut check) = state?;
        match source.next().await {
            Some(Ok(chunk)) => match check.accept(&chunk) {
                Ok(()) => Some((Ok(chunk), Some((source, check)))),
                Err(error) => Some((Err(check.abort(error)), None)),
            },
            Some(Err(source_error)) => {
                let error = RegistryError::Transport {
                    what: format!("read {}", check.what),
                    source: source_error,
                };
                Some((Err(check.abort(error)), None))
            }
            None => match check.finish() {
                Ok(()) => None,
                Err(error) => Some((Err(check.abort(error)), None)),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_for(content: &[u8]) -> StreamCheck {
        let digest = Digest::sha256_of(content);
        StreamCheck {
            what: "blob".into(),
            verifier: digest.verifier(),
            digest,
            size: content.len() as u64,
            transferred: Arc::new(AtomicU64::new(0)),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    async fn run(
        check: StreamCheck,
        chunks: Vec<&'static [u8]>,
    ) -> (Vec<Bytes>, Option<RegistryError>) {
        let failure = check.failure.clone();
        let source: SourceStream = Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ));
        let items: Vec<_> = verified_stream(source, check).collect().await;
        let passed = items.into_iter().map_while(Result::ok).collect();
        let cause = failure.lock().unwrap().take();
        (passed, cause)
    }

    #[tokio::test]
    async fn good_content_streams_through() {
        let (passed, failure) = run(check_for(b"hello world"), vec![b"hello ", b"world"]).await;
        assert_eq!(
            passed,
            [Bytes::from_static(b"hello "), Bytes::from_static(b"world")]
        );
        assert!(failure.is_none());
    }

    #[tokio::test]
    async fn corrupted_last_chunk_is_never_passed_on() {
        let (passed, failure) = run(check_for(b"hello world"), vec![b"hello ", b"wOrld"]).await;
        assert_eq!(passed, [Bytes::from_static(b"hello ")]);
        assert!(
            matches!(failure, Some(RegistryError::DigestMismatch { .. })),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn truncated_and_oversized_streams_fail() {
        let (_, failure) = run(check_for(b"hello world"), vec![b"hello "]).await;
        let message = failure.unwrap().to_string();
        assert!(message.contains("ended after 6 of 11 bytes"), "{message}");
        let (passed, failure) = run(check_for(b"hello"), vec![b"hello world"]).await;
        assert!(passed.is_empty());
        assert!(matches!(failure, Some(RegistryError::SizeMismatch { .. })));
    }

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

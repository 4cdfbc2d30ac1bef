//! Where each blob comes from. The engine keeps a record, per target registry and digest, of
//! the repositories known to hold the blob and of those where a pushed manifest references it
//! (`blob_homes`): the first transfer of a blob into a registry holds that record's lock, so
//! copies sharing layers wait for it and then mount instead of uploading again. Mount sources
//! are the repositories whose manifest references the blob first: ECR mounts only such blobs
//! (aws/containers-roadmap #2860), so where [`super::CopyOptions::mount_needs_manifest`] says
//! so, a copy waits a little for the first image's manifest rather than upload the layer again.
//! A blob no repository of the run holds yet may have homes earlier runs saw (the
//! [`super::BlobCache`]): a mount from each of the most recent few is tried in turn, and a
//! refused one drops that home from the cache. One attempt (`transfer_blob_once`) checks the
//! target, tries the mounts, else uploads (`upload.rs`); `transfer_blob` retries it whole.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::try_join_all;
use omx_core::Digest;

use super::report::CopyError;
use super::transfer_slot::TransferSlot;
use super::{CopyEngine, ImageJob};
use crate::auth::Scope;
use crate::client::MountOutcome;
use crate::error::RegistryError;
use crate::manifest::{Descriptor, ImageManifest};
use crate::progress::ProgressEvent;
use crate::transport::{retrying, ErrorChain};

/// Repositories (of one registry) holding one blob, behind the lock that serializes its
/// transfer, and a signal for when a manifest referencing it is pushed.
pub(super) type BlobHomes = Arc<BlobRecord>;

#[derive(Default)]
pub(super) struct BlobRecord {
    homes: tokio::sync::Mutex<Homes>,
    referenced: tokio::sync::Notify,
}

#[derive(Default)]
struct Homes {
    /// Repositories that hold the blob (this run put it there or found it).
    holding: RepositorySet,
    /// Those of them where a pushed manifest references it: the mount sources ECR accepts.
    referenced: RepositorySet,
}

impl Homes {
    /// The repository to mount from, if any: one where a manifest references the blob, else one
    /// that merely holds it. One is enough, since a mount is tried once before an upload.
    fn mount_sources(&self) -> Vec<String> {
        self.referenced
            .first()
            .or(self.holding.first())
            .into_iter()
            .cloned()
            .collect()
    }
}

/// Repositories each recorded once, first recorded first. A blob every image of a run shares (a
/// base layer of thousands of images) has a home in each of their repositories, so membership
/// is a hash lookup, not a scan.
#[derive(Default)]
struct RepositorySet {
    first: Option<String>,
    members: HashSet<String>,
}

impl RepositorySet {
    fn contains(&self, repository: &str) -> bool {
        self.members.contains(repository)
    }

    fn insert(&mut self, repository: &str) {
        if self.members.insert(repository.to_string()) && self.first.is_none() {
            self.first = Some(repository.to_string());
        }
    }

    fn first(&self) -> Option<&String> {
        self.first.as_ref()
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// How long a copy waits for a manifest to reference a blob another image of the run uploaded,
/// where the registry mounts only such blobs, before uploading it itself.
const WAIT_FOR_REFERENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// How many homes from the blob-location cache a blob's transfer tries before it uploads. Each
/// refused mount costs a round trip (and an upload session, cancelled), while a home or two
/// deleted since the cache saw them is common (a repository removed, images expired by a
/// lifecycle policy): three is worth a layer not sent again, and bounded when none is left.
const CACHED_HOMES_TRIED: usize = 3;

/// How a blob got into the target repository.
enum BlobOutcome {
    Present,
    Mounted(String),
    Uploaded,
}

impl CopyEngine {
    pub(super) async fn copy_blobs(
        &self,
        job: &ImageJob<'_>,
        image: &ImageManifest,
    ) -> Result<(), CopyError> {
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

    /// The record of repositories in `registry` known to hold `digest` (empty at first).
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

    /// Puts one blob of `job`'s image into the target repository, once per run and repository:
    /// skipped when foreign or already recorded there; else found, mounted from a repository
    /// recorded as holding it, or uploaded, and then recorded as held by the target too.
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
        let record = self.blob_homes(&job.target.registry, &blob.digest);
        let mut homes = record.homes.lock().await;
        if homes.holding.contains(&job.target.path) {
            event_skipped();
            return Ok(());
        }
        if self.options.mount && self.options.mount_needs_manifest {
            let deadline = tokio::time::Instant::now() + WAIT_FOR_REFERENCE;
            while !homes.holding.is_empty() && homes.referenced.is_empty() {
                // Registered before the lock is let go, so a push in between is not missed.
                let referenced = record.referenced.notified();
                drop(homes);
                let waited = tokio::time::timeout_at(deadline, referenced).await;
                homes = record.homes.lock().await;
                if waited.is_err() {
                    break;
                }
            }
            if homes.holding.contains(&job.target.path) {
                event_skipped();
                return Ok(());
            }
        }
        let mut mount_sources = homes.mount_sources();
        // Only the first transfer of a blob into a registry needs to be alone: it is what the
        // others wait for. Once the registry holds the blob, copies into further repositories are
        // mounts (or finds) that can run side by side.
        let first_transfer = if mount_sources.is_empty() {
            Some(homes)
        } else {
            drop(homes);
            None
        };
        // Its place among the transfers in flight is taken by each attempt (`transfer_blob_once`).
        let slot = TransferSlot::new(&self.blob_permits);
        if job.source.registry == job.target.registry && job.source.path != job.target.path {
            mount_sources.push(job.source.path.clone());
        }
        // No repository of this run holds the blob: those an earlier run saw holding it are
        // worth a mount attempt each (candidates, not proof: they may have been deleted since).
        let candidates = if mount_sources.is_empty() {
            self.cached_homes(job, blob)
        } else {
            Vec::new()
        };
        mount_sources.extend(candidates.iter().cloned());
        let outcome = self.transfer_blob(job, blob, &mount_sources, &slot).await?;
        drop(slot);
        let proven_home = self.judge_cached_homes(job, blob, &candidates, &outcome);
        let mut homes = match first_transfer {
            Some(homes) => homes,
            None => record.homes.lock().await,
        };
        homes.holding.insert(&job.target.path);
        if let Some(home) = &proven_home {
            // The registry mounted the blob from there: a home for the rest of the run too, and
            // where it mounts only referenced blobs, proof that a manifest there references it.
            homes.holding.insert(home);
            if self.options.mount_needs_manifest {
                homes.referenced.insert(home);
            }
        }
        drop(homes);
        if proven_home.is_some() && self.options.mount_needs_manifest {
            record.referenced.notify_waiters();
        }
        if let Some(cache) = &self.blob_cache {
            cache.record(&job.target.registry, &blob.digest, &job.target.path, false);
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

    /// Records that a manifest pushed to `job`'s target references every blob of `image`: the
    /// target is from now on a mount source for them, and copies waiting for one go on.
    pub(super) async fn record_references(&self, job: &ImageJob<'_>, image: &ImageManifest) {
        for blob in image.blobs().into_iter().filter(|blob| !blob.is_foreign()) {
            let record = self.blob_homes(&job.target.registry, &blob.digest);
            let mut homes = record.homes.lock().await;
            let path = &job.target.path;
            homes.holding.insert(path);
            homes.referenced.insert(path);
            drop(homes);
            record.referenced.notify_waiters();
            if let Some(cache) = &self.blob_cache {
                cache.record(&job.target.registry, &blob.digest, path, true);
            }
        }
    }

    /// What a transfer that tried the cached homes `candidates` in turn says about them: the
    /// one the blob was mounted from (seen holding it now), if any. Each tried before it, or
    /// all of them when the blob was sent instead, refused the mount and leaves the cache: a
    /// registry that cannot mount a blob answers 202 with an upload session (OCI
    /// distribution-spec, "Mounting a blob from another repository"; opencontainers/
    /// distribution-spec #204), so it no longer holds it there, or never did, or will not
    /// mount from there.
    fn judge_cached_homes(
        &self,
        job: &ImageJob<'_>,
        blob: &Descriptor,
        candidates: &[String],
        outcome: &BlobOutcome,
    ) -> Option<String> {
        let cache = self.blob_cache.as_ref()?;
        let mounted_from = match outcome {
            BlobOutcome::Mounted(from) => Some(from),
            BlobOutcome::Uploaded => None,
            BlobOutcome::Present => return None,
        };
        for home in candidates {
            if Some(home) == mounted_from {
                cache.record(&job.target.registry, &blob.digest, home, false);
                return Some(home.clone());
            }
            cache.forget(&job.target.registry, &blob.digest, home);
        }
        None
    }

    /// The repositories of the target registry earlier runs saw holding `blob`, most recent
    /// first and at most [`CACHED_HOMES_TRIED`] (where the registry mounts only referenced
    /// blobs, only those where a manifest references it).
    fn cached_homes(&self, job: &ImageJob<'_>, blob: &Descriptor) -> Vec<String> {
        let Some(cache) = self.blob_cache.as_ref().filter(|_| self.options.mount) else {
            return Vec::new();
        };
        let mut homes = cache.candidates(
            &job.target.registry,
            &blob.digest,
            &job.target.path,
            self.options.mount_needs_manifest,
        );
        homes.truncate(CACHED_HOMES_TRIED);
        homes
    }

    /// Makes sure the target repository holds every blob of `image`, uploading any it lacks
    /// (whatever this run's record of blob homes says).
    pub(super) async fn resend_missing_blobs(
        &self,
        job: &ImageJob<'_>,
        image: &ImageManifest,
    ) -> Result<(), CopyError> {
        try_join_all(
            image
                .blobs()
                .into_iter()
                .filter(|blob| !blob.is_foreign())
                .map(|blob| async move {
                    let slot = TransferSlot::new(&self.blob_permits);
                    self.transfer_blob(job, blob, &[], &slot).await
                }),
        )
        .await
        .map(drop)
    }

    /// Brings one blob into the target with the client's retry policy, reporting each retry.
    async fn transfer_blob(
        &self,
        job: &ImageJob<'_>,
        blob: &Descriptor,
        mount_sources: &[String],
        slot: &TransferSlot<'_>,
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
            || self.transfer_blob_once(job, blob, mount_sources, slot),
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
        slot: &TransferSlot<'_>,
    ) -> Result<BlobOutcome, RegistryError> {
        // Every attempt holds a place: the first takes one, and a retry after an upload that had
        // sent all its bytes (and so gave its place up) waits for one again.
        slot.hold().await;
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
        let sources = if self.options.mount {
            mount_sources
        } else {
            &[]
        };
        for from in sources {
            if let Some(refused) = session.take() {
                // A refused mount opened a session; the next mount asks for one of its own.
                self.client.cancel_upload(target, &refused).await;
            }
            match self.client.mount_blob(target, &blob.digest, from).await {
                Ok(MountOutcome::Mounted) => return Ok(BlobOutcome::Mounted(from.clone())),
                Ok(MountOutcome::Upload(url)) => session = Some(url),
                // A registry may refuse mounts outright (permissions on the other repository);
                // another source or an ordinary upload still works.
                Err(error) if !error.is_retryable() => {
                    tracing::debug!(error = %ErrorChain(&error), "mount refused");
                }
                Err(error) => return Err(error),
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
        match self.upload(job, blob, &upload, slot).await {
            Ok(()) => Ok(BlobOutcome::Uploaded),
            Err(error) => {
                self.client.cancel_upload(target, &upload).await;
                Err(error)
            }
        }
    }
}

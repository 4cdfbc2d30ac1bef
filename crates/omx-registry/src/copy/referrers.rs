//! An image's referrers brought along with it (`--with-referrers`): OCI 1.1 referrers
//! (signatures, attestations, SBOMs whose `subject` is the image), and cosign's legacy tags.
//!
//! - Each referrer is copied by digest like any image (blobs verified, digests preserved).
//! - A target without the referrers API (404 on `GET /v2/<name>/referrers/<digest>`) learns of
//!   them only through the fallback tag `sha256-<hex>`, an index the client pushing a referrer
//!   must update: fetch it, add the missing descriptors, push it back (distribution-spec 1.1,
//!   "Pushing Manifests with subject" and "Unavailable Referrers API"; oras and regclient do the
//!   same when the registry does not acknowledge the subject). Existing entries are kept.
//! - cosign without OCI 1.1 mode stores signatures, attestations and SBOMs under the tags
//!   `sha256-<hex>.sig`, `.att` and `.sbom` (sigstore/cosign, "Registry Support" and
//!   `cosign triangulate`): they are copied as tags.
//!
//! For an index, its children's referrers come along too (a per-platform attestation names the
//! child as its subject).

use omx_core::{Digest, Reference};

use super::report::CopyError;
use super::CopyEngine;
use crate::client::{descriptor_digest, fallback_tag, ManifestRef, Repository};
use crate::manifest::ManifestKind;
use crate::progress::ProgressSink;

/// The tag suffixes of cosign's legacy scheme: signature, attestation, SBOM.
const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

impl CopyEngine {
    /// Copies the referrers of the image `digest` (already copied from `source`'s repository to
    /// `target`'s) and of its children when it is an index; returns how many manifests and
    /// cosign tags were brought over.
    pub async fn copy_referrers(
        &self,
        source: &Reference,
        target: &Reference,
        digest: &Digest,
        progress: &dyn ProgressSink,
    ) -> Result<usize, CopyError> {
        let image = source.to_string();
        let source_repository = Repository::of(source);
        let read_error = |source| CopyError::Source {
            image: image.clone(),
            source,
        };
        let mut subjects = vec![digest.clone()];
        let top = self
            .client
            .get_manifest_in(&source_repository, ManifestRef::Digest(digest))
            .await
            .map_err(read_error)?;
        if let ManifestKind::Index(index) = &top.kind {
            subjects.extend(index.manifests.iter().map(|child| child.digest.clone()));
        }
        let mut copied = 0;
        for subject in &subjects {
            copied += self
                .copy_subject_referrers(source, target, subject, progress)
                .await?;
            copied += self
                .copy_cosign_tags(source, target, subject, progress)
                .await?;
        }
        Ok(copied)
    }

    async fn copy_subject_referrers(
        &self,
        source: &Reference,
        target: &Reference,
        subject: &Digest,
        progress: &dyn ProgressSink,
    ) -> Result<usize, CopyError> {
        let image = source.to_string();
        let (source_repository, target_repository) =
            (Repository::of(source), Repository::of(target));
        let found = self
            .client
            .referrers(&source_repository, subject)
            .await
            .map_err(|source| CopyError::Source {
                image: image.clone(),
                source,
            })?;
        if found.descriptors.is_empty() {
            return Ok(0);
        }
        let digests = found.digests();
        for digest in &digests {
            let from = with_digest(source, digest);
            let to = with_digest(target, digest);
            self.copy(&from, &to, progress).await?;
        }
        let push_error = |source| CopyError::Push {
            image: image.clone(),
            target: target_repository.to_string(),
            source,
        };
        let there = self
            .client
            .referrers(&target_repository, subject)
            .await
            .map_err(push_error)?;
        if !there.from_api {
            // Merged: what the target's index already lists stays, ours are added once.
            let known = there.digests();
            let mut merged = there.descriptors.clone();
            merged.extend(
                found
                    .descriptors
                    .iter()
                    .filter(|d| descriptor_digest(d).is_some_and(|d| !known.contains(&d)))
                    .cloned(),
            );
            if merged.len() > there.descriptors.len() {
                self.client
                    .put_fallback_index(&target_repository, subject, &merged)
                    .await
                    .map_err(push_error)?;
            }
        }
        Ok(digests.len())
    }

    async fn copy_cosign_tags(
        &self,
        source: &Reference,
        target: &Reference,
        subject: &Digest,
        progress: &dyn ProgressSink,
    ) -> Result<usize, CopyError> {
        let source_repository = Repository::of(source);
        let mut copied = 0;
        for suffix in COSIGN_SUFFIXES {
            let tag = format!("{}.{suffix}", fallback_tag(subject));
            let present = self
                .client
                .head_manifest_in(&source_repository, ManifestRef::Tag(&tag))
                .await
                .map_err(|error| CopyError::Source {
                    image: source.to_string(),
                    source: error,
                })?;
            if present.is_some() {
                let from = Reference::new(source.domain(), source.path(), Some(&tag), None);
                let to = Reference::new(target.domain(), target.path(), Some(&tag), None);
                if let (Ok(from), Ok(to)) = (from, to) {
                    self.copy(&from, &to, progress).await?;
                    copied += 1;
                }
            }
        }
        Ok(copied)
    }
}

/// `reference`'s repository, at `digest` (no tag).
fn with_digest(reference: &Reference, digest: &Digest) -> Reference {
    Reference::new(
        reference.domain(),
        reference.path(),
        None,
        Some(digest.clone()),
    )
    .expect("a repository that held an image takes a digest")
}

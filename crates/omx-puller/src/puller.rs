//! Bringing one plan's images into the target, concurrently, each to its own end state.
//!
//! Over 600 lines because one image's way (skip, prime through the cache, copy, verify) reads
//! best in one place: its steps share the puller's state and hand each other what they found.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use omx_aws::{AwsError, Ecr};
use omx_core::namespace::Method;
use omx_core::pull_plan::{PlannedImage, PullPlan};
use omx_core::report::{error_chain, human_bytes, ImageReport, ImageStatus, RunReport};
use omx_core::strategy::Strategy;
use omx_core::{Digest, Reference, ReferenceError};
use omx_registry::{
    CopyEngine, CopyError, CopyReport, Known, ManifestDescriptor, ManifestKind, ManifestRef,
    ProgressSink, RegistryError, Repository,
};

use crate::budget::BudgetPlan;
use crate::target::ResolvedTarget;

/// Choices that apply to every image of a run.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Re-copy a tag whose upstream now points at another digest (otherwise an existing tag is
    /// left alone).
    pub refresh: bool,
    /// Plan and check what exists; change nothing.
    pub dry_run: bool,
    /// Images worked on at once (blob transfers are bounded separately by the copy engine).
    pub image_concurrency: usize,
    /// Copy each copied image's referrers (signatures, attestations, SBOMs) along with it.
    pub with_referrers: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            refresh: false,
            dry_run: false,
            image_concurrency: 8,
            with_referrers: false,
        }
    }
}

/// What a dry run's message says of an image it could not check.
pub const COULD_NOT_CHECK: &str = "could not check";

/// Why one image could not be brought over.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the target reference is invalid: {0}")]
    Reference(#[from] ReferenceError),
    #[error("source image {0} does not exist")]
    SourceNotFound(String),
    #[error("verification failed: {target} serves {found}, expected {expected}")]
    Verification {
        target: String,
        expected: Digest,
        found: String,
    },
    #[error(
        "{target} is an immutable tag holding {held}; upstream is now {upstream} and ECR refuses \
         to overwrite an immutable tag (copy it under a new tag, or make the repository's tags \
         MUTABLE)"
    )]
    ImmutableTag {
        target: String,
        held: Digest,
        upstream: Digest,
    },
    #[error(
        "the pull-through cache still serves {cached} for {target} while upstream is {upstream}: \
         ECR re-checks a cached tag at most once every 24 hours, counted from its last pull \
         (pin the image by digest, or pull it again later)"
    )]
    StaleCache {
        target: String,
        cached: Digest,
        upstream: Digest,
    },
}

/// Brings images into one target registry.
pub struct Puller {
    pub(crate) engine: CopyEngine,
    pub(crate) target: ResolvedTarget,
    pub(crate) options: PullOptions,
}

/// What happened to an image that did not fail.
struct Done {
    status: ImageStatus,
    digest: Option<Digest>,
    message: String,
    /// Blob bytes uploaded, when this run copied.
    bytes_copied: Option<u64>,
    /// Referrers brought along (`with_referrers`), when the image was copied rather than
    /// primed through the pull-through cache.
    referrers: Option<usize>,
}

/// An image HealthOmics fetches itself: nothing to copy or prime, and the report says how it
/// will get there.
fn native(image: &PlannedImage) -> Done {
    let how = match image.method {
        Method::PullThroughCache => "through its pull-through cache registry mapping",
        Method::Copy => "by copying it with the registry mapping's credential",
    };
    Done {
        status: ImageStatus::Native,
        digest: None,
        message: format!("not copied: HealthOmics fetches it on first use, {how}"),
        bytes_copied: None,
        referrers: None,
    }
}

impl Puller {
    /// `engine` must reach the target's `api_host` with credentials for it (for ECR, an
    /// [`crate::EcrCredentials`] in its client's credential chain).
    pub fn new(engine: CopyEngine, target: ResolvedTarget, options: PullOptions) -> Puller {
        Puller {
            engine,
            target,
            options,
        }
    }

    pub fn target(&self) -> &ResolvedTarget {
        &self.target
    }

    /// Brings every planned image over, `image_concurrency` at a time, calling `on_done` as each
    /// one ends. The report lists the images in plan order, and carries the plan's entry errors.
    pub async fn run(
        &self,
        plan: &PullPlan,
        progress: &dyn ProgressSink,
        on_done: &(dyn Fn(&ImageReport) + Sync),
    ) -> RunReport {
        self.run_within(plan, &BudgetPlan::default(), progress, on_done)
            .await
    }

    /// [`Puller::run`] within `budget` ([`Puller::plan_budget`]): the images it leaves out are
    /// reported `FAILED` with its reason at once, untouched.
    pub async fn run_within(
        &self,
        plan: &PullPlan,
        budget: &BudgetPlan,
        progress: &dyn ProgressSink,
        on_done: &(dyn Fn(&ImageReport) + Sync),
    ) -> RunReport {
        let positioned: Vec<(usize, &PlannedImage)> = plan.images.iter().enumerate().collect();
        let images = reports_in_order(
            &positioned,
            self.options.image_concurrency,
            |(position, image)| async move {
                let report = match budget.left_out(*position) {
                    Some(reason) => self.not_brought(image, reason),
                    None => self.pull_image(image, progress).await,
                };
                on_done(&report);
                report
            },
        )
        .await;
        RunReport {
            images,
            errors: plan.errors.clone(),
        }
    }

    /// The report of an image this run does not try to bring over, and why.
    pub fn not_brought(&self, image: &PlannedImage, reason: &str) -> ImageReport {
        ImageReport {
            input: image.input.clone(),
            source: image.source.to_string(),
            target: image.target.clone(),
            digest: None,
            status: ImageStatus::Failed,
            message: reason.to_string(),
            bytes_copied: None,
        }
    }

    /// Brings one image over; never fails, a failure is a `FAILED` report.
    pub async fn pull_image(
        &self,
        image: &PlannedImage,
        progress: &dyn ProgressSink,
    ) -> ImageReport {
        self.pull_image_known(image, None, progress).await
    }

    /// What the target holds under the name a copy of `image` writes (the tag of a pinned
    /// `tag@digest`, since the digest may be there under another tag): the answer a caller that
    /// asks first hands to [`Puller::pull_image_known`], so the copy does not ask again.
    pub async fn target_manifest(
        &self,
        image: &PlannedImage,
    ) -> Result<Option<ManifestDescriptor>, PullError> {
        let written = written_name(&self.target.api_reference(image)?);
        Ok(self.engine.client().head_manifest(&written).await?)
    }

    /// [`Puller::pull_image`] with what [`Puller::target_manifest`] said, when the caller asked.
    pub async fn pull_image_known(
        &self,
        image: &PlannedImage,
        target: Option<Option<ManifestDescriptor>>,
        progress: &dyn ProgressSink,
    ) -> ImageReport {
        let outcome = self.bring(image, target, progress).await;
        let (status, digest, mut message, bytes_copied) = match outcome {
            Ok(mut done) => {
                if self.options.with_referrers && !self.options.dry_run {
                    done.message.push_str(&match done.referrers {
                        Some(count) => format!("; referrers: {count}"),
                        None => "; referrers: not copied (the pull-through cache brings only \
                                 the image)"
                            .to_string(),
                    });
                }
                (done.status, done.digest, done.message, done.bytes_copied)
            }
            // A dry run plans every image and checks what it can: a registry or AWS that cannot
            // be asked leaves the image planned, with what could not be checked and why.
            Err(error @ (PullError::Aws(_) | PullError::Registry(_) | PullError::Copy(_)))
                if self.options.dry_run =>
            {
                let why = error_chain(&error);
                (
                    ImageStatus::Planned,
                    None,
                    format!("dry run: would bring it over; {COULD_NOT_CHECK}: {why}"),
                    None,
                )
            }
            Err(error) => (ImageStatus::Failed, None, error_chain(&error), None),
        };
        for warning in &image.warnings {
            message.push_str("; warning: ");
            message.push_str(warning);
        }
        ImageReport {
            input: image.input.clone(),
            source: image.source.to_string(),
            target: image.target.clone(),
            digest,
            status,
            message,
            bytes_copied,
        }
    }

    /// `target`: what the target holds under the name a copy writes, when already asked.
    async fn bring(
        &self,
        image: &PlannedImage,
        target: Option<Option<ManifestDescriptor>>,
        progress: &dyn ProgressSink,
    ) -> Result<Done, PullError> {
        if image.strategy == Strategy::Native {
            return Ok(native(image));
        }
        let api_target = self.target.api_reference(image)?;
        match (&self.target.ecr, image.method) {
            (Some(ecr), Method::PullThroughCache) if image.target_tag.is_none() => {
                // ECR's cache imports on a pull by tag only: an uncached image asked for by
                // digest answers 404 (aws/containers-roadmap #2837). Without a tag, copy it.
                let mut done = self
                    .copy(Some(ecr), image, &api_target, target, progress)
                    .await?;
                if done.status == ImageStatus::Succeeded {
                    done.message.push_str(
                        " (copied: the pull-through cache cannot import an image by digest alone)",
                    );
                }
                Ok(done)
            }
            (Some(ecr), Method::PullThroughCache) => {
                self.prime_through_cache(ecr, image, &api_target, progress)
                    .await
            }
            (ecr, Method::Copy) => {
                self.copy(ecr.as_ref(), image, &api_target, target, progress)
                    .await
            }
            (None, Method::PullThroughCache) => {
                let mut done = self
                    .copy(None, image, &api_target, target, progress)
                    .await?;
                done.message
                    .push_str(" (pull-through cache needs an ECR target: copied instead)");
                Ok(done)
            }
        }
    }

    /// [`Puller::copy_image`], then (`with_referrers`) the image's referrers, counted in the
    /// message.
    async fn copy(
        &self,
        ecr: Option<&Ecr>,
        image: &PlannedImage,
        api_target: &Reference,
        target: Option<Option<ManifestDescriptor>>,
        progress: &dyn ProgressSink,
    ) -> Result<Done, PullError> {
        let mut done = self
            .copy_image(ecr, image, api_target, target, progress)
            .await?;
        if let (true, false, Some(digest)) = (
            self.options.with_referrers,
            self.options.dry_run,
            &done.digest,
        ) {
            let count = self
                .engine
                .copy_referrers(&image.source, api_target, digest, progress)
                .await?;
            done.referrers = Some(count);
        }
        Ok(done)
    }

    /// Copies unless the target already has the image (`target`, when the caller asked). The
    /// ECR repository is prepared only once the image is known to exist somewhere, so a typo in
    /// a manifest leaves no empty repository.
    async fn copy_image(
        &self,
        ecr: Option<&Ecr>,
        image: &PlannedImage,
        api_target: &Reference,
        target: Option<Option<ManifestDescriptor>>,
        progress: &dyn ProgressSink,
    ) -> Result<Done, PullError> {
        let client = self.engine.client();
        let written = written_name(api_target);
        let existing = match target {
            Some(known) => known,
            None => client.head_manifest(&written).await?,
        };
        if let Some(existing) = &existing {
            // A pin is the image it names; a tag is left alone unless asked to follow its
            // upstream (the engine then finds out cheaply whether it moved).
            let in_place = match image.source.digest() {
                Some(pinned) => existing.digest == *pinned,
                None => !self.options.refresh,
            };
            if in_place {
                self.prepare_copy_target(ecr, image).await?;
                return Ok(Done {
                    status: ImageStatus::Skipped,
                    digest: Some(existing.digest.clone()),
                    bytes_copied: None,
                    referrers: None,
                    message: "already present".to_string(),
                });
            }
        }
        // Upstream is asked with a HEAD, which registries' pull limits do not count, when a tag
        // already there may be up to date (a refresh) and in a dry run; a copy GETs the manifest
        // once and hands it to the engine.
        let upstream_digest = match existing.is_some() || self.options.dry_run {
            true => match client.head_manifest(&image.source).await? {
                Some(upstream) => Some(upstream.digest),
                None => return Err(PullError::SourceNotFound(image.source.to_string())),
            },
            false => None,
        };
        if let (Some(existing), Some(upstream)) = (&existing, &upstream_digest) {
            if existing.digest == *upstream {
                return Ok(Done {
                    status: ImageStatus::Skipped,
                    digest: Some(existing.digest.clone()),
                    bytes_copied: None,
                    referrers: None,
                    message: "up to date with upstream".to_string(),
                });
            }
        }
        if let (Some(existing), Some(upstream), Some(ecr), Some(tag)) =
            (&existing, &upstream_digest, ecr, &image.target_tag)
        {
            // ECR refuses any push to an existing immutable tag: say so before moving a byte.
            let mutability = ecr.tag_mutability(&image.target_repository).await?;
            if mutability.is_some_and(|m| m.is_immutable(tag)) {
                return Err(PullError::ImmutableTag {
                    target: image.target.clone(),
                    held: existing.digest.clone(),
                    upstream: upstream.clone(),
                });
            }
        }
        if self.options.dry_run {
            return Ok(Done {
                status: ImageStatus::Planned,
                digest: None,
                bytes_copied: None,
                referrers: None,
                message: match existing {
                    Some(_) => "dry run: would check upstream and copy if it moved".to_string(),
                    None => "dry run: would copy".to_string(),
                },
            });
        }
        let source_manifest = match client.get_manifest(&image.source).await {
            Ok(manifest) => Some(manifest),
            Err(error) if error.is_not_found() => {
                return Err(PullError::SourceNotFound(image.source.to_string()))
            }
            Err(error) => return Err(error.into()),
        };
        self.prepare_copy_target(ecr, image).await?;
        // The HEAD above asked for the name the engine writes.
        let known = Known {
            source: source_manifest,
            target: Some(existing),
        };
        let report = self
            .engine
            .copy_known(&image.source, api_target, known, progress)
            .await?;
        if !report.confirmed_by_target {
            self.verify(&written, &report.digest).await?;
        }
        Ok(Done {
            status: if report.up_to_date {
                ImageStatus::Skipped
            } else {
                ImageStatus::Succeeded
            },
            message: describe_copy(&report),
            digest: Some(report.digest),
            bytes_copied: Some(report.bytes_copied),
            referrers: None,
        })
    }

    async fn prepare_copy_target(
        &self,
        ecr: Option<&Ecr>,
        image: &PlannedImage,
    ) -> Result<(), AwsError> {
        match ecr {
            Some(ecr) if !self.options.dry_run => {
                prepare_repository(ecr, &image.target_repository, false).await
            }
            _ => Ok(()),
        }
    }

    /// Makes ECR fetch the image through its pull-through-cache rule (the image then exists before
    /// any workflow runs), checks it is the upstream image, then tags and grants its repository.
    ///
    /// The cache imports on a pull by tag only (aws/containers-roadmap #2837): a digest-pinned
    /// image with a tag is primed by its tag and must then be the pinned digest; when the tag has
    /// moved on upstream, the pinned image is copied in by digest instead.
    async fn prime_through_cache(
        &self,
        ecr: &Ecr,
        image: &PlannedImage,
        api_target: &Reference,
        progress: &dyn ProgressSink,
    ) -> Result<Done, PullError> {
        let client = self.engine.client();
        let tag = image.target_tag.as_deref().unwrap_or("latest");
        let pinned = image.source.digest();
        let cached = match pinned {
            // Asking the registry by digest imports nothing: it only tells whether it is cached.
            Some(digest) => client
                .head_manifest(api_target)
                .await?
                .map(|found| found.digest)
                .filter(|found| found == digest),
            None => ecr.image_digest(&image.target_repository, tag).await?,
        };
        if let Some(digest) = &cached {
            if pinned.is_some() || !self.options.refresh {
                if !self.options.dry_run {
                    prepare_repository(ecr, &image.target_repository, true).await?;
                }
                return Ok(Done {
                    status: ImageStatus::Skipped,
                    digest: Some(digest.clone()),
                    bytes_copied: None,
                    referrers: None,
                    message: "already cached".to_string(),
                });
            }
        }
        if self.options.dry_run {
            return Ok(Done {
                status: ImageStatus::Planned,
                digest: None,
                bytes_copied: None,
                referrers: None,
                message: "dry run: would prime through the pull-through cache".to_string(),
            });
        }
        let by_tag = Reference::new(api_target.domain(), api_target.path(), Some(tag), None)?;
        let primed = client.get_manifest(&by_tag).await?;
        if let ManifestKind::Index(index) = &primed.kind {
            // ECR caches what is pulled: fetch every platform so none is missing at run time.
            let repository = Repository::of(api_target);
            for child in &index.manifests {
                get_child_after_import(client, &repository, &child.digest).await?;
            }
        }
        let upstream = client
            .head_manifest(&image.source)
            .await?
            .ok_or_else(|| PullError::SourceNotFound(image.source.to_string()))?;
        if let Some(pinned) = pinned {
            if primed.digest != *pinned {
                // The tag moved on upstream: the cache now holds its new image, the pinned one is
                // brought in by digest (pushed under no tag, so the cached tag stays upstream's).
                let by_digest = Reference::new(
                    api_target.domain(),
                    api_target.path(),
                    None,
                    Some(pinned.clone()),
                )?;
                let mut done = self
                    .copy(Some(ecr), image, &by_digest, None, progress)
                    .await?;
                done.message.push_str(&format!(
                    " (copied by digest: its tag {tag} now points at {} upstream)",
                    primed.digest.short()
                ));
                return Ok(done);
            }
        }
        if upstream.digest != primed.digest {
            return Err(match &cached {
                Some(_) => PullError::StaleCache {
                    target: image.target.clone(),
                    cached: primed.digest,
                    upstream: upstream.digest,
                },
                None => PullError::Verification {
                    target: image.target.clone(),
                    expected: upstream.digest,
                    found: primed.digest.to_string(),
                },
            });
        }
        prepare_repository(ecr, &image.target_repository, true).await?;
        let refreshed = cached.as_ref() == Some(&primed.digest);
        Ok(Done {
            status: if refreshed {
                ImageStatus::Skipped
            } else {
                ImageStatus::Succeeded
            },
            digest: Some(primed.digest),
            bytes_copied: None,
            referrers: None,
            message: if refreshed {
                "already cached, same as upstream".to_string()
            } else {
                "primed through the pull-through cache".to_string()
            },
        })
    }

    /// The target must now serve exactly the digest the copy produced.
    async fn verify(&self, api_target: &Reference, expected: &Digest) -> Result<(), PullError> {
        let served = self.engine.client().head_manifest(api_target).await?;
        match served {
            Some(found) if found.digest == *expected => Ok(()),
            other => Err(PullError::Verification {
                target: api_target.to_string(),
                expected: expected.clone(),
                found: other.map_or("nothing".to_string(), |d| d.digest.to_string()),
            }),
        }
    }
}

/// How long a child manifest of an index the cache has just imported may answer 404: ECR does not
/// document whether the children are readable the instant the index answers (ECR user guide,
/// "Pull through cache": pulling an index imports every image it references).
const CHILD_IMPORT_WAIT: [Duration; 6] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
    Duration::from_secs(4),
];

/// Fetches a child of a freshly imported index, waiting briefly (about 10 s in all) while it is
/// not readable yet.
async fn get_child_after_import(
    client: &omx_registry::RegistryClient,
    repository: &Repository,
    digest: &Digest,
) -> Result<(), RegistryError> {
    let mut waits = CHILD_IMPORT_WAIT.iter();
    loop {
        match client
            .get_manifest_in(repository, ManifestRef::Digest(digest))
            .await
        {
            Err(error @ RegistryError::NotFound { .. }) => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => return Err(error),
            },
            other => return other.map(|_| ()),
        }
    }
}

/// The name a copy to `api_target` writes, and the one asked for to see whether the image is in
/// place: a pinned `tag@digest` is in place when its tag points at the pin, so its tag.
fn written_name(api_target: &Reference) -> Reference {
    match (api_target.tag(), api_target.digest()) {
        (Some(_), Some(_)) => api_target.without_digest(),
        _ => api_target.clone(),
    }
}

/// Works on `items` up to `concurrency` at a time and returns their reports in the items' order,
/// whatever order they end in.
pub async fn reports_in_order<'a, T, R, F, Fut>(
    items: &'a [T],
    concurrency: usize,
    work: F,
) -> Vec<R>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    let mut reports: Vec<(usize, R)> = stream::iter(items.iter().enumerate())
        .map(|(position, item)| {
            let report = work(item);
            async move { (position, report.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    reports.sort_by_key(|(position, _)| *position);
    reports.into_iter().map(|(_, report)| report).collect()
}

/// The repository exists, carries our tag when we caused it (`made_by_cache`: a pull-through
/// cache pull this tool made created it), and lets HealthOmics pull.
pub async fn prepare_repository(
    ecr: &Ecr,
    name: &str,
    made_by_cache: bool,
) -> Result<(), AwsError> {
    let state = ecr.ensure_repository(name).await?;
    if made_by_cache && !state.created {
        ecr.tag_as_created_by_us(&state).await?;
    }
    ecr.ensure_omics_policy(name).await?;
    Ok(())
}

fn describe_copy(report: &CopyReport) -> String {
    if report.up_to_date {
        return "up to date with upstream".to_string();
    }
    let mut message = format!(
        "copied {} blob{} ({}); {} already present, {} mounted",
        report.blobs_copied,
        if report.blobs_copied == 1 { "" } else { "s" },
        human_bytes(report.bytes_copied),
        report.blobs_skipped,
        report.blobs_mounted
    );
    for warning in &report.warnings {
        message.push_str("; warning: ");
        message.push_str(&warning.to_string());
    }
    message
}

//! Bringing one plan's images into the target, concurrently, each to its own end state.

use futures_util::stream::{self, StreamExt};
use omx_aws::{AwsError, Ecr};
use omx_core::namespace::Method;
use omx_core::plan::{PlannedImage, PullPlan};
use omx_core::report::{error_chain, ImageReport, ImageStatus, RunReport};
use omx_core::{Digest, Reference, ReferenceError};
use omx_registry::{
    CopyEngine, CopyError, CopyReport, ManifestKind, ManifestRef, ProgressSink, RegistryError,
    Repository,
};

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
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            refresh: false,
            dry_run: false,
            image_concurrency: 8,
        }
    }
}

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
}

/// Brings images into one target registry.
pub struct Puller {
    engine: CopyEngine,
    target: ResolvedTarget,
    options: PullOptions,
}

/// What happened to an image that did not fail.
struct Done {
    status: ImageStatus,
    digest: Option<Digest>,
    message: String,
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
        let images = reports_in_order(
            &plan.images,
            self.options.image_concurrency,
            |image| async {
                let report = self.pull_image(image, progress).await;
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

    /// Brings one image over; never fails, a failure is a `FAILED` report.
    pub async fn pull_image(
        &self,
        image: &PlannedImage,
        progress: &dyn ProgressSink,
    ) -> ImageReport {
        let outcome = self.bring(image, progress).await;
        let (status, digest, mut message) = match outcome {
            Ok(done) => (done.status, done.digest, done.message),
            Err(error) => (ImageStatus::Failed, None, error_chain(&error)),
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
        }
    }

    async fn bring(
        &self,
        image: &PlannedImage,
        progress: &dyn ProgressSink,
    ) -> Result<Done, PullError> {
        let api_target = self.target.api_reference(image)?;
        match (&self.target.ecr, image.method) {
            (Some(ecr), Method::PullThroughCache) => {
                self.prime_through_cache(ecr, image, &api_target).await
            }
            (ecr, Method::Copy) => self.copy(ecr.as_ref(), image, &api_target, progress).await,
            (None, Method::PullThroughCache) => {
                let mut done = self.copy(None, image, &api_target, progress).await?;
                done.message
                    .push_str(" (pull-through cache needs an ECR target: copied instead)");
                Ok(done)
            }
        }
    }

    /// Copies unless the target already has the image. The ECR repository is prepared only once
    /// the image is known to exist somewhere, so a typo in a manifest leaves no empty repository.
    async fn copy(
        &self,
        ecr: Option<&Ecr>,
        image: &PlannedImage,
        api_target: &Reference,
        progress: &dyn ProgressSink,
    ) -> Result<Done, PullError> {
        let client = self.engine.client();
        let existing = client.head_manifest(api_target).await?;
        if let Some(existing) = &existing {
            // A digest reference that exists is the image; a tag is left alone unless asked to
            // follow its upstream (the engine then finds out cheaply whether it moved).
            if image.source.digest().is_some() || !self.options.refresh {
                self.prepare_copy_target(ecr, image).await?;
                return Ok(Done {
                    status: ImageStatus::Skipped,
                    digest: Some(existing.digest.clone()),
                    message: "already present".to_string(),
                });
            }
        }
        if client.head_manifest(&image.source).await?.is_none() {
            return Err(PullError::SourceNotFound(image.source.to_string()));
        }
        if self.options.dry_run {
            return Ok(Done {
                status: ImageStatus::Planned,
                digest: None,
                message: match existing {
                    Some(_) => "dry run: would check upstream and copy if it moved".to_string(),
                    None => "dry run: would copy".to_string(),
                },
            });
        }
        self.prepare_copy_target(ecr, image).await?;
        let report = self
            .engine
            .copy(&image.source, api_target, progress)
            .await?;
        self.verify(api_target, &report.digest).await?;
        Ok(Done {
            status: if report.up_to_date {
                ImageStatus::Skipped
            } else {
                ImageStatus::Succeeded
            },
            message: describe_copy(&report),
            digest: Some(report.digest),
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
    async fn prime_through_cache(
        &self,
        ecr: &Ecr,
        image: &PlannedImage,
        api_target: &Reference,
    ) -> Result<Done, PullError> {
        if let Some(tag) = &image.target_tag {
            if image.source.digest().is_none() {
                if let Some(digest) = ecr.image_digest(&image.target_repository, tag).await? {
                    if !self.options.dry_run {
                        prepare_repository(ecr, &image.target_repository, true).await?;
                    }
                    return Ok(Done {
                        status: ImageStatus::Skipped,
                        digest: Some(digest),
                        message: "already cached".to_string(),
                    });
                }
            }
        }
        if self.options.dry_run {
            return Ok(Done {
                status: ImageStatus::Planned,
                digest: None,
                message: "dry run: would prime through the pull-through cache".to_string(),
            });
        }
        let client = self.engine.client();
        let primed = client.get_manifest(api_target).await?;
        if let ManifestKind::Index(index) = &primed.kind {
            // ECR caches what is pulled: fetch every platform so none is missing at run time.
            let repository = Repository::of(api_target);
            for child in &index.manifests {
                client
                    .get_manifest_in(&repository, ManifestRef::Digest(&child.digest))
                    .await?;
            }
        }
        let upstream = client
            .head_manifest(&image.source)
            .await?
            .ok_or_else(|| PullError::SourceNotFound(image.source.to_string()))?;
        if upstream.digest != primed.digest {
            return Err(PullError::Verification {
                target: image.target.clone(),
                expected: upstream.digest,
                found: primed.digest.to_string(),
            });
        }
        prepare_repository(ecr, &image.target_repository, true).await?;
        Ok(Done {
            status: ImageStatus::Succeeded,
            digest: Some(primed.digest),
            message: "primed through the pull-through cache".to_string(),
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

/// Works on `items` up to `concurrency` at a time and returns their reports in the items' order,
/// whatever order they end in.
pub async fn reports_in_order<'a, T, F, Fut>(
    items: &'a [T],
    concurrency: usize,
    work: F,
) -> Vec<ImageReport>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = ImageReport>,
{
    let mut reports: Vec<(usize, ImageReport)> = stream::iter(items.iter().enumerate())
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

/// The repository exists, carries our tag when we caused it, and lets HealthOmics pull.
async fn prepare_repository(ecr: &Ecr, name: &str, made_by_cache: bool) -> Result<(), AwsError> {
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
        "copied {} blob(s), {} byte(s); {} already present, {} mounted",
        report.blobs_copied, report.bytes_copied, report.blobs_skipped, report.blobs_mounted
    );
    for warning in &report.warnings {
        message.push_str("; warning: ");
        message.push_str(&warning.to_string());
    }
    message
}

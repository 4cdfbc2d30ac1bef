//! The Lambda functions of the serverless stack, as plain async handlers.
//!
//! Each binary in `src/bin` is a thin `lambda_runtime` wrapper around one handler here, so the
//! handlers run in-process in tests against moto and a local registry, and the Step Functions
//! payloads are the types below.
//!
//! - `omx-pull-image`: a task of the `omx-container-puller` state machine's Map; pulls one image with
//!   the same puller as the CLI, or answers `too_large` so the state machine hands the image to
//!   CodeBuild (a Lambda stops after 15 minutes).
//! - `omx-build-prepare`: the `omx-container-builder` state machine's first step for a bundle;
//!   fetches it from S3, computes its source digest and tells whether the target is up to date.
//! - `omx-apply-policy`: the EventBridge target for ECR `CreateRepository` events; merges the
//!   HealthOmics statement into the new repository's policy.

mod build_prepare;

pub use build_prepare::{BuildPrepareHandler, BuildPrepareRequest, BuildPrepareResponse};

use omx_aws::{AwsContext, PolicyChange};
use omx_core::manifest_file::PullEntry;
use omx_core::namespace::{Method, NamespaceTable};
use omx_core::pull_plan::{plan_pull, PlannedImage, TargetRegistry};
use omx_core::report::ImageStatus;
use omx_core::state_machine::PullResult;
use omx_core::Digest;
use omx_puller::{CredentialChain, EcrReach, PullOptions, Puller, ResolvedTarget, TargetOptions};
use omx_registry::{
    ClientConfig, CopyEngine, CopyOptions, ManifestDescriptor, ManifestKind, ManifestRef,
    NoProgress, RegistryClient, Repository,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Images whose blobs add up to more than this are handed to CodeBuild by default: at the
/// throughput a Lambda gets from public registries, larger copies risk the 15-minute limit.
pub const DEFAULT_MAX_LAMBDA_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// The input of `omx-pull-image`: one entry of the puller's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullImageRequest {
    /// The image reference as written in the manifest.
    pub image: String,
    /// Namespace rules (the `--namespaces` file's content) to apply on top of the built-in ones.
    #[serde(default)]
    pub namespaces: Option<Value>,
}

/// The output of `omx-pull-image`: the image's result in the execution's output (the state
/// machine's CodeBuild fallback writes its own in its place when the image is too large).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullImageResponse {
    #[serde(flatten)]
    pub result: PullResult,
    /// True when the image was left for the CodeBuild fallback.
    pub too_large: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Setup(String),
    #[error("the event has no repository name: {0}")]
    NoRepository(String),
    #[error(transparent)]
    Aws(#[from] omx_aws::AwsError),
}

/// Pulls single images into the account's ECR registry.
pub struct PullImageHandler {
    target: ResolvedTarget,
    /// Shared by invocations of a warm Lambda: connections and tokens are reused.
    client: RegistryClient,
    max_lambda_bytes: u64,
}

impl PullImageHandler {
    /// A handler for the ECR registry of `context` (its region, and `account` or STS's answer).
    pub async fn new(
        context: AwsContext,
        account: Option<String>,
        options: TargetOptions,
        max_lambda_bytes: u64,
    ) -> Result<PullImageHandler, HandlerError> {
        let target = ResolvedTarget::for_ecr(context, account, None, &options)
            .await
            .map_err(|e| HandlerError::Setup(e.to_string()))?;
        let client = RegistryClient::new(ClientConfig {
            credentials: CredentialChain::ecr(&target, EcrReach::AnyRegistry).build(),
            ..ClientConfig::default()
        })
        .map_err(|e| HandlerError::Setup(e.to_string()))?;
        Ok(PullImageHandler {
            target,
            client,
            max_lambda_bytes,
        })
    }

    /// The configuration the stack gives its Lambdas: `OMX_REGION`, `OMX_ACCOUNT`, optionally
    /// `OMX_ECR_REGISTRY_ENDPOINT` and `OMX_MAX_LAMBDA_BYTES`.
    pub async fn from_env() -> Result<PullImageHandler, HandlerError> {
        let region = std::env::var("OMX_REGION").ok();
        let account = std::env::var("OMX_ACCOUNT").ok();
        let max = match std::env::var("OMX_MAX_LAMBDA_BYTES") {
            Ok(text) => text.parse().map_err(|_| {
                HandlerError::Setup(format!("OMX_MAX_LAMBDA_BYTES={text:?} is not a number"))
            })?,
            Err(_) => DEFAULT_MAX_LAMBDA_BYTES,
        };
        let context = AwsContext::load(region, None).await?;
        let options = TargetOptions {
            ecr_registry_endpoint: std::env::var("OMX_ECR_REGISTRY_ENDPOINT").ok(),
            ..TargetOptions::default()
        };
        PullImageHandler::new(context, account, options, max).await
    }

    /// Pulls one image; every failure is a `FAILED` response, never an error of the Lambda (the
    /// state machine collects them all and fails the execution at the end).
    pub async fn handle(&self, request: PullImageRequest) -> PullImageResponse {
        let respond = |status, target, digest, message, too_large| PullImageResponse {
            result: PullResult {
                image: request.image.clone(),
                status,
                target,
                digest,
                message,
            },
            too_large,
        };
        let failed =
            |message: String, target| respond(ImageStatus::Failed, target, None, message, false);
        let image = match self.plan(&request) {
            Ok(image) => image,
            Err(message) => return failed(message, None),
        };
        // No blob-location cache (`CopyEngine::with_blob_cache`): a Lambda may write only
        // /tmp, which a cold start empties and concurrent invocations do not share, so a cache
        // there would rarely be read again; each invocation copies one image on its own.
        let puller = Puller::new(
            CopyEngine::new(self.client.clone(), CopyOptions::default()),
            self.target.clone(),
            PullOptions::default(),
        );
        let (image, sizing) = match self.sized(&puller, image).await {
            Ok(sized) => sized,
            Err((image, error)) => {
                let message = format!("cannot size {}: {error}", image.source);
                return failed(message, Some(image.target.clone()));
            }
        };
        if let Some(bytes) = sizing.too_large {
            let message = format!(
                "{bytes} bytes is more than this Lambda copies ({}): handed to CodeBuild",
                self.max_lambda_bytes
            );
            return respond(
                ImageStatus::Planned,
                Some(image.target.clone()),
                None,
                message,
                true,
            );
        }
        let report = puller
            .pull_image_known(&image, sizing.target, &NoProgress)
            .await;
        respond(
            report.status,
            Some(report.target),
            report.digest,
            report.message,
            false,
        )
    }

    fn plan(&self, request: &PullImageRequest) -> Result<PlannedImage, String> {
        let mut table = NamespaceTable::builtin();
        if let Some(rules) = &request.namespaces {
            table = table
                .with_user_rules(&rules.to_string())
                .map_err(|e| e.to_string())?;
        }
        let entry = PullEntry {
            index: 0,
            input: request.image.clone(),
        };
        let registry: &TargetRegistry = &self.target.registry;
        let mut plan = plan_pull(&[entry], &table, registry);
        match plan.errors.pop() {
            Some(error) => Err(error.error),
            None => Ok(plan.images.remove(0)),
        }
    }

    /// The image to pull and what sizing it learned: what the target holds under its name
    /// (handed to the puller, which then does not ask again) and its size when that is more
    /// than this Lambda copies (a copy not yet done whose blobs add up to more than the limit).
    /// A missing source is left to the puller to report. A manifest read to size the image pins
    /// it to that digest: the copy then reads it by digest from the client's cache instead of
    /// asking the source again (a second GET, which Docker Hub counts as another pull).
    async fn sized(
        &self,
        puller: &Puller,
        mut image: PlannedImage,
    ) -> Result<(PlannedImage, Sizing), (PlannedImage, String)> {
        match self.size_if_too_large(puller, &image).await {
            Ok(sizing) => {
                if let (Some(digest), None) = (&sizing.digest, image.source.digest()) {
                    image.source = image.source.with_digest(digest.clone());
                }
                Ok((image, sizing))
            }
            Err(error) => {
                let error = error.to_string();
                Err((image, error))
            }
        }
    }

    async fn size_if_too_large(
        &self,
        puller: &Puller,
        image: &PlannedImage,
    ) -> Result<Sizing, Box<dyn std::error::Error>> {
        let mut sizing = Sizing::default();
        if image.method != Method::Copy {
            return Ok(sizing);
        }
        let client = &self.client;
        let target = puller.target_manifest(image).await?;
        let present = target.is_some();
        sizing.target = Some(target);
        if present {
            return Ok(sizing);
        }
        let manifest = match client.get_manifest(&image.source).await {
            Ok(manifest) => manifest,
            Err(error) if error.is_not_found() => return Ok(sizing),
            Err(error) => return Err(error.into()),
        };
        let total = match &manifest.kind {
            ManifestKind::Image(single) => single.blobs().iter().map(|b| b.size).sum(),
            ManifestKind::Index(index) => {
                let repository = Repository::of(&image.source);
                let mut total = 0;
                for child in &index.manifests {
                    let child = client
                        .get_manifest_in(&repository, ManifestRef::Digest(&child.digest))
                        .await?;
                    if let ManifestKind::Image(single) = &child.kind {
                        total += single.blobs().iter().map(|b| b.size).sum::<u64>();
                    }
                }
                total
            }
        };
        sizing.digest = Some(manifest.digest);
        sizing.too_large = (total > self.max_lambda_bytes).then_some(total);
        Ok(sizing)
    }
}

/// What sizing an image learned on the way.
#[derive(Default)]
struct Sizing {
    /// What the target holds under the image's name, when it was asked.
    target: Option<Option<ManifestDescriptor>>,
    /// The source manifest's digest, when it was read.
    digest: Option<Digest>,
    /// The image's size, when that is more than this Lambda copies.
    too_large: Option<u64>,
}

/// The output of `omx-apply-policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPolicyResponse {
    pub repository: String,
    /// `updated` when the policy was written, `unchanged` when it already let omics pull.
    pub policy: String,
}

/// The repository an ECR `CreateRepository` event is about: CloudTrail API calls carry it in
/// `requestParameters`, pull-through-cache service events in `responseElements` (or both).
pub fn repository_of_event(event: &Value) -> Result<String, HandlerError> {
    let detail = &event["detail"];
    [
        &detail["requestParameters"]["repositoryName"],
        &detail["responseElements"]["repository"]["repositoryName"],
    ]
    .into_iter()
    .find_map(|value| value.as_str().filter(|name| !name.is_empty()))
    .map(str::to_string)
    .ok_or_else(|| HandlerError::NoRepository(truncated(&event.to_string())))
}

/// Merges the HealthOmics statement into the policy of the repository an event names.
pub async fn apply_policy(
    context: &AwsContext,
    event: &Value,
) -> Result<ApplyPolicyResponse, HandlerError> {
    let repository = repository_of_event(event)?;
    let change = context.ecr().ensure_omics_policy(&repository).await?;
    Ok(ApplyPolicyResponse {
        repository,
        policy: match change {
            PolicyChange::Unchanged => "unchanged",
            PolicyChange::Updated(_) => "updated",
        }
        .to_string(),
    })
}

fn truncated(text: &str) -> String {
    const LIMIT: usize = 300;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// JSON logs to CloudWatch, at the level `RUST_LOG` asks for.
pub fn init_lambda_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repository_names_come_from_api_calls_and_service_events() {
        let api_call = json!({"detail-type": "AWS API Call via CloudTrail",
            "detail": {"eventName": "CreateRepository",
                       "requestParameters": {"repositoryName": "dockerhub/ubuntu"}}});
        assert_eq!(repository_of_event(&api_call).unwrap(), "dockerhub/ubuntu");
        let service_event = json!({"detail-type": "AWS Service Event via CloudTrail",
            "detail": {"eventName": "CreateRepository", "eventType": "AwsServiceEvent",
                       "responseElements": {"repository": {"repositoryName": "quay/biocontainers/x"}}}});
        assert_eq!(
            repository_of_event(&service_event).unwrap(),
            "quay/biocontainers/x"
        );
        let err = repository_of_event(&json!({"detail": {}})).unwrap_err();
        assert!(err.to_string().contains("no repository name"), "{err}");
    }
}

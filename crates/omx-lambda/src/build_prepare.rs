//! `omx-build-prepare`: the builder state machine's first step for one bundle.

use std::time::Duration;

use omx_aws::{AwsContext, CodeBuild, S3};
use omx_builder::{
    BuildOptions, BuildPlan, BuildProgress, Builder, CodeBuildEngine, Engine,
    DEFAULT_CODEBUILD_PROJECT,
};
use omx_core::manifest_file::single_build;
use omx_core::report::{ImageReport, ImageStatus};
use omx_core::state_machine::{BuildItem, BuildResult};
use omx_puller::{CredentialChain, EcrReach, ResolvedTarget, TargetOptions};
use omx_registry::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::HandlerError;

/// One entry of the builder's manifest, as the state machine's Map passes it.
pub type BuildPrepareRequest = BuildItem;

/// Whether the bundle needs building; what the state machine's Choice and CodeBuild step read.
/// Its `result` is the build's in the execution's output when it is `SKIPPED` (up to date) or
/// `FAILED`; for `PLANNED` the CodeBuild step writes the result after building.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildPrepareResponse {
    #[serde(flatten)]
    pub result: BuildResult,
    /// The target already holds a build of exactly this source.
    pub skip: bool,
}

/// Resolves a bundle and compares it with what the target already carries.
pub struct BuildPrepareHandler {
    builder: Builder,
    target: ResolvedTarget,
}

struct Silent;

impl BuildProgress for Silent {
    fn step(&self, target: &str, message: &str) {
        tracing::info!(%target, "{message}");
    }
    fn done(&self, _: &ImageReport) {}
}

impl BuildPrepareHandler {
    pub async fn new(
        context: AwsContext,
        account: Option<String>,
        options: TargetOptions,
    ) -> Result<BuildPrepareHandler, HandlerError> {
        let s3 = S3::new(context.sdk_config());
        let codebuild = CodeBuild::new(context.sdk_config());
        let target = ResolvedTarget::for_ecr(context, account, None, &options)
            .await
            .map_err(|e| HandlerError::Setup(e.to_string()))?;
        let client = ClientConfig {
            credentials: CredentialChain::ecr(&target, EcrReach::Target).build(),
            ..ClientConfig::default()
        };
        // The engine is the state machine's CodeBuild step; this handler never builds.
        let engine = Engine::CodeBuild(CodeBuildEngine {
            client: codebuild,
            project: DEFAULT_CODEBUILD_PROJECT.to_string(),
            poll_interval: Duration::from_secs(10),
            project_buildspec: true,
        });
        let builder = Builder::new(
            engine,
            target.clone(),
            client,
            Some(s3),
            BuildOptions::default(),
        )
        .map_err(|e| HandlerError::Setup(e.to_string()))?;
        Ok(BuildPrepareHandler { builder, target })
    }

    /// Every failure is a `FAILED` response, for the state machine to collect.
    pub async fn handle(&self, request: BuildPrepareRequest) -> BuildPrepareResponse {
        let mut response = BuildPrepareResponse {
            result: BuildResult {
                source_uri: request.source_uri.clone(),
                target_image: request.target_image.clone(),
                target: None,
                source_digest: None,
                status: ImageStatus::Failed,
                message: String::new(),
            },
            skip: false,
        };
        let entries = single_build(&request.source_uri, &request.target_image);
        let mut plan = BuildPlan::new(&entries, &self.target.registry, std::path::Path::new("/"));
        plan.require_s3_sources("the serverless builder reads bundles from S3 only");
        if let Some(error) = plan.errors.pop() {
            response.result.message = error.error;
            return response;
        }
        let build = plan.builds.remove(0);
        let target = build.target.uri(&self.target.registry.host());
        response.result.target = Some(target.clone());
        match self.builder.assess(&build, &target, &Silent).await {
            Ok(assessment) => {
                response.result.source_digest = Some(assessment.source_digest.to_string());
                response.skip = assessment.up_to_date.is_some();
                (response.result.status, response.result.message) = match assessment.up_to_date {
                    Some(existing) => (
                        ImageStatus::Skipped,
                        format!("up to date: {target} ({existing}) was built from this source"),
                    ),
                    None => (ImageStatus::Planned, "to be built by CodeBuild".to_string()),
                };
            }
            Err(error) => response.result.message = error.to_string(),
        }
        response
    }
}

//! CodeBuild: starting a build of a bundle kept in S3 and following it to its end.

use std::fmt;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_codebuild::types::{
    EnvironmentVariable, EnvironmentVariableType, SourceType, StatusType,
};

use crate::endpoint::{self, Endpoint};
use crate::error::AwsError;

/// A CodeBuild client of one region.
#[derive(Debug, Clone)]
pub struct CodeBuild {
    client: aws_sdk_codebuild::Client,
    endpoint: Endpoint,
}

/// What to build: an existing project run on an S3 source, with overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartBuildRequest {
    pub project: String,
    /// The S3 source as CodeBuild names it: `bucket/path/bundle.zip` or `bucket/path/folder/`.
    pub source_location: String,
    /// Plain-text environment variables for the build, in order.
    pub environment: Vec<(String, String)>,
    /// A buildspec (YAML text) replacing the project's own; `None` keeps the project's.
    pub buildspec: Option<String>,
}

/// How a build stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStatus {
    InProgress,
    Succeeded,
    Failed,
    Fault,
    TimedOut,
    Stopped,
    /// A status this version does not know, as CodeBuild spelled it.
    Other(String),
}

impl BuildStatus {
    fn of(status: Option<&StatusType>) -> BuildStatus {
        match status {
            None => BuildStatus::InProgress,
            Some(StatusType::InProgress) => BuildStatus::InProgress,
            Some(StatusType::Succeeded) => BuildStatus::Succeeded,
            Some(StatusType::Failed) => BuildStatus::Failed,
            Some(StatusType::Fault) => BuildStatus::Fault,
            Some(StatusType::TimedOut) => BuildStatus::TimedOut,
            Some(StatusType::Stopped) => BuildStatus::Stopped,
            Some(other) => BuildStatus::Other(other.as_str().to_string()),
        }
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildStatus::InProgress => "IN_PROGRESS",
            BuildStatus::Succeeded => "SUCCEEDED",
            BuildStatus::Failed => "FAILED",
            BuildStatus::Fault => "FAULT",
            BuildStatus::TimedOut => "TIMED_OUT",
            BuildStatus::Stopped => "STOPPED",
            BuildStatus::Other(other) => other,
        })
    }
}

/// One build as CodeBuild reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `project:uuid`.
    pub id: String,
    pub status: BuildStatus,
    /// `QUEUED`, `BUILD`, `COMPLETED`...
    pub current_phase: Option<String>,
    /// CodeBuild has finished with the build (whatever its status).
    pub complete: bool,
    /// The CloudWatch Logs console link of the build's log.
    pub log_link: Option<String>,
}

impl CodeBuild {
    /// A client for `config`'s region, credentials and endpoint (`AWS_ENDPOINT_URL_CODEBUILD`...).
    pub fn new(config: &SdkConfig) -> CodeBuild {
        CodeBuild {
            client: aws_sdk_codebuild::Client::new(config),
            endpoint: Endpoint::from_config(&endpoint::CODEBUILD, config),
        }
    }

    /// Wraps an existing SDK client.
    pub fn from_client(client: aws_sdk_codebuild::Client) -> CodeBuild {
        let region = client.config().region().map(|region| region.to_string());
        CodeBuild {
            endpoint: Endpoint::regional(&endpoint::CODEBUILD, region.as_deref()),
            client,
        }
    }

    /// `StartBuild` of `request.project` with an S3 source override.
    pub async fn start_build(&self, request: &StartBuildRequest) -> Result<BuildInfo, AwsError> {
        const OPERATION: &str = "StartBuild";
        let target = format!("project {}", request.project);
        let environment = request
            .environment
            .iter()
            .map(|(name, value)| {
                EnvironmentVariable::builder()
                    .name(name)
                    .value(value)
                    .r#type(EnvironmentVariableType::Plaintext)
                    .build()
                    .map_err(|error| AwsError::unexpected(OPERATION, &target, error.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .start_build()
            .project_name(&request.project)
            .source_type_override(SourceType::S3)
            .source_location_override(&request.source_location)
            .set_environment_variables_override(Some(environment))
            .set_buildspec_override(request.buildspec.clone())
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(&self.endpoint, OPERATION, &target, error))?;
        let build = output
            .build_value()
            .ok_or_else(|| AwsError::unexpected(OPERATION, &target, "no build"))?;
        build_info(OPERATION, &target, build)
    }

    /// The current state of build `id` (`BatchGetBuilds`).
    pub async fn build(&self, id: &str) -> Result<BuildInfo, AwsError> {
        const OPERATION: &str = "BatchGetBuilds";
        let target = format!("build {id}");
        let output = self
            .client
            .batch_get_builds()
            .ids(id)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(&self.endpoint, OPERATION, &target, error))?;
        let build = output
            .builds()
            .iter()
            .find(|build| build.id() == Some(id))
            .ok_or_else(|| AwsError::unexpected(OPERATION, &target, "the build is not known"))?;
        build_info(OPERATION, &target, build)
    }

    /// Asks for the state of build `id` every `interval` until CodeBuild has finished with it.
    /// CodeBuild ends every build itself (the project's timeout at the latest), so this returns.
    pub async fn wait_until_complete(
        &self,
        id: &str,
        interval: Duration,
    ) -> Result<BuildInfo, AwsError> {
        loop {
            let info = self.build(id).await?;
            if info.complete || info.status != BuildStatus::InProgress {
                return Ok(info);
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn build_info(
    operation: &'static str,
    target: &str,
    build: &aws_sdk_codebuild::types::Build,
) -> Result<BuildInfo, AwsError> {
    let id = build
        .id()
        .ok_or_else(|| AwsError::unexpected(operation, target, "a build without id"))?;
    Ok(BuildInfo {
        id: id.to_string(),
        status: BuildStatus::of(build.build_status()),
        current_phase: build.current_phase().map(str::to_string),
        complete: build.build_complete(),
        log_link: build
            .logs()
            .and_then(|logs| logs.deep_link())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{create_codebuild_project, emulator_config};
    use omx_testenv::Moto;

    #[tokio::test]
    async fn starts_a_build_and_follows_it_to_its_end() {
        let Some(moto) = Moto::try_start() else {
            return;
        };
        let config = emulator_config(&moto.endpoint()).await;
        create_codebuild_project(&config, "omx-container-build").await;
        let codebuild = CodeBuild::new(&config);
        let request = StartBuildRequest {
            project: "omx-container-build".into(),
            source_location: "bundles/tool/".into(),
            environment: vec![("OMX_TARGET_IMAGE".into(), "r/x:1".into())],
            buildspec: Some("version: 0.2\n".into()),
        };
        let started = codebuild.start_build(&request).await.unwrap();
        assert!(
            started.id.starts_with("omx-container-build:"),
            "{started:?}"
        );
        assert_eq!(started.status, BuildStatus::InProgress);
        assert!(!started.complete);
        assert!(
            started
                .log_link
                .as_deref()
                .is_some_and(|link| link.contains("cloudwatch")),
            "{started:?}"
        );

        let finished = codebuild
            .wait_until_complete(&started.id, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(finished.id, started.id);
        assert_eq!(finished.status, BuildStatus::Succeeded);
        assert_eq!(finished.current_phase.as_deref(), Some("COMPLETED"));
        assert_eq!(finished.status.to_string(), "SUCCEEDED");
    }

    #[tokio::test]
    async fn unknown_projects_and_builds_are_errors_naming_them() {
        let Some(moto) = Moto::try_start() else {
            return;
        };
        let codebuild = CodeBuild::new(&emulator_config(&moto.endpoint()).await);
        let request = StartBuildRequest {
            project: "missing-project".into(),
            source_location: "b/k.zip".into(),
            environment: vec![],
            buildspec: None,
        };
        let error = codebuild.start_build(&request).await.unwrap_err();
        assert_eq!(error.code(), Some("ResourceNotFoundException"), "{error}");
        assert!(error.to_string().contains("missing-project"), "{error}");
        let error = codebuild.build("missing-project:0000").await.unwrap_err();
        assert!(
            error.to_string().contains("build missing-project:0000")
                && error.to_string().contains("not known"),
            "{error}"
        );
    }
}

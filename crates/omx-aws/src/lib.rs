//! AWS adapters of omx-ecr-helper.
//!
//! [`AwsContext`] loads configuration the standard way (credential chain, profiles, region,
//! `AWS_ENDPOINT_URL*` overrides) and knows the caller's account; [`Ecr`] drives the ECR control
//! plane: repositories tagged `createdBy=omx-ecr-helper`, the HealthOmics repository and registry
//! policies (merged by [`omx_core::policy`], written only when they change), image lookups,
//! cached registry credentials, pull-through-cache rules and repository creation templates.
//! [`SecretsManager`] keeps the registry credentials HealthOmics copies with; [`S3`] lists and
//! streams build bundles; [`CodeBuild`] starts builds of them and follows them.
//!
//! Only a "not found" answer is ever read as absence; every other failure (access denied,
//! throttling, no credentials) is an [`AwsError`] naming the operation and what it was about.

mod codebuild;
mod context;
mod ecr;
mod endpoint;
mod error;
mod pull_through;
mod s3;
mod secrets_manager;
mod step_functions;
#[cfg(feature = "testing")]
pub mod testing;
mod token;

pub use codebuild::{BuildInfo, BuildStatus, CodeBuild, StartBuildRequest};
pub use context::AwsContext;
pub use ecr::{registry_host, Ecr, RepositoryState};
pub use error::AwsError;
pub use omx_core::policy::PolicyChange;
pub use pull_through::{
    CreationTemplate, PullThroughCacheRule, RuleState, TemplateScenario, TemplateState,
};
pub use s3::{ObjectReader, S3Object, S3};
pub use secrets_manager::{SecretChange, SecretsManager};
pub use step_functions::{Execution, ExecutionStatus, StepFunctions};
pub use token::{EcrToken, Secret, TOKEN_REFRESH_MARGIN};

/// The SDK configuration type, for callers that build one themselves (tests, emulators).
pub use aws_config::SdkConfig;

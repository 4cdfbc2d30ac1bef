//! Test support, behind the `testing` feature: SDK configuration for an AWS emulator on
//! loopback (moto), and [`recorded`] ECR exchanges for what the emulator cannot answer.

pub mod recorded;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::Credentials;

use crate::AwsContext;

/// The region every emulator test runs in.
pub const REGION: &str = "us-east-1";

/// Configuration for the emulator at `endpoint` (e.g. `http://127.0.0.1:PORT`), in [`REGION`],
/// with AWS's documented example credentials (the emulator accepts any).
pub async fn emulator_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "omx-aws testing",
        ))
        .load()
        .await
}

/// An [`AwsContext`] on the emulator at `endpoint`.
pub async fn emulator_context(endpoint: &str) -> AwsContext {
    AwsContext::from_config(emulator_config(endpoint).await).expect("the region is set")
}

/// Creates a CodeBuild project called `name` in the emulator, shaped like the stack's build
/// project (S3 source, privileged Linux container, no artifacts).
pub async fn create_codebuild_project(config: &SdkConfig, name: &str) {
    use aws_sdk_codebuild::types::{
        ArtifactsType, ComputeType, EnvironmentType, ProjectArtifacts, ProjectEnvironment,
        ProjectSource, SourceType,
    };
    aws_sdk_codebuild::Client::new(config)
        .create_project()
        .name(name)
        .source(
            ProjectSource::builder()
                .r#type(SourceType::S3)
                .location("bundles/placeholder/")
                .build()
                .expect("a complete project source"),
        )
        .artifacts(
            ProjectArtifacts::builder()
                .r#type(ArtifactsType::NoArtifacts)
                .build()
                .expect("complete project artifacts"),
        )
        .environment(
            ProjectEnvironment::builder()
                .r#type(EnvironmentType::LinuxContainer)
                .image("aws/codebuild/standard:7.0")
                .compute_type(ComputeType::BuildGeneral1Small)
                .privileged_mode(true)
                .build()
                .expect("a complete project environment"),
        )
        .service_role("arn:aws:iam::123456789012:role/omx-container-build")
        .send()
        .await
        .expect("CreateProject");
}

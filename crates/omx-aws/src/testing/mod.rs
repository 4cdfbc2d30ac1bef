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

//! `AwsContext::load` follows the standard AWS configuration conventions: named profiles from the
//! config and credentials files, the `--region` choice over the profile's region, and the
//! endpoint overrides `AWS_ENDPOINT_URL` and (winning for ECR) `AWS_ENDPOINT_URL_ECR`.
//!
//! This file holds a single test because it sets process environment variables, which every
//! test thread of a binary shares; cargo runs each integration-test file as its own process.

use std::env;
use std::fs;

use omx_aws::{AwsContext, AwsError};
use omx_testenv::{Moto, MOTO_ACCOUNT_ID};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Repository names in the moto at `endpoint`, asked directly with an explicit configuration.
async fn repositories_at(endpoint: &str) -> Vec<String> {
    aws_sdk_ecr::Client::new(&omx_aws::testing::emulator_config(endpoint).await)
        .describe_repositories()
        .send()
        .await
        .expect("DescribeRepositories")
        .repositories()
        .iter()
        .filter_map(|repository| repository.repository_name().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn profiles_regions_and_endpoint_overrides_follow_the_sdk_conventions() {
    let Some(everything) = Moto::try_start() else {
        return;
    };
    let Some(ecr_only) = Moto::try_start() else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("config");
    let credentials_file = dir.path().join("credentials");
    fs::write(
        &config_file,
        "[profile omx]\nregion = us-east-1\n\n[default]\n",
    )
    .unwrap();
    fs::write(
        &credentials_file,
        format!("[omx]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_STS",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        env::remove_var(name);
    }
    // Never let the region or credential chain reach for an instance metadata service.
    env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    env::set_var("AWS_CONFIG_FILE", &config_file);
    env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials_file);
    env::set_var("AWS_ENDPOINT_URL", everything.endpoint());
    env::set_var("AWS_ENDPOINT_URL_ECR", ecr_only.endpoint());

    let context = AwsContext::load(None, Some("omx".to_string()))
        .await
        .unwrap();
    assert_eq!(context.region(), "us-east-1", "the profile's region");
    // STS has no override of its own: it goes to AWS_ENDPOINT_URL.
    assert_eq!(context.account_id().await.unwrap(), MOTO_ACCOUNT_ID);
    // ECR goes to AWS_ENDPOINT_URL_ECR, not AWS_ENDPOINT_URL.
    let state = context
        .ecr()
        .ensure_repository("env/endpoint-check")
        .await
        .unwrap();
    assert!(state.created);
    assert_eq!(
        repositories_at(&ecr_only.endpoint()).await,
        vec!["env/endpoint-check"]
    );
    assert!(repositories_at(&everything.endpoint()).await.is_empty());

    let chosen = AwsContext::load(Some("eu-west-1".to_string()), Some("omx".to_string()))
        .await
        .unwrap();
    assert_eq!(chosen.region(), "eu-west-1", "an explicit region wins");

    // The default profile has no region and nothing else gives one.
    let error = AwsContext::load(None, None).await.unwrap_err();
    assert!(matches!(error, AwsError::NoRegion), "{error:?}");
}

//! Every kind of AWS failure the adapters translate, produced by recorded ECR answers or by real
//! SDK machinery on loopback (a credential chain with nothing to give, an endpoint that refuses
//! or never answers), read as one line a person can act on: what failed, why, and the fix —
//! never a `Debug` dump of an SDK type.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::credential_fn::provide_credentials_fn;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use omx_aws::testing::recorded::{ecr, failure};
use omx_aws::{AwsError, Ecr};
use omx_testenv::refusing_port;
use serde_json::json;

/// No message a person reads may look like a `Debug` dump of an SDK type.
fn assert_readable(error: &AwsError) -> String {
    let message = error.to_string();
    for dump in ["{ source:", "Error {", " { ", "Some(", "kind: ", "\n"] {
        assert!(!message.contains(dump), "{dump:?} in {message}");
    }
    message
}

fn describe_repository() -> serde_json::Value {
    json!({"repositoryNames": ["quay/tool"]})
}

/// `ensure_repository`'s first call, answered with the error `code`.
async fn create_repository_failing(code: &str, message: &str) -> AwsError {
    let (ecr, replay) = ecr(vec![failure(
        "CreateRepository",
        json!({
            "repositoryName": "quay/tool",
            "tags": [{"Key": "createdBy", "Value": "omx-ecr-helper"}],
        }),
        code,
        message,
    )]);
    let error = ecr.ensure_repository("quay/tool").await.unwrap_err();
    replay.assert_requests_match(&[]);
    error
}

#[tokio::test]
async fn access_denied_names_the_action_the_resource_and_the_statement_that_allows_it() {
    let error = create_repository_failing(
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: \
         ecr:CreateRepository on resource: arn:aws:ecr:us-east-1:123456789012:repository/quay/tool \
         because no identity-based policy allows the ecr:CreateRepository action",
    )
    .await;
    assert_eq!(error.code(), Some("AccessDeniedException"));
    assert_eq!(
        assert_readable(&error),
        "CreateRepository for repository quay/tool was denied: \
         arn:aws:iam::123456789012:user/ci may not perform ecr:CreateRepository on \
         arn:aws:ecr:us-east-1:123456789012:repository/quay/tool; allow it with the IAM policy \
         statement {\"Effect\": \"Allow\", \"Action\": \"ecr:CreateRepository\", \"Resource\": \
         \"arn:aws:ecr:us-east-1:123456789012:repository/quay/tool\"}"
    );
}

#[tokio::test]
async fn access_denied_without_details_names_the_operations_action() {
    let error = create_repository_failing("AccessDeniedException", "not authorized").await;
    let message = assert_readable(&error);
    assert!(
        message.contains("the caller may not perform ecr:CreateRepository on *"),
        "{message}"
    );
}

#[tokio::test]
async fn an_explicit_deny_is_not_answered_with_an_allow() {
    let error = create_repository_failing(
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: \
         ecr:CreateRepository on resource: * with an explicit deny in a service control policy",
    )
    .await;
    let message = assert_readable(&error);
    assert!(
        message.ends_with(
            "an explicit deny in a service control policy refuses it, so an Allow will not \
             help: ask the account's administrator"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn throttling_through_the_retries_says_to_wait() {
    let error = create_repository_failing("ThrottlingException", "Rate exceeded").await;
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert_eq!(
        assert_readable(&error),
        "CreateRepository for repository quay/tool was throttled by AWS (ThrottlingException) \
         through every retry: run again in a minute, or with fewer images at a time"
    );
}

#[tokio::test]
async fn the_repositories_per_registry_quota_is_named_with_what_to_do() {
    let error = create_repository_failing(
        "LimitExceededException",
        "The operation did not succeed because it would have exceeded a service limit for your \
         account.",
    )
    .await;
    let message = assert_readable(&error);
    assert!(
        message.starts_with(
            "CreateRepository for repository quay/tool hit an AWS service quota: The operation \
             did not succeed"
        ),
        "{message}"
    );
    assert!(message.ends_with("Service Quotas console"), "{message}");
}

#[tokio::test]
async fn an_expired_session_token_says_how_to_refresh_it() {
    let error = create_repository_failing(
        "ExpiredTokenException",
        "The security token included in the request is expired",
    )
    .await;
    let message = assert_readable(&error);
    assert!(
        message.starts_with("the AWS session token has expired: get fresh credentials"),
        "{message}"
    );
    assert!(message.contains("aws sso login"), "{message}");
}

#[tokio::test]
async fn unknown_credentials_say_how_to_configure_them() {
    let error = create_repository_failing(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    .await;
    assert_eq!(
        assert_readable(&error),
        "AWS rejected the credentials (UnrecognizedClientException) during CreateRepository: \
         run `aws configure`, set AWS_PROFILE to a configured profile, or run `aws sso login`"
    );
}

#[tokio::test]
async fn other_service_errors_keep_code_and_message() {
    let (ecr, replay) = ecr(vec![failure(
        "DescribeRepositories",
        describe_repository(),
        "InvalidParameterException",
        "Invalid parameter at 'repositoryName'",
    )]);
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    assert_eq!(
        assert_readable(&error),
        "DescribeRepositories for repository quay/tool failed: InvalidParameterException: \
         Invalid parameter at 'repositoryName'"
    );
    replay.assert_requests_match(&[]);
}

/// An ECR adapter on `endpoint` with `credentials`, one attempt per call.
fn ecr_at(endpoint: &str, credentials: SharedCredentialsProvider, timeout: Duration) -> Ecr {
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .build();
    Ecr::new(&config)
}

fn example_credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "example",
    ))
}

#[tokio::test]
async fn no_credentials_in_the_chain_names_the_sources_tried_and_the_fix() {
    // The SDK's own chain machinery: the environment has nothing, and instance metadata is a
    // loopback port that refuses, as on any machine outside EC2.
    let imds = aws_config::imds::Client::builder()
        .endpoint(format!("http://127.0.0.1:{}", refusing_port()))
        .unwrap()
        .max_attempts(1)
        .build();
    let chain = CredentialsProviderChain::first_try(
        "Environment",
        provide_credentials_fn(|| async {
            Err(CredentialsError::not_loaded("environment variable not set"))
        }),
    )
    .or_else(
        "Ec2InstanceMetadata",
        ImdsCredentialsProvider::builder().imds_client(imds).build(),
    );
    let ecr = ecr_at(
        &format!("http://127.0.0.1:{}", refusing_port()),
        SharedCredentialsProvider::new(chain),
        Duration::from_secs(10),
    );
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    assert_eq!(
        assert_readable(&error),
        "no AWS credentials found (tried environment variables, EC2 instance metadata): run \
         `aws configure`, set AWS_PROFILE to a configured profile, or run `aws sso login`"
    );
}

#[tokio::test]
async fn an_expired_sso_session_says_to_log_in_again() {
    let provider = provide_credentials_fn(|| async {
        Err(CredentialsError::provider_error(
            "the SSO token has expired and cannot be refreshed",
        ))
    });
    let ecr = ecr_at(
        &format!("http://127.0.0.1:{}", refusing_port()),
        SharedCredentialsProvider::new(provider),
        Duration::from_secs(10),
    );
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    assert_eq!(
        assert_readable(&error),
        "the AWS SSO session has expired: run `aws sso login` (with --profile NAME for a named \
         profile) and run again"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_endpoint() {
    let endpoint = format!("http://127.0.0.1:{}", refusing_port());
    let ecr = ecr_at(&endpoint, example_credentials(), Duration::from_secs(10));
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    let message = assert_readable(&error);
    assert!(
        message.starts_with(&format!(
            "DescribeRepositories for repository quay/tool failed: cannot reach {endpoint} ("
        )),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    assert!(
        message.ends_with("or the AWS_ENDPOINT_URL settings"),
        "{message}"
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_named_too() {
    // Connections are accepted by the kernel's backlog and then nothing is ever sent back.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let ecr = ecr_at(&endpoint, example_credentials(), Duration::from_millis(300));
    let started = Instant::now();
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        assert_readable(&error),
        format!(
            "DescribeRepositories for repository quay/tool failed: cannot reach {endpoint} (no \
             answer in time): check the network and any HTTPS_PROXY, or the AWS_ENDPOINT_URL \
             settings"
        )
    );
}

#[test]
fn no_region_says_how_to_set_one() {
    let message = assert_readable(&AwsError::NoRegion);
    assert!(message.starts_with("no AWS region is configured: pass --region"));
    assert!(message.contains("AWS_REGION"), "{message}");
}

#[tokio::test]
async fn a_credential_provider_that_fails_is_named_with_the_fix() {
    let provider = provide_credentials_fn(|| async {
        Err(CredentialsError::provider_timed_out(Duration::from_secs(5)))
    });
    let ecr = ecr_at(
        &format!("http://127.0.0.1:{}", refusing_port()),
        SharedCredentialsProvider::new(provider),
        Duration::from_secs(10),
    );
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    assert_eq!(
        assert_readable(&error),
        "could not load AWS credentials: the credential provider gave no answer within 5s: check \
         the profile, or run `aws configure`, set AWS_PROFILE to a configured profile, or run \
         `aws sso login`"
    );
}

#[tokio::test]
async fn an_answer_that_cannot_be_read_names_the_call_without_a_dump() {
    let (ecr, replay) = ecr(vec![omx_aws::testing::recorded::exchange(
        "DescribeRepositories",
        describe_repository(),
        200,
        json!("not the object DescribeRepositories answers"),
    )]);
    let error = ecr.tag_mutability("quay/tool").await.unwrap_err();
    let message = assert_readable(&error);
    assert!(
        message.starts_with("DescribeRepositories for repository quay/tool failed: "),
        "{message}"
    );
    replay.assert_requests_match(&[]);
}

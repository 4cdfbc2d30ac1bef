//! Recorded ECR exchanges for tests of what moto cannot answer (pull-through-cache rules and
//! repository creation templates, where it returns HTTP 500; `ecr:BatchImportUpstreamImage` in
//! registry policies, which it rejects) and failures it cannot be made to produce.
//!
//! The transport is the SDK's own `StaticReplayClient`: it answers each request with the next
//! recorded response, and its `assert_requests_match` then checks every request sent (URI, the
//! `x-amz-target` header naming the operation, content type, JSON body compared as JSON) and
//! that no recording was left unused.

use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};

pub use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};

use crate::Ecr;

/// The ECR endpoint the recordings are made against.
pub const ENDPOINT: &str = "https://api.ecr.us-east-1.amazonaws.com/";

/// One recorded exchange: the request expected for `operation` with `request` as its JSON
/// body, answered with `status` and `response`.
pub fn exchange(operation: &str, request: Value, status: u16, response: Value) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder()
            .method("POST")
            .uri(ENDPOINT)
            .header(
                "x-amz-target",
                format!("AmazonEC2ContainerRegistry_V20150921.{operation}"),
            )
            .header("content-type", "application/x-amz-json-1.1")
            .body(SdkBody::from(request.to_string()))
            .expect("a valid recorded request"),
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .body(SdkBody::from(response.to_string()))
            .expect("a valid recorded response"),
    )
}

/// A recorded exchange that ECR answers with the error `code` (HTTP 400).
pub fn failure(operation: &str, request: Value, code: &str, message: &str) -> ReplayEvent {
    exchange(
        operation,
        request,
        400,
        json!({"__type": code, "message": message}),
    )
}

/// An [`Ecr`] adapter in us-east-1 whose only transport is the recording. Retries are off, so
/// one recorded failure is one failed call.
pub fn ecr(events: Vec<ReplayEvent>) -> (Ecr, StaticReplayClient) {
    let replay = StaticReplayClient::new(events);
    let config = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "recorded",
        ))
        .retry_config(RetryConfig::disabled())
        .http_client(replay.clone())
        .build();
    (
        Ecr::from_client(aws_sdk_ecr::Client::from_conf(config)),
        replay,
    )
}

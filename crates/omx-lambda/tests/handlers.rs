//! The Lambda handlers in-process, fed the payloads Step Functions and EventBridge send, with a
//! real moto server (ECR control plane) and real `docker-registry` instances behind them: the
//! ECR-standing registry's htpasswd holds moto's token, so the login flow is the real one.

mod emulated_aws;

use emulated_aws::{create_repository, ecr_registry, pull_through_cache_created, put_bundle};
use omx_aws::testing::emulator_context;
use omx_aws::AwsContext;
use omx_core::policy::omics_grants;
use omx_core::report::ImageStatus;
use omx_lambda::{
    apply_policy, BuildPrepareHandler, BuildPrepareRequest, PullImageHandler, PullImageRequest,
    DEFAULT_MAX_LAMBDA_BYTES,
};
use omx_puller::TargetOptions;
use omx_testenv::{Format, ImageFixture, LayerSpec, Moto, Registry, MOTO_ACCOUNT_ID};
use serde_json::json;

async fn context(moto: &Moto) -> AwsContext {
    emulator_context(&moto.endpoint()).await
}

async fn handler(moto: &Moto, ecr_registry: &Registry, max_bytes: u64) -> PullImageHandler {
    PullImageHandler::new(
        context(moto).await,
        Some(MOTO_ACCOUNT_ID.to_string()),
        TargetOptions {
            ecr_registry_endpoint: Some(ecr_registry.host()),
            ..TargetOptions::default()
        },
        max_bytes,
    )
    .await
    .unwrap()
}

fn request(payload: serde_json::Value) -> PullImageRequest {
    serde_json::from_value(payload).expect("the state machine's payload deserializes")
}

async fn repositories(context: &AwsContext) -> Vec<String> {
    let listed = aws_sdk_ecr::Client::new(context.sdk_config())
        .describe_repositories()
        .send()
        .await
        .unwrap();
    listed
        .repositories()
        .iter()
        .filter_map(|r| r.repository_name().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn pull_image_copies_then_skips_and_reports_failures_as_items() {
    let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let ecr_registry = ecr_registry();
    let digest = ImageFixture::single(&LayerSpec::distinct(31, 2, 50_000), Format::Oci)
        .push(&source, "team/tool:1");
    let handler = handler(&moto, &ecr_registry, DEFAULT_MAX_LAMBDA_BYTES).await;
    let image = format!("{}/team/tool:1", source.host());

    let first = handler.handle(request(json!({"image": image}))).await;
    assert_eq!(first.result.status, ImageStatus::Succeeded, "{first:?}");
    assert_eq!(first.result.digest.as_ref().unwrap().to_string(), digest);
    assert!(!first.too_large);
    // The manifest read to size the image is the one copied: one GET of the tag (Docker Hub
    // counts every manifest GET as a pull), none of it by digest.
    let log = source.log();
    let gets = |path: &str| {
        log.matches(&format!("\"GET /v2/team/tool/manifests/{path}"))
            .count()
    };
    assert_eq!((gets("1 "), gets("sha256:")), (1, 0), "{log}");
    let repository = format!("127.0.0.1-{}/team/tool", source.port());
    // The target is asked once whether it holds the image: sizing asks, and the copy takes
    // that answer (and the digest its manifest PUT returned) instead of asking again.
    let target_heads = || {
        ecr_registry
            .log()
            .matches(&format!("\"HEAD /v2/{repository}/manifests/1 "))
            .count()
    };
    assert_eq!(target_heads(), 1, "{}", ecr_registry.log());
    assert_eq!(
        first.result.target.as_deref(),
        Some(format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repository}:1").as_str())
    );
    let context = context(&moto).await;
    let policy = context
        .ecr()
        .repository_policy(&repository)
        .await
        .unwrap()
        .unwrap();
    assert!(omics_grants(&policy));

    let second = handler.handle(request(json!({"image": image}))).await;
    assert_eq!(second.result.status, ImageStatus::Skipped, "{second:?}");
    assert_eq!(target_heads(), 2, "{}", ecr_registry.log());

    let missing = handler
        .handle(request(
            json!({"image": format!("{}/team/none:1", source.host())}),
        ))
        .await;
    assert_eq!(missing.result.status, ImageStatus::Failed);
    assert!(
        missing.result.message.contains("does not exist"),
        "{missing:?}"
    );

    let invalid = handler.handle(request(json!({"image": "Not/Valid"}))).await;
    assert_eq!(invalid.result.status, ImageStatus::Failed);
    assert!(invalid.result.message.contains("lowercase"), "{invalid:?}");

    // The output is what the state machine reads: upper-case statuses and a too_large flag.
    let output = serde_json::to_value(&first).unwrap();
    assert_eq!(output["status"], "SUCCEEDED");
    assert_eq!(output["too_large"], false);
}

#[tokio::test]
async fn images_over_the_lambda_limit_are_handed_to_codebuild_untouched() {
    let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let ecr_registry = ecr_registry();
    ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64")],
        &LayerSpec::distinct(41, 1, 40_000),
        Format::DockerV2,
    )
    .push(&source, "team/big:1");
    let handler = handler(&moto, &ecr_registry, 20_000).await;

    let response = handler
        .handle(request(
            json!({"image": format!("{}/team/big:1", source.host())}),
        ))
        .await;
    assert!(response.too_large, "{response:?}");
    assert_eq!(response.result.status, ImageStatus::Planned);
    assert!(
        response.result.message.contains("CodeBuild"),
        "{response:?}"
    );
    assert!(repositories(&context(&moto).await).await.is_empty());
}

#[test]
fn unknown_payload_fields_are_refused() {
    let refused = serde_json::from_value::<PullImageRequest>(json!({"image": "x", "tag": "1"}));
    assert!(refused.is_err());
}

#[tokio::test]
async fn apply_policy_merges_the_omics_grant_for_create_repository_events() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    create_repository(&moto, "quay/biocontainers/tool").await;
    // As ECR's pull-through cache reports the repository it created.
    let event = pull_through_cache_created("quay/biocontainers/tool");
    let first = apply_policy(&context, &event).await.unwrap();
    assert_eq!(first.policy, "updated");
    let policy = context
        .ecr()
        .repository_policy("quay/biocontainers/tool")
        .await
        .unwrap()
        .unwrap();
    assert!(omics_grants(&policy));
    let again = apply_policy(&context, &event).await.unwrap();
    assert_eq!(again.policy, "unchanged");

    let missing = json!({"detail": {"eventName": "CreateRepository",
        "requestParameters": {"repositoryName": "gone/repo"}}});
    let err = apply_policy(&context, &missing).await.unwrap_err();
    assert!(err.to_string().contains("gone/repo"), "{err}");
}

#[tokio::test]
async fn build_prepare_digests_s3_bundles_and_reports_bad_entries_as_items() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let ecr_registry = ecr_registry();
    let context = context(&moto).await;
    put_bundle(
        &moto,
        "sources",
        &[
            (
                "tools/alpha/Dockerfile",
                "FROM scratch\nCOPY a.txt /a.txt\n",
            ),
            ("tools/alpha/a.txt", "alpha\n"),
        ],
    )
    .await;
    let handler = BuildPrepareHandler::new(
        context,
        Some(MOTO_ACCOUNT_ID.to_string()),
        TargetOptions {
            ecr_registry_endpoint: Some(ecr_registry.host()),
            ..TargetOptions::default()
        },
    )
    .await
    .unwrap();
    let prepare = |source: &str, target: &str| {
        serde_json::from_value::<BuildPrepareRequest>(
            json!({"source_uri": source, "target_image": target}),
        )
        .unwrap()
    };

    let planned = handler
        .handle(prepare("s3://sources/tools/alpha/", "tools/alpha:1"))
        .await;
    assert_eq!(planned.result.status, ImageStatus::Planned, "{planned:?}");
    assert!(!planned.skip);
    assert!(planned
        .result
        .source_digest
        .as_deref()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        planned.result.target.as_deref(),
        Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/tools/alpha:1")
    );
    // The same bundle gives the same digest: the CodeBuild step and a later run agree.
    let again = handler
        .handle(prepare("s3://sources/tools/alpha/", "tools/alpha:1"))
        .await;
    assert_eq!(again.result.source_digest, planned.result.source_digest);

    let untagged = handler
        .handle(prepare("s3://sources/tools/alpha/", "tools/alpha"))
        .await;
    assert_eq!(untagged.result.status, ImageStatus::Failed);
    assert!(untagged.result.message.contains("tag"), "{untagged:?}");
    let local = handler
        .handle(prepare("/srv/bundle", "tools/local:1"))
        .await;
    assert_eq!(local.result.status, ImageStatus::Failed);
    assert!(local.result.message.contains("S3"), "{local:?}");
    let missing = handler
        .handle(prepare("s3://sources/nothing/", "tools/nothing:1"))
        .await;
    assert_eq!(missing.result.status, ImageStatus::Failed, "{missing:?}");
    let output = serde_json::to_value(&planned).unwrap();
    assert_eq!(output["status"], "PLANNED");
    assert_eq!(output["skip"], false);
}

//! The ECR and STS adapters against a real moto server (AWS API emulator) on a loopback port.
//!
//! Each test starts its own moto and builds the SDK configuration explicitly (fake static
//! credentials, us-east-1, moto's endpoint) instead of setting process environment variables,
//! which tests running in parallel threads would share.

use omx_aws::testing::emulator_context;
use omx_aws::{registry_host, AwsContext, PolicyChange};
use omx_core::policy::{omics_grants, CREATED_BY_TAG, OMICS_SID};
use omx_testenv::{moto_ecr_password, Moto, MOTO_ACCOUNT_ID};
use serde_json::Value;
use std::time::{Duration, SystemTime};

const REGION: &str = "us-east-1";

async fn context(moto: &Moto) -> AwsContext {
    emulator_context(&moto.endpoint()).await
}

/// A plain SDK client, to look at (or prepare) moto's state independently of the adapter.
fn raw_ecr(context: &AwsContext) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(context.sdk_config())
}

async fn tags_of(context: &AwsContext, arn: &str) -> Vec<(String, String)> {
    raw_ecr(context)
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .expect("ListTagsForResource")
        .tags()
        .iter()
        .map(|tag| (tag.key().to_string(), tag.value().to_string()))
        .collect()
}

async fn policy_of(context: &AwsContext, repository: &str) -> Value {
    let text = raw_ecr(context)
        .get_repository_policy()
        .repository_name(repository)
        .send()
        .await
        .expect("GetRepositoryPolicy")
        .policy_text()
        .expect("a policy text")
        .to_string();
    serde_json::from_str(&text).expect("the policy is JSON")
}

fn sids(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .expect("a Statement list")
        .iter()
        .map(|statement| statement["Sid"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn account_id_comes_from_sts() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    assert_eq!(context.account_id().await.unwrap(), MOTO_ACCOUNT_ID);
    // Cached: the same answer, without asking again.
    assert_eq!(context.account_id().await.unwrap(), MOTO_ACCOUNT_ID);
    assert_eq!(context.region(), REGION);
}

#[tokio::test]
async fn a_new_repository_is_created_with_the_created_by_tag() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let state = context
        .ecr()
        .ensure_repository("dockerhub/library/alpine")
        .await
        .unwrap();
    assert!(state.created);
    assert!(state.tagged);
    assert_eq!(
        state.uri,
        format!(
            "{}/dockerhub/library/alpine",
            registry_host(MOTO_ACCOUNT_ID, REGION)
        )
    );
    let (key, value) = CREATED_BY_TAG;
    assert_eq!(
        tags_of(&context, &state.arn).await,
        vec![(key.to_string(), value.to_string())]
    );
}

#[tokio::test]
async fn concurrent_ensures_of_one_repository_both_succeed() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let ecr = context.ecr();
    let (first, second) = tokio::join!(
        ecr.ensure_repository("quay/biocontainers/samtools"),
        ecr.ensure_repository("quay/biocontainers/samtools"),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        [first.created, second.created]
            .iter()
            .filter(|c| **c)
            .count(),
        1,
        "exactly one of {first:?} / {second:?} created it"
    );
    assert_eq!(first.uri, second.uri);
    assert_eq!(first.arn, second.arn);
    assert!(first.tagged && second.tagged);

    let again = ecr
        .ensure_repository("quay/biocontainers/samtools")
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.uri, first.uri);
}

#[tokio::test]
async fn an_existing_repository_without_our_tag_is_reported_and_left_untagged() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    raw_ecr(&context)
        .create_repository()
        .repository_name("theirs/tool")
        .send()
        .await
        .unwrap();
    let state = context
        .ecr()
        .ensure_repository("theirs/tool")
        .await
        .unwrap();
    assert!(!state.created);
    assert!(!state.tagged);
    assert!(tags_of(&context, &state.arn).await.is_empty());
}

#[tokio::test]
async fn a_repository_ecr_created_for_a_pull_through_pull_can_be_tagged_as_ours() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    // Stands in for the repository ECR creates on a pull-through-cache pull.
    raw_ecr(&context)
        .create_repository()
        .repository_name("quay/biocontainers/tool")
        .send()
        .await
        .unwrap();
    let ecr = context.ecr();
    let state = ecr
        .ensure_repository("quay/biocontainers/tool")
        .await
        .unwrap();
    assert!(!state.tagged);
    ecr.tag_as_created_by_us(&state).await.unwrap();
    let tags = tags_of(&context, &state.arn).await;
    assert_eq!(
        tags,
        vec![("createdBy".to_string(), "omx-ecr-helper".to_string())]
    );
    let again = ecr
        .ensure_repository("quay/biocontainers/tool")
        .await
        .unwrap();
    assert!(again.tagged);
}

#[tokio::test]
async fn a_fresh_repository_gets_the_omics_policy_once() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let ecr = context.ecr();
    ecr.ensure_repository("gcr/tool").await.unwrap();
    assert_eq!(ecr.repository_policy("gcr/tool").await.unwrap(), None);

    let change = ecr.ensure_omics_policy("gcr/tool").await.unwrap();
    assert!(matches!(change, PolicyChange::Updated(_)), "{change:?}");
    let stored = ecr.repository_policy("gcr/tool").await.unwrap().unwrap();
    assert!(omics_grants(&stored), "{stored}");
    assert_eq!(
        sids(&policy_of(&context, "gcr/tool").await),
        vec![OMICS_SID]
    );

    assert_eq!(
        ecr.ensure_omics_policy("gcr/tool").await.unwrap(),
        PolicyChange::Unchanged
    );
}

#[tokio::test]
async fn an_existing_unrelated_statement_is_kept_when_ours_is_merged() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let ecr = context.ecr();
    ecr.ensure_repository("ghcr/org/tool").await.unwrap();
    let theirs = r#"{"Version":"2012-10-17","Statement":[{"Sid":"cross account pull","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
    raw_ecr(&context)
        .set_repository_policy()
        .repository_name("ghcr/org/tool")
        .policy_text(theirs)
        .send()
        .await
        .unwrap();

    let change = ecr.ensure_omics_policy("ghcr/org/tool").await.unwrap();
    assert!(matches!(change, PolicyChange::Updated(_)), "{change:?}");
    let policy = policy_of(&context, "ghcr/org/tool").await;
    assert_eq!(sids(&policy), vec!["cross account pull", OMICS_SID]);
    let kept: Value = serde_json::from_str(theirs).unwrap();
    assert_eq!(policy["Statement"][0], kept["Statement"][0]);

    assert_eq!(
        ecr.ensure_omics_policy("ghcr/org/tool").await.unwrap(),
        PolicyChange::Unchanged
    );
}

#[tokio::test]
async fn a_missing_repository_is_an_error_not_an_absent_policy() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let error = context
        .ecr()
        .ensure_omics_policy("does/not/exist")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("RepositoryNotFoundException"), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("GetRepositoryPolicy for repository does/not/exist failed"),
        "{message}"
    );
}

#[tokio::test]
async fn image_digest_is_none_for_a_missing_tag_or_repository_and_found_when_pushed() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let ecr = context.ecr();
    assert_eq!(
        ecr.image_digest("nothing/here", "latest").await.unwrap(),
        None
    );
    ecr.ensure_repository("mcr/tool").await.unwrap();
    assert_eq!(ecr.image_digest("mcr/tool", "1.0").await.unwrap(), None);

    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let pushed = raw_ecr(&context)
        .put_image()
        .repository_name("mcr/tool")
        .image_tag("1.0")
        .image_manifest(manifest)
        .send()
        .await
        .unwrap();
    let pushed_digest = pushed
        .image()
        .and_then(|image| image.image_id())
        .and_then(|id| id.image_digest())
        .expect("PutImage answers with the digest")
        .to_string();
    // moto derives the digest from the layer digests rather than the manifest bytes, so the
    // digest it answered with is the reference here, not the manifest's sha256.
    let digest = ecr.image_digest("mcr/tool", "1.0").await.unwrap().unwrap();
    assert_eq!(digest.to_string(), pushed_digest);
}

#[tokio::test]
async fn the_authorization_token_is_decoded_into_basic_auth_credentials() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = context(&moto).await;
    let ecr = context.ecr();
    let token = ecr.authorization_token().await.unwrap();
    assert_eq!(token.username, "AWS");
    // moto's password is `<account>-auth-token`; the test registries use it in their htpasswd.
    assert_eq!(token.password.expose(), moto_ecr_password(MOTO_ACCOUNT_ID));
    assert!(
        token
            .proxy_endpoint
            .contains(&registry_host(MOTO_ACCOUNT_ID, REGION)),
        "{}",
        token.proxy_endpoint
    );
    assert!(!format!("{token:?}").contains(token.password.expose()));
    // moto's tokens "expired" on 2015-01-01, so every call asks again (the cache is exercised
    // against recorded ECR answers in tests/recorded.rs) and gets the same credentials.
    let moto_expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400);
    assert_eq!(token.expires_at, moto_expiry);
    assert!(!token.is_fresh_at(SystemTime::now()));
    assert_eq!(ecr.authorization_token().await.unwrap(), token);
}

//! ECR calls that moto cannot answer (it returns HTTP 500 for pull-through-cache rules and
//! repository creation templates, and rejects `ecr:BatchImportUpstreamImage` in registry
//! policies), plus failures moto cannot be made to produce (access denied, throttling) and the
//! token cache, tested against recorded request/response pairs.
//!
//! These use the SDK's own test transport, `aws-smithy-http-client`'s `StaticReplayClient`: it
//! answers each request with the next recorded response and then `assert_requests_match` checks
//! every request the adapter actually sent against the recorded one — URI, the
//! `x-amz-target` header naming the operation, the content type, and the JSON body compared as
//! JSON — and that no recorded exchange was left unused. A request the recording does not expect
//! fails the call ("no more events"), so "nothing else was sent" is asserted too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use omx_aws::testing::recorded::{ecr, exchange, failure, ReplayEvent};
use omx_aws::{PolicyChange, PullThroughCacheRule, RuleState, TemplateState};
use omx_core::policy::merge_omics_statement;
use serde_json::json;

const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf";

/// The repository policy this tool writes from scratch, exactly as sent.
const OMICS_POLICY: &str = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Sid\":\"omics workflow access\",\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"omics.amazonaws.com\"},\"Action\":[\"ecr:BatchCheckLayerAvailability\",\"ecr:BatchGetImage\",\"ecr:GetDownloadUrlForLayer\"]}\n  ]\n}";

fn describe_rules() -> serde_json::Value {
    json!({"ecrRepositoryPrefixes": ["docker-hub"]})
}

fn rule_listing(upstream: &str, credential_arn: Option<&str>) -> serde_json::Value {
    let mut rule = json!({
        "ecrRepositoryPrefix": "docker-hub",
        "upstreamRegistryUrl": upstream,
        "registryId": "123456789012",
        "upstreamRegistry": "docker-hub",
    });
    if let Some(arn) = credential_arn {
        rule["credentialArn"] = json!(arn);
    }
    json!({"pullThroughCacheRules": [rule]})
}

#[tokio::test]
async fn a_missing_pull_through_cache_rule_is_created() {
    let (ecr, replay) = ecr(vec![
        failure(
            "DescribePullThroughCacheRules",
            describe_rules(),
            "PullThroughCacheRuleNotFoundException",
            "The specified pull through cache rule does not exist",
        ),
        exchange(
            "CreatePullThroughCacheRule",
            json!({
                "ecrRepositoryPrefix": "docker-hub",
                "upstreamRegistryUrl": "registry-1.docker.io",
                "credentialArn": SECRET_ARN,
            }),
            200,
            json!({
                "ecrRepositoryPrefix": "docker-hub",
                "upstreamRegistryUrl": "registry-1.docker.io",
                "registryId": "123456789012",
                "credentialArn": SECRET_ARN,
            }),
        ),
    ]);
    let state = ecr
        .ensure_pull_through_cache_rule("docker-hub", "registry-1.docker.io", Some(SECRET_ARN))
        .await
        .unwrap();
    assert_eq!(state, RuleState::Created);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn the_same_rule_is_left_alone() {
    let (ecr, replay) = ecr(vec![exchange(
        "DescribePullThroughCacheRules",
        describe_rules(),
        200,
        rule_listing("registry-1.docker.io", Some(SECRET_ARN)),
    )]);
    let state = ecr
        .ensure_pull_through_cache_rule(
            "docker-hub",
            "https://registry-1.docker.io/",
            Some(SECRET_ARN),
        )
        .await
        .unwrap();
    assert_eq!(state, RuleState::Present);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_rule_with_another_upstream_is_reported_and_never_overwritten() {
    let (ecr, replay) = ecr(vec![exchange(
        "DescribePullThroughCacheRules",
        describe_rules(),
        200,
        rule_listing("mirror.example.org", None),
    )]);
    let state = ecr
        .ensure_pull_through_cache_rule("docker-hub", "registry-1.docker.io", Some(SECRET_ARN))
        .await
        .unwrap();
    assert_eq!(
        state,
        RuleState::Conflicting(PullThroughCacheRule {
            prefix: "docker-hub".to_string(),
            upstream_url: "mirror.example.org".to_string(),
            credential_arn: None,
        })
    );
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_rule_created_concurrently_is_judged_by_what_was_created() {
    let (ecr, replay) = ecr(vec![
        failure(
            "DescribePullThroughCacheRules",
            describe_rules(),
            "PullThroughCacheRuleNotFoundException",
            "not found",
        ),
        failure(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}),
            "PullThroughCacheRuleAlreadyExistsException",
            "A pull through cache rule with these settings already exists for this registry",
        ),
        exchange(
            "DescribePullThroughCacheRules",
            describe_rules(),
            200,
            rule_listing("registry-1.docker.io", None),
        ),
    ]);
    let state = ecr
        .ensure_pull_through_cache_rule("docker-hub", "registry-1.docker.io", None)
        .await
        .unwrap();
    assert_eq!(state, RuleState::Present);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn access_denied_on_a_rule_lookup_is_an_error_naming_operation_rule_and_code() {
    let (ecr, replay) = ecr(vec![failure(
        "DescribePullThroughCacheRules",
        describe_rules(),
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:DescribePullThroughCacheRules",
    )]);
    let error = ecr
        .ensure_pull_through_cache_rule("docker-hub", "registry-1.docker.io", None)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("AccessDeniedException"));
    let message = error.to_string();
    assert!(
        message.starts_with(
            "DescribePullThroughCacheRules for pull-through cache rule docker-hub was denied: \
             arn:aws:iam::123456789012:user/ci may not perform ecr:DescribePullThroughCacheRules"
        ),
        "{message}"
    );
    assert!(!message.contains("wJalrXUtnFEMI"), "{message}");
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_missing_creation_template_is_created_with_policy_tag_and_pull_through_cache() {
    let (ecr, replay) = ecr(vec![
        exchange(
            "DescribeRepositoryCreationTemplates",
            json!({"prefixes": ["docker-hub"]}),
            200,
            json!({"registryId": "123456789012", "repositoryCreationTemplates": []}),
        ),
        exchange(
            "CreateRepositoryCreationTemplate",
            json!({
                "prefix": "docker-hub",
                "description": "HealthOmics pull-through cache of Docker Hub",
                "appliedFor": ["PULL_THROUGH_CACHE"],
                "repositoryPolicy": OMICS_POLICY,
                "resourceTags": [{"Key": "createdBy", "Value": "omx-ecr-helper"}],
            }),
            200,
            json!({"registryId": "123456789012", "repositoryCreationTemplate": {"prefix": "docker-hub"}}),
        ),
    ]);
    let state = ecr
        .ensure_creation_template("docker-hub", "HealthOmics pull-through cache of Docker Hub")
        .await
        .unwrap();
    assert_eq!(state, TemplateState::Created);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_template_ecr_reports_as_not_found_is_created() {
    let (ecr, replay) = ecr(vec![
        failure(
            "DescribeRepositoryCreationTemplates",
            json!({"prefixes": ["quay"]}),
            "TemplateNotFoundException",
            "The specified repository creation template does not exist",
        ),
        exchange(
            "CreateRepositoryCreationTemplate",
            json!({
                "prefix": "quay",
                "description": "quay",
                "appliedFor": ["PULL_THROUGH_CACHE"],
                "repositoryPolicy": OMICS_POLICY,
                "resourceTags": [{"Key": "createdBy", "Value": "omx-ecr-helper"}],
            }),
            200,
            json!({"registryId": "123456789012", "repositoryCreationTemplate": {"prefix": "quay"}}),
        ),
    ]);
    let state = ecr.ensure_creation_template("quay", "quay").await.unwrap();
    assert_eq!(state, TemplateState::Created);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn an_existing_template_gets_our_statement_and_pull_through_cache_and_keeps_the_rest() {
    let their_policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"team","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"ecr:BatchGetImage"}]}"#;
    let PolicyChange::Updated(merged) = merge_omics_statement(Some(their_policy)).unwrap() else {
        panic!("their policy lacks the omics statement");
    };
    let (ecr, replay) = ecr(vec![
        exchange(
            "DescribeRepositoryCreationTemplates",
            json!({"prefixes": ["docker-hub"]}),
            200,
            json!({
                "registryId": "123456789012",
                "repositoryCreationTemplates": [{
                    "prefix": "docker-hub",
                    "description": "theirs",
                    "appliedFor": ["REPLICATION"],
                    "repositoryPolicy": their_policy,
                    "resourceTags": [{"Key": "team", "Value": "genomics"}],
                    "imageTagMutability": "IMMUTABLE",
                    "encryptionConfiguration": {"encryptionType": "AES256"},
                    "lifecyclePolicy": "{\"rules\":[]}",
                    "customRoleArn": "arn:aws:iam::123456789012:role/ecr-template",
                }],
            }),
        ),
        exchange(
            "UpdateRepositoryCreationTemplate",
            json!({
                "prefix": "docker-hub",
                "description": "theirs",
                "appliedFor": ["REPLICATION", "PULL_THROUGH_CACHE"],
                "repositoryPolicy": merged,
                "resourceTags": [{"Key": "team", "Value": "genomics"}],
                "imageTagMutability": "IMMUTABLE",
                "imageTagMutabilityExclusionFilters": [],
                "encryptionConfiguration": {"encryptionType": "AES256"},
                "lifecyclePolicy": "{\"rules\":[]}",
                "customRoleArn": "arn:aws:iam::123456789012:role/ecr-template",
            }),
            200,
            json!({"registryId": "123456789012", "repositoryCreationTemplate": {"prefix": "docker-hub"}}),
        ),
    ]);
    let state = ecr
        .ensure_creation_template("docker-hub", "ignored for an existing template")
        .await
        .unwrap();
    assert_eq!(state, TemplateState::Updated);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_complete_template_is_unchanged() {
    let (ecr, replay) = ecr(vec![exchange(
        "DescribeRepositoryCreationTemplates",
        json!({"prefixes": ["docker-hub"]}),
        200,
        json!({
            "registryId": "123456789012",
            "repositoryCreationTemplates": [{
                "prefix": "docker-hub",
                "appliedFor": ["PULL_THROUGH_CACHE"],
                "repositoryPolicy": OMICS_POLICY,
            }],
        }),
    )]);
    let state = ecr
        .ensure_creation_template("docker-hub", "HealthOmics pull-through cache")
        .await
        .unwrap();
    assert_eq!(state, TemplateState::Unchanged);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn the_registry_policy_is_written_when_missing_and_left_when_granted() {
    let resource = "arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*";
    let (ecr, replay) = ecr(vec![
        failure(
            "GetRegistryPolicy",
            json!({}),
            "RegistryPolicyNotFoundException",
            "Registry policy does not exist in the registry with id '123456789012'",
        ),
        exchange(
            "PutRegistryPolicy",
            json!({"policyText": "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Sid\":\"omics pull through cache\",\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"omics.amazonaws.com\"},\"Action\":[\"ecr:CreateRepository\",\"ecr:BatchImportUpstreamImage\"],\"Resource\":[\"arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*\"]}\n  ]\n}"}),
            200,
            json!({"registryId": "123456789012", "policyText": "{}"}),
        ),
        exchange(
            "GetRegistryPolicy",
            json!({}),
            200,
            json!({
                "registryId": "123456789012",
                "policyText": json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "omics.amazonaws.com"},
                    "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
                    "Resource": resource,
                }]}).to_string(),
            }),
        ),
    ]);
    let first = ecr
        .ensure_omics_registry_policy("123456789012", "docker-hub")
        .await
        .unwrap();
    assert!(matches!(first, PolicyChange::Updated(_)), "{first:?}");
    let second = ecr
        .ensure_omics_registry_policy("123456789012", "docker-hub")
        .await
        .unwrap();
    assert_eq!(second, PolicyChange::Unchanged);
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn throttling_while_reading_a_repository_policy_is_an_error_and_nothing_is_written() {
    let (ecr, replay) = ecr(vec![failure(
        "GetRepositoryPolicy",
        json!({"repositoryName": "dockerhub/library/ubuntu"}),
        "ThrottlingException",
        "Rate exceeded",
    )]);
    let error = ecr
        .ensure_omics_policy("dockerhub/library/ubuntu")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert_eq!(
        error.to_string(),
        "GetRepositoryPolicy for repository dockerhub/library/ubuntu was throttled by AWS \
         (ThrottlingException) through every retry: run again in a minute, or with fewer images \
         at a time"
    );
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_deny_against_omics_is_reported_with_the_repository_and_nothing_is_written() {
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Sid":"lockdown","Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#;
    let (ecr, replay) = ecr(vec![exchange(
        "GetRepositoryPolicy",
        json!({"repositoryName": "quay/tool"}),
        200,
        json!({"registryId": "123456789012", "repositoryName": "quay/tool", "policyText": deny}),
    )]);
    let error = ecr.ensure_omics_policy("quay/tool").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("policy of repository quay/tool: existing statement \"lockdown\""),
        "{message}"
    );
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn access_denied_on_image_lookup_is_an_error_not_a_missing_image() {
    let (ecr, replay) = ecr(vec![failure(
        "DescribeImages",
        json!({"repositoryName": "quay/tool", "imageIds": [{"imageTag": "1.0"}]}),
        "AccessDeniedException",
        "not authorized",
    )]);
    let error = ecr.image_digest("quay/tool", "1.0").await.unwrap_err();
    assert_eq!(error.code(), Some("AccessDeniedException"));
    assert!(error.to_string().contains("image quay/tool:1.0"), "{error}");
    replay.assert_requests_match(&[]);
}

fn token_exchange(password: &str, expires_in: Duration) -> ReplayEvent {
    let expires_at = (SystemTime::now() + expires_in)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = aws_smithy_types::base64::encode(format!("AWS:{password}"));
    exchange(
        "GetAuthorizationToken",
        json!({}),
        200,
        json!({"authorizationData": [{
            "authorizationToken": token,
            "expiresAt": expires_at,
            "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        }]}),
    )
}

#[tokio::test]
async fn a_fresh_token_is_served_from_the_cache_to_every_clone() {
    let twelve_hours = Duration::from_secs(12 * 3600);
    let (ecr, replay) = ecr(vec![token_exchange("first-password", twelve_hours)]);
    let first = ecr.authorization_token().await.unwrap();
    let clone = ecr.clone();
    let (second, third) = tokio::join!(ecr.authorization_token(), clone.authorization_token());
    assert_eq!(first.username, "AWS");
    assert_eq!(first.password.expose(), "first-password");
    assert_eq!(
        first.proxy_endpoint,
        "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
    );
    assert_eq!(second.unwrap(), first);
    assert_eq!(third.unwrap(), first);
    // One recorded exchange, all of it used: three calls, one request.
    replay.assert_requests_match(&[]);
}

#[tokio::test]
async fn a_token_close_to_expiry_is_replaced() {
    let (ecr, replay) = ecr(vec![
        token_exchange("expiring", Duration::from_secs(5 * 60)),
        token_exchange("renewed", Duration::from_secs(12 * 3600)),
    ]);
    assert_eq!(
        ecr.authorization_token().await.unwrap().password.expose(),
        "expiring"
    );
    assert_eq!(
        ecr.authorization_token().await.unwrap().password.expose(),
        "renewed"
    );
    replay.assert_requests_match(&[]);
}

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
//!
//! Each case below is one recording and the calls made on it, each with what it must return;
//! one runner (`replay_runner::run`, through the `recorded_cases!` table) replays it and checks the
//! requests.

mod replay_runner;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use omx_aws::testing::recorded::{ecr, exchange, failure, ReplayEvent};
use omx_aws::{PolicyChange, PullThroughCacheRule, RuleState, TemplateState};
use omx_core::policy::merge_omics_statement;
use replay_runner::{run, Call, Expect, Message};
use serde_json::json;

const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf";

/// The repository policy this tool writes from scratch, exactly as sent.
const OMICS_POLICY: &str = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Sid\":\"omics workflow access\",\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"omics.amazonaws.com\"},\"Action\":[\"ecr:BatchCheckLayerAvailability\",\"ecr:BatchGetImage\",\"ecr:GetDownloadUrlForLayer\"]}\n  ]\n}";

/// A team's creation-template policy without our statement.
const THEIR_TEMPLATE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"team","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"ecr:BatchGetImage"}]}"#;

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

/// The table: `test_name: recording => [call => expected, ...];`, one `#[tokio::test]` each.
macro_rules! recorded_cases {
    ($($name:ident: $recording:expr => [$($call:expr => $expect:expr),+ $(,)?];)+) => {
        $(
            #[tokio::test]
            async fn $name() {
                run($recording, vec![$(($call, $expect)),+]).await;
            }
        )+
    };
}

recorded_cases! {
    a_missing_pull_through_cache_rule_is_created: vec![
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
    ] => [
        Call::Rule {
            prefix: "docker-hub",
            upstream: "registry-1.docker.io",
            credential_arn: Some(SECRET_ARN),
        } => Expect::Rule(RuleState::Created),
    ];

    the_same_rule_is_left_alone: vec![exchange(
        "DescribePullThroughCacheRules",
        describe_rules(),
        200,
        rule_listing("registry-1.docker.io", Some(SECRET_ARN)),
    )] => [
        Call::Rule {
            prefix: "docker-hub",
            upstream: "https://registry-1.docker.io/",
            credential_arn: Some(SECRET_ARN),
        } => Expect::Rule(RuleState::Present),
    ];

    a_rule_with_another_upstream_is_reported_and_never_overwritten: vec![exchange(
        "DescribePullThroughCacheRules",
        describe_rules(),
        200,
        rule_listing("mirror.example.org", None),
    )] => [
        Call::Rule {
            prefix: "docker-hub",
            upstream: "registry-1.docker.io",
            credential_arn: Some(SECRET_ARN),
        } => Expect::Rule(RuleState::Conflicting(PullThroughCacheRule {
            prefix: "docker-hub".to_string(),
            upstream_url: "mirror.example.org".to_string(),
            credential_arn: None,
        })),
    ];

    a_rule_created_concurrently_is_judged_by_what_was_created: vec![
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
    ] => [
        Call::Rule {
            prefix: "docker-hub",
            upstream: "registry-1.docker.io",
            credential_arn: None,
        } => Expect::Rule(RuleState::Present),
    ];

    access_denied_on_a_rule_lookup_is_an_error_naming_operation_rule_and_code: vec![failure(
        "DescribePullThroughCacheRules",
        describe_rules(),
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:DescribePullThroughCacheRules",
    )] => [
        Call::Rule {
            prefix: "docker-hub",
            upstream: "registry-1.docker.io",
            credential_arn: None,
        } => Expect::Failure {
            code: Some("AccessDeniedException"),
            message: Message::StartsWith(
                "DescribePullThroughCacheRules for pull-through cache rule docker-hub was denied: \
                 arn:aws:iam::123456789012:user/ci may not perform ecr:DescribePullThroughCacheRules",
            ),
            never_shown: &["wJalrXUtnFEMI"],
        },
    ];

    a_missing_creation_template_is_created_with_policy_tag_and_pull_through_cache: vec![
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
    ] => [
        Call::Template {
            prefix: "docker-hub",
            description: "HealthOmics pull-through cache of Docker Hub",
        } => Expect::Template(TemplateState::Created),
    ];

    a_template_ecr_reports_as_not_found_is_created: vec![
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
    ] => [
        Call::Template { prefix: "quay", description: "quay" }
            => Expect::Template(TemplateState::Created),
    ];

    an_existing_template_gets_our_statement_and_pull_through_cache_and_keeps_the_rest: {
        let PolicyChange::Updated(merged) = merge_omics_statement(Some(THEIR_TEMPLATE_POLICY)).unwrap()
        else {
            panic!("their policy lacks the omics statement");
        };
        vec![
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
                        "repositoryPolicy": THEIR_TEMPLATE_POLICY,
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
        ]
    } => [
        Call::Template {
            prefix: "docker-hub",
            description: "ignored for an existing template",
        } => Expect::Template(TemplateState::Updated),
    ];

    a_complete_template_is_unchanged: vec![exchange(
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
    )] => [
        Call::Template {
            prefix: "docker-hub",
            description: "HealthOmics pull-through cache",
        } => Expect::Template(TemplateState::Unchanged),
    ];

    the_registry_policy_is_written_when_missing_and_left_when_granted: vec![
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
                    "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*",
                }]}).to_string(),
            }),
        ),
    ] => [
        Call::RegistryPolicy { registry_id: "123456789012", prefix: "docker-hub" }
            => Expect::PolicyUpdated,
        Call::RegistryPolicy { registry_id: "123456789012", prefix: "docker-hub" }
            => Expect::Policy(PolicyChange::Unchanged),
    ];

    throttling_while_reading_a_repository_policy_is_an_error_and_nothing_is_written: vec![failure(
        "GetRepositoryPolicy",
        json!({"repositoryName": "dockerhub/library/ubuntu"}),
        "ThrottlingException",
        "Rate exceeded",
    )] => [
        Call::RepositoryPolicy("dockerhub/library/ubuntu") => Expect::Failure {
            code: Some("ThrottlingException"),
            message: Message::Is(
                "GetRepositoryPolicy for repository dockerhub/library/ubuntu was throttled by AWS \
                 (ThrottlingException) through every retry: run again in a minute, or with fewer images \
                 at a time",
            ),
            never_shown: &[],
        },
    ];

    a_deny_against_omics_is_reported_with_the_repository_and_nothing_is_written: vec![exchange(
        "GetRepositoryPolicy",
        json!({"repositoryName": "quay/tool"}),
        200,
        json!({
            "registryId": "123456789012",
            "repositoryName": "quay/tool",
            "policyText": r#"{"Version":"2012-10-17","Statement":[{"Sid":"lockdown","Effect":"Deny","Principal":"*","Action":"ecr:*"}]}"#,
        }),
    )] => [
        Call::RepositoryPolicy("quay/tool") => Expect::Failure {
            code: None,
            message: Message::StartsWith(
                "policy of repository quay/tool: existing statement \"lockdown\"",
            ),
            never_shown: &[],
        },
    ];

    access_denied_on_image_lookup_is_an_error_not_a_missing_image: vec![failure(
        "DescribeImages",
        json!({"repositoryName": "quay/tool", "imageIds": [{"imageTag": "1.0"}]}),
        "AccessDeniedException",
        "not authorized",
    )] => [
        Call::ImageDigest { repository: "quay/tool", tag: "1.0" } => Expect::Failure {
            code: Some("AccessDeniedException"),
            message: Message::Contains("image quay/tool:1.0"),
            never_shown: &[],
        },
    ];

    a_token_close_to_expiry_is_replaced: vec![
        token_exchange("expiring", Duration::from_secs(5 * 60)),
        token_exchange("renewed", Duration::from_secs(12 * 3600)),
    ] => [
        Call::AuthorizationToken => Expect::Password("expiring"),
        Call::AuthorizationToken => Expect::Password("renewed"),
    ];
}

/// The token cache across clones and concurrent callers: not one call after another, so not a
/// row of the table, but the same recording and request check.
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

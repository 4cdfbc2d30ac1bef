//! The `setup` orchestration against recorded ECR exchanges: moto answers HTTP 500 for
//! pull-through-cache rules and repository creation templates, and refuses
//! `ecr:BatchImportUpstreamImage` in a registry policy, so none of this can run against it.
//!
//! `StaticReplayClient` (the SDK's own test transport) answers each request with the next recorded
//! response; `assert_requests_match` then checks that every request sent matches its recording
//! (URI, operation header, JSON body) and that no recording was left unused. A request nobody
//! recorded fails its call, so "nothing else was sent" (no write in a dry run) is asserted too.

use omx_aws::testing::recorded::{ecr, exchange, failure, ReplayEvent};
use omx_core::policy::{merge_omics_registry_statement, Grant, PolicyChange};
use omx_puller::{setup_registry, Action, Resource, SetupOptions, SetupReport, Upstream};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const HUB_SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf";

fn no_rule(prefix: &str) -> ReplayEvent {
    failure(
        "DescribePullThroughCacheRules",
        json!({"ecrRepositoryPrefixes": [prefix]}),
        "PullThroughCacheRuleNotFoundException",
        "recorded: no such rule",
    )
}

fn rule(prefix: &str, upstream: &str, credential_arn: Option<&str>) -> ReplayEvent {
    let mut listed = json!({
        "ecrRepositoryPrefix": prefix,
        "upstreamRegistryUrl": upstream,
        "registryId": ACCOUNT,
    });
    if let Some(arn) = credential_arn {
        listed["credentialArn"] = json!(arn);
    }
    exchange(
        "DescribePullThroughCacheRules",
        json!({"ecrRepositoryPrefixes": [prefix]}),
        200,
        json!({"pullThroughCacheRules": [listed]}),
    )
}

fn create_rule(prefix: &str, upstream: &str, credential_arn: Option<&str>) -> ReplayEvent {
    let mut request = json!({"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": upstream});
    if let Some(arn) = credential_arn {
        request["credentialArn"] = json!(arn);
    }
    let mut response = request.clone();
    response["registryId"] = json!(ACCOUNT);
    exchange("CreatePullThroughCacheRule", request, 200, response)
}

fn templates(prefix: &str, listed: Value) -> ReplayEvent {
    exchange(
        "DescribeRepositoryCreationTemplates",
        json!({"prefixes": [prefix]}),
        200,
        json!({"registryId": ACCOUNT, "repositoryCreationTemplates": listed}),
    )
}

fn create_template(prefix: &str, upstream_name: &str) -> ReplayEvent {
    exchange(
        "CreateRepositoryCreationTemplate",
        json!({
            "prefix": prefix,
            "description": format!("omx-ecr-helper: HealthOmics pull-through cache of {upstream_name}"),
            "appliedFor": ["PULL_THROUGH_CACHE", "CREATE_ON_PUSH"],
            "repositoryPolicy": Grant::omics_pull().policy_document(),
            "resourceTags": [{"Key": "createdBy", "Value": "omx-ecr-helper"}],
        }),
        200,
        json!({"registryId": ACCOUNT, "repositoryCreationTemplate": {"prefix": prefix}}),
    )
}

fn no_registry_policy() -> ReplayEvent {
    failure(
        "GetRegistryPolicy",
        json!({}),
        "RegistryPolicyNotFoundException",
        "recorded: no registry policy",
    )
}

fn registry_policy(text: &str) -> ReplayEvent {
    exchange(
        "GetRegistryPolicy",
        json!({}),
        200,
        json!({"registryId": ACCOUNT, "policyText": text}),
    )
}

fn put_registry_policy(text: &str) -> ReplayEvent {
    exchange(
        "PutRegistryPolicy",
        json!({"policyText": text}),
        200,
        json!({"registryId": ACCOUNT, "policyText": text}),
    )
}

/// The registry policy after merging our statement for `prefix` into `existing`.
fn merged(existing: Option<&str>, prefix: &str) -> String {
    match merge_omics_registry_statement(existing, "us-east-1", ACCOUNT, prefix).unwrap() {
        PolicyChange::Updated(text) => text,
        PolicyChange::Unchanged => panic!("the statement for {prefix} was already there"),
    }
}

fn actions(report: &SetupReport) -> Vec<(String, Resource, Action)> {
    report
        .steps
        .iter()
        .map(|step| (step.prefix.clone(), step.resource, step.action))
        .collect()
}

fn quay() -> Upstream {
    Upstream::anonymous()
        .into_iter()
        .find(|u| u.prefix == "quay")
        .unwrap()
}

fn k8s() -> Upstream {
    Upstream::anonymous()
        .into_iter()
        .find(|u| u.prefix == "k8s")
        .unwrap()
}

#[tokio::test]
async fn a_fresh_registry_gets_a_template_the_registry_statement_and_a_rule_per_upstream() {
    let after_quay = merged(None, "quay");
    let after_hub = merged(Some(&after_quay), "dockerhub");
    let (ecr, replay) = ecr(vec![
        no_rule("quay"),
        templates("quay", json!([])),
        create_template("quay", "Quay"),
        no_registry_policy(),
        put_registry_policy(&after_quay),
        no_rule("quay"),
        create_rule("quay", "quay.io", None),
        no_rule("dockerhub"),
        templates("dockerhub", json!([])),
        create_template("dockerhub", "Docker Hub"),
        registry_policy(&after_quay),
        put_registry_policy(&after_hub),
        no_rule("dockerhub"),
        create_rule("dockerhub", "registry-1.docker.io", Some(HUB_SECRET)),
    ]);
    let report = setup_registry(
        &ecr,
        &[quay(), Upstream::docker_hub(HUB_SECRET)],
        &SetupOptions::new(ACCOUNT, false),
    )
    .await;
    replay.assert_requests_match(&[]);
    use Action::*;
    use Resource::*;
    let expected: Vec<(String, Resource, Action)> = ["quay", "dockerhub"]
        .iter()
        .flat_map(|prefix| {
            [
                (prefix.to_string(), CreationTemplate, Created),
                (prefix.to_string(), RegistryPolicy, Updated),
                (prefix.to_string(), PullThroughCacheRule, Created),
            ]
        })
        .collect();
    assert_eq!(actions(&report), expected);
    assert!(report.all_ok());
    // Both prefixes end up in the one registry statement.
    assert!(
        after_hub.contains("repository/quay/*") && after_hub.contains("repository/dockerhub/*")
    );
    assert_eq!(
        report.steps[5].detail,
        format!("dockerhub/ caches registry-1.docker.io with secret {HUB_SECRET}")
    );
    // Docker Hub is copied by default: pull needs the rule that makes it a cache source.
    assert_eq!(
        report.namespace_rules,
        vec![json!({"hosts": ["docker.io"], "namespace": "dockerhub",
            "method": "pull-through-cache", "upstream_registry": "registry-1.docker.io"})]
    );
}

#[tokio::test]
async fn a_rule_with_another_upstream_is_reported_and_its_prefix_left_alone() {
    let granted = merged(None, "k8s");
    let (ecr, replay) = ecr(vec![
        rule("quay", "mirror.example.org", None),
        rule("k8s", "registry.k8s.io", None),
        templates(
            "k8s",
            json!([{
                "prefix": "k8s",
                "appliedFor": ["PULL_THROUGH_CACHE", "CREATE_ON_PUSH"],
                "repositoryPolicy": Grant::omics_pull().policy_document(),
            }]),
        ),
        registry_policy(&granted),
    ]);
    let report = setup_registry(&ecr, &[quay(), k8s()], &SetupOptions::new(ACCOUNT, false)).await;
    replay.assert_requests_match(&[]);
    use Action::*;
    use Resource::*;
    let step = |prefix: &str, resource, action| (prefix.to_string(), resource, action);
    assert_eq!(
        actions(&report),
        vec![
            step("quay", PullThroughCacheRule, Conflict),
            step("quay", CreationTemplate, Skipped),
            step("quay", RegistryPolicy, Skipped),
            step("k8s", CreationTemplate, Unchanged),
            step("k8s", RegistryPolicy, Unchanged),
            step("k8s", PullThroughCacheRule, Unchanged),
        ]
    );
    assert!(!report.all_ok());
    let conflict = &report.steps[0].detail;
    assert!(
        conflict.starts_with("quay/ already caches mirror.example.org; left as it is"),
        "{conflict}"
    );
}

#[tokio::test]
async fn a_dry_run_reads_and_reports_what_it_would_change() {
    let theirs = r#"{"Version":"2012-10-17","Statement":[{"Sid":"replicate","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"ecr:BatchGetImage"}]}"#;
    let ecr_public = Upstream::anonymous().remove(0);
    let (ecr, replay) = ecr(vec![
        no_rule("ecr-public"),
        templates(
            "ecr-public",
            json!([{"prefix": "ecr-public", "appliedFor": ["REPLICATION"], "repositoryPolicy": theirs}]),
        ),
        no_registry_policy(),
        rule("quay", "https://quay.io/", None),
        templates("quay", json!([])),
    ]);
    let report = setup_registry(
        &ecr,
        &[ecr_public, quay()],
        &SetupOptions::new(ACCOUNT, true),
    )
    .await;
    // Every recorded read was made, and nothing else: no write.
    replay.assert_requests_match(&[]);
    use Action::*;
    use Resource::*;
    let step = |prefix: &str, resource, action| (prefix.to_string(), resource, action);
    assert_eq!(
        actions(&report),
        vec![
            step("ecr-public", CreationTemplate, WouldUpdate),
            step("ecr-public", RegistryPolicy, WouldUpdate),
            step("ecr-public", PullThroughCacheRule, WouldCreate),
            step("quay", CreationTemplate, WouldCreate),
            // Read once; the statement for ecr-public merged in memory still lacks quay.
            step("quay", RegistryPolicy, WouldUpdate),
            step("quay", PullThroughCacheRule, Unchanged),
        ]
    );
    assert!(report.all_ok());
}

#[tokio::test]
async fn a_failed_step_stops_its_prefix_only() {
    let (ecr, replay) = ecr(vec![
        no_rule("quay"),
        templates("quay", json!([])),
        exchange(
            "CreateRepositoryCreationTemplate",
            json!({
                "prefix": "quay",
                "description": "omx-ecr-helper: HealthOmics pull-through cache of Quay",
                "appliedFor": ["PULL_THROUGH_CACHE", "CREATE_ON_PUSH"],
                "repositoryPolicy": Grant::omics_pull().policy_document(),
                "resourceTags": [{"Key": "createdBy", "Value": "omx-ecr-helper"}],
            }),
            400,
            json!({"__type": "AccessDeniedException",
                "message": "not authorized to perform: ecr:CreateRepositoryCreationTemplate"}),
        ),
        rule("k8s", "registry.k8s.io", None),
        templates(
            "k8s",
            json!([{"prefix": "k8s", "appliedFor": ["PULL_THROUGH_CACHE", "CREATE_ON_PUSH"],
                "repositoryPolicy": Grant::omics_pull().policy_document()}]),
        ),
        registry_policy(&merged(None, "k8s")),
    ]);
    // A secret in another region is refused before any call.
    let mut hub = Upstream::docker_hub(HUB_SECRET);
    hub.credential_arn = Some(HUB_SECRET.replace("us-east-1", "eu-west-1"));
    let report = setup_registry(
        &ecr,
        &[quay(), hub, k8s()],
        &SetupOptions::new(ACCOUNT, false),
    )
    .await;
    replay.assert_requests_match(&[]);
    use Action::*;
    use Resource::*;
    let step = |prefix: &str, resource, action| (prefix.to_string(), resource, action);
    assert_eq!(
        actions(&report),
        vec![
            step("quay", CreationTemplate, Failed),
            step("quay", RegistryPolicy, Skipped),
            step("quay", PullThroughCacheRule, Skipped),
            step("dockerhub", PullThroughCacheRule, Failed),
            step("dockerhub", CreationTemplate, Skipped),
            step("dockerhub", RegistryPolicy, Skipped),
            step("k8s", CreationTemplate, Unchanged),
            step("k8s", RegistryPolicy, Unchanged),
            step("k8s", PullThroughCacheRule, Unchanged),
        ]
    );
    assert!(
        report.steps[0].detail.starts_with(
            "CreateRepositoryCreationTemplate for repository creation template quay was denied: "
        ),
        "{}",
        report.steps[0].detail
    );
    assert!(
        report.steps[3].detail.contains("is not in us-east-1"),
        "{}",
        report.steps[3].detail
    );
}

//! `Verifier` against real parts: moto as the ECR control plane (repositories and their
//! policies, the authorization token) and a `docker-registry` standing in for the ECR registry
//! API, its htpasswd holding moto's token, so the registry login is the real ECR flow. Images
//! served through a pull-through cache are checked against recorded ECR exchanges (moto answers
//! HTTP 500 for rules and creation templates) and a real upstream registry.

use omx_aws::testing::emulator_context;
use omx_aws::testing::recorded::{ecr as recorded_ecr, exchange};
use omx_aws::AwsContext;
use omx_core::manifest_file::parse_pull_manifest;
use omx_core::namespace::NamespaceTable;
use omx_core::policy::Grant;
use omx_core::pull_plan::{plan_pull, PullPlan, TargetRegistry};
use omx_puller::{
    CheckKind, CheckStatus, CredentialChain, EcrReach, Fix, ResolvedTarget, TargetOptions,
    Verifier, VerifyReport,
};
use omx_registry::{ClientConfig, RegistryClient};
use omx_testenv::{moto_ecr_password, Format, ImageFixture, LayerSpec, Moto, Registry};
use serde_json::json;

const ACCOUNT: &str = "123456789012";
const SOURCE: &str = "registry.example.org";

async fn context(moto: &Moto) -> AwsContext {
    emulator_context(&moto.endpoint()).await
}

fn plan(images: &[String], table: &NamespaceTable, registry: &TargetRegistry) -> PullPlan {
    let entries = parse_pull_manifest(&json!({ "manifest": images }).to_string()).unwrap();
    let plan = plan_pull(&entries.entries, table, registry);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    plan
}

/// A client that logs in to the ECR stand-in with the token moto hands out.
fn client(target: &ResolvedTarget) -> RegistryClient {
    assert!(target.ecr.is_some(), "an ECR target");
    RegistryClient::new(ClientConfig {
        credentials: CredentialChain::ecr(target, EcrReach::Target).build(),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Each image's checks as `(kind, status, fix)`.
fn outcomes(report: &VerifyReport) -> Vec<Vec<(CheckKind, CheckStatus, Option<Fix>)>> {
    report
        .images
        .iter()
        .map(|image| {
            image
                .checks
                .iter()
                .map(|check| (check.kind, check.status, check.fix.clone()))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn every_check_passes_or_fails_with_its_reason_and_fix() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let ecr_registry = Registry::builder()
        .basic_auth("AWS", moto_ecr_password(ACCOUNT))
        .start();
    let context = context(&moto).await;
    let ecr = context.ecr();

    let amd64 = ImageFixture::single(&LayerSpec::distinct(1, 1, 10_000), Format::DockerV2);
    let arm64_only = ImageFixture::index(
        &[("linux", "arm64")],
        &LayerSpec::distinct(2, 1, 10_000),
        Format::Oci,
    );
    let good_digest = amd64.push(&ecr_registry, &format!("{SOURCE}/team/good:1"));
    amd64.push(&ecr_registry, &format!("{SOURCE}/team/open:1"));
    arm64_only.push(&ecr_registry, &format!("{SOURCE}/team/arm:1"));
    for repository in ["team/good", "team/open", "team/arm"] {
        ecr.ensure_repository(&format!("{SOURCE}/{repository}"))
            .await
            .unwrap();
    }
    for repository in ["team/good", "team/arm"] {
        ecr.ensure_omics_policy(&format!("{SOURCE}/{repository}"))
            .await
            .unwrap();
    }

    let table = NamespaceTable::builtin();
    let options = TargetOptions {
        ecr_registry_endpoint: Some(ecr_registry.host()),
        ..TargetOptions::default()
    };
    let target = ResolvedTarget::for_ecr(context, None, None, &options)
        .await
        .unwrap();
    let images: Vec<String> = ["good", "open", "arm", "missing"]
        .iter()
        .map(|name| format!("{SOURCE}/team/{name}:1"))
        .collect();
    let plan = plan(&images, &table, &target.registry);
    let verifier = Verifier::new(client(&target), target.clone(), table.clone(), None);
    let report = verifier.verify(&plan).await;

    use CheckKind::*;
    use CheckStatus::*;
    let passed = [
        (Image, Pass, None),
        (OmicsAccess, Pass, None),
        (LinuxAmd64, Pass, None),
        (Region, Pass, None),
    ];
    assert_eq!(
        outcomes(&report),
        vec![
            passed.to_vec(),
            vec![
                (Image, Pass, None),
                (OmicsAccess, Fail, Some(Fix::Pull)),
                (LinuxAmd64, Pass, None),
                (Region, Pass, None),
            ],
            vec![
                (Image, Pass, None),
                (OmicsAccess, Pass, None),
                (LinuxAmd64, Fail, Some(Fix::Amd64Image)),
                (Region, Pass, None),
            ],
            vec![
                (Image, Fail, Some(Fix::Pull)),
                (OmicsAccess, Skip, None),
                (LinuxAmd64, Skip, None),
                (Region, Pass, None),
            ],
        ]
    );
    assert!(!report.all_passed());
    assert!(report.images[0].passed());
    let reason = |image: usize, check: usize| report.images[image].checks[check].reason.clone();
    assert_eq!(reason(0, 0), format!("present, {good_digest}"));
    assert_eq!(reason(0, 2), "a linux/amd64 image");
    assert_eq!(reason(0, 3), "in us-east-1");
    assert_eq!(
        reason(1, 1),
        format!("repository {SOURCE}/team/open has no policy, so omics.amazonaws.com cannot pull")
    );
    assert_eq!(
        reason(2, 2),
        "an index of linux/arm64; HealthOmics runs linux/amd64 only"
    );
    assert_eq!(
        reason(3, 0),
        format!(
            "{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{SOURCE}/team/missing:1 is not in the \
             registry"
        )
    );

    // Workflows in another region cannot use any of them.
    let elsewhere = Verifier::new(
        client(&target),
        target,
        table,
        Some("eu-west-1".to_string()),
    );
    let report = elsewhere.verify_image(&plan.images[0]).await;
    let region = &report.checks[3];
    assert_eq!(region.status, Fail);
    assert_eq!(
        region.fix,
        Some(Fix::PullInto {
            region: "eu-west-1".to_string()
        })
    );
    assert_eq!(
        region.reason,
        "in us-east-1; HealthOmics in eu-west-1 pulls only from ECR in eu-west-1"
    );
}

/// Images not cached yet pass when their prefix's rule and creation template are in place,
/// with the platform read from upstream; without a rule, or without the registry policy's
/// import statement, `setup` is the fix.
#[tokio::test]
async fn images_of_a_pull_through_cache_are_checked_by_rule_template_and_upstream() {
    let Some(upstream) = Registry::try_start() else {
        return;
    };
    let fixture = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64")],
        &LayerSpec::distinct(3, 1, 10_000),
        Format::Oci,
    );
    fixture.push(&upstream, "biocontainers/tool:1");
    let localhost = format!("localhost:{}", upstream.port());
    let rules = json!({"rules": [
        {"hosts": [upstream.host()], "namespace": "quay", "method": "pull-through-cache"},
        {"hosts": ["uncached.example.org"], "namespace": "elsewhere", "method": "pull-through-cache"},
        // The same upstream by another name, cached under a prefix the registry policy omits.
        {"hosts": [localhost.clone()], "namespace": "noimport", "method": "pull-through-cache"},
    ]});
    let table = NamespaceTable::builtin()
        .with_user_rules(&rules.to_string())
        .unwrap();
    let not_found = |code: &str| json!({"__type": code, "message": "recorded"});
    let (ecr, replay) = recorded_ecr(vec![
        exchange(
            "DescribeImages",
            json!({"repositoryName": "quay/biocontainers/tool", "imageIds": [{"imageTag": "1"}]}),
            400,
            not_found("RepositoryNotFoundException"),
        ),
        exchange(
            "DescribePullThroughCacheRules",
            json!({"ecrRepositoryPrefixes": ["quay"]}),
            200,
            json!({"pullThroughCacheRules": [{"ecrRepositoryPrefix": "quay",
                "upstreamRegistryUrl": upstream.host(), "registryId": ACCOUNT}]}),
        ),
        exchange(
            "DescribeRepositoryCreationTemplates",
            json!({"prefixes": ["quay"]}),
            200,
            json!({"registryId": ACCOUNT, "repositoryCreationTemplates": [{"prefix": "quay",
                "appliedFor": ["PULL_THROUGH_CACHE"],
                "repositoryPolicy": Grant::omics_pull().policy_document()}]}),
        ),
        exchange(
            "GetRegistryPolicy",
            json!({}),
            200,
            json!({"registryId": ACCOUNT, "policyText": Grant::omics_import("us-east-1", ACCOUNT, "quay").policy_document()}),
        ),
        exchange(
            "DescribeImages",
            json!({"repositoryName": "elsewhere/tool", "imageIds": [{"imageTag": "2"}]}),
            400,
            not_found("RepositoryNotFoundException"),
        ),
        exchange(
            "DescribePullThroughCacheRules",
            json!({"ecrRepositoryPrefixes": ["elsewhere"]}),
            400,
            not_found("PullThroughCacheRuleNotFoundException"),
        ),
        exchange(
            "DescribeImages",
            json!({"repositoryName": "noimport/biocontainers/tool", "imageIds": [{"imageTag": "1"}]}),
            400,
            not_found("ImageNotFoundException"),
        ),
        exchange(
            "DescribePullThroughCacheRules",
            json!({"ecrRepositoryPrefixes": ["noimport"]}),
            200,
            json!({"pullThroughCacheRules": [{"ecrRepositoryPrefix": "noimport",
                "upstreamRegistryUrl": localhost, "registryId": ACCOUNT}]}),
        ),
        exchange(
            "DescribeRepositoryCreationTemplates",
            json!({"prefixes": ["noimport"]}),
            200,
            json!({"registryId": ACCOUNT, "repositoryCreationTemplates": [{"prefix": "noimport",
                "appliedFor": ["PULL_THROUGH_CACHE", "CREATE_ON_PUSH"],
                "repositoryPolicy": Grant::omics_pull().policy_document()}]}),
        ),
        exchange(
            "GetRegistryPolicy",
            json!({}),
            200,
            json!({"registryId": ACCOUNT, "policyText": Grant::omics_import("us-east-1", ACCOUNT, "quay").policy_document()}),
        ),
    ]);
    let registry = TargetRegistry::Ecr {
        account: Some(ACCOUNT.to_string()),
        region: Some("us-east-1".to_string()),
        endpoint: Default::default(),
    };
    let target = ResolvedTarget {
        api_host: registry.host(),
        registry: registry.clone(),
        ecr: Some(ecr),
        secrets: None,
    };
    let plan = plan(
        &[
            format!("{}/biocontainers/tool:1", upstream.host()),
            "uncached.example.org/tool:2".to_string(),
            format!("{localhost}/biocontainers/tool:1"),
        ],
        &table,
        &registry,
    );
    // One image at a time, so the recorded exchanges come in their order.
    let verifier = Verifier::new(
        RegistryClient::new(ClientConfig::default()).unwrap(),
        target,
        table,
        None,
    )
    .with_concurrency(1);
    let report = verifier.verify(&plan).await;
    replay.assert_requests_match(&[]);

    use CheckKind::*;
    use CheckStatus::*;
    assert_eq!(
        outcomes(&report),
        vec![
            vec![
                (Image, Pass, None),
                (OmicsAccess, Pass, None),
                (LinuxAmd64, Pass, None),
                (Region, Pass, None),
            ],
            vec![
                (Image, Fail, Some(Fix::Setup)),
                (OmicsAccess, Skip, None),
                (LinuxAmd64, Skip, None),
                (Region, Pass, None),
            ],
            vec![
                (Image, Pass, None),
                (OmicsAccess, Fail, Some(Fix::Setup)),
                (LinuxAmd64, Pass, None),
                (Region, Pass, None),
            ],
        ]
    );
    assert_eq!(
        report.images[2].checks[1].reason,
        "the registry policy does not let omics.amazonaws.com create noimport/ repositories and \
         import upstream images into them"
    );
    let checks = &report.images[0].checks;
    assert_eq!(
        checks[0].reason,
        format!(
            "not cached yet; the pull-through cache rule quay/ fetches it from {} on first pull",
            upstream.host()
        )
    );
    assert_eq!(
        checks[1].reason,
        "omics.amazonaws.com may create quay/ repositories and import into them, and the \
         creation template quay lets it pull"
    );
    assert_eq!(
        checks[2].reason,
        "upstream: an index of linux/amd64, linux/arm64"
    );
    assert_eq!(
        report.images[1].checks[0].reason,
        "not cached, and there is no pull-through cache rule for elsewhere/ to fetch it from \
         uncached.example.org"
    );
}

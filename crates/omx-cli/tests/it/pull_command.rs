//! Runs the built `omx-ecr-helper pull` end to end against real parts: moto server as the ECR
//! control plane (repositories, tags, policies, the authorization token), and `docker-registry`
//! instances as the source registry and as the ECR registry API. The ECR-standing registry's
//! htpasswd holds moto's token (`AWS` / `123456789012-auth-token`), so the whole login flow is
//! real: `GetAuthorizationToken` on moto, then Basic `AWS:<token>` on the registry.

use omx_core::policy::{omics_grants, OMICS_SID};
use omx_testenv::{
    moto_ecr_password, Format, ImageFixture, LayerSpec, Moto, Registry, MOTO_ACCOUNT_ID,
};
use serde_json::{json, Value};

use crate::util::on_moto as omx;
use crate::util::{statuses, text, writes_logged};

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn tags_of(moto: &Moto, repository: &str) -> Vec<(String, String)> {
    let arn = format!("arn:aws:ecr:us-east-1:{MOTO_ACCOUNT_ID}:repository/{repository}");
    let tags = moto.ecr_call("ListTagsForResource", json!({"resourceArn": arn}));
    tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["Key"].as_str().unwrap().to_string(),
                t["Value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn policy_of(moto: &Moto, repository: &str) -> String {
    let policy = moto.ecr_call("GetRepositoryPolicy", json!({"repositoryName": repository}));
    policy["policyText"].as_str().unwrap().to_string()
}

#[test]
fn pull_into_ecr_creates_tagged_granted_repositories_then_skips_everything() {
    let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let ecr_registry = Registry::builder()
        .basic_auth("AWS", moto_ecr_password(MOTO_ACCOUNT_ID))
        .start();
    let home = tempfile::tempdir().unwrap();

    let tool_1 = ImageFixture::single(&LayerSpec::distinct(1, 2, 200_000), Format::DockerV2)
        .push(&source, "team/tool:1");
    let tool_2 = ImageFixture::single(&LayerSpec::distinct(3, 2, 200_000), Format::Oci)
        .push(&source, "team/tool:2");
    let multi = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(5, 1, 100_000),
        Format::Oci,
    )
    .push(&source, "lab/multi:1");

    let src = source.host();
    let namespace = format!("127.0.0.1-{}", source.port());
    // A repository someone already gave a policy: our grant is merged in, theirs kept.
    let theirs = format!("{namespace}/lab/multi");
    moto.ecr_call("CreateRepository", json!({"repositoryName": theirs}));
    let their_policy = json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "team pull", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "ecr:BatchGetImage"}]
    });
    moto.ecr_call(
        "SetRepositoryPolicy",
        json!({"repositoryName": theirs, "policyText": their_policy.to_string()}),
    );

    let manifest = home.path().join("container_image_manifest.json");
    let inputs = [
        format!("{src}/team/tool:1"),
        format!("{src}/team/tool:2"),
        format!("{src}/lab/multi:1"),
        format!("{src}/team/missing:9"),
    ];
    std::fs::write(&manifest, json!({"manifest": inputs}).to_string()).unwrap();
    let map_file = home.path().join("map.json");
    let args = [
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        "ecr://123456789012/us-east-1",
        "--ecr-registry-endpoint",
        &ecr_registry.host(),
        "--format",
        "json",
        "--output-map",
        map_file.to_str().unwrap(),
    ];

    let output = omx(&args, &moto, home.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let first = output.json();
    assert_eq!(
        statuses(&first),
        vec![
            (inputs[0].clone(), "SUCCEEDED".to_string()),
            (inputs[1].clone(), "SUCCEEDED".to_string()),
            (inputs[2].clone(), "SUCCEEDED".to_string()),
            (inputs[3].clone(), "FAILED".to_string()),
        ]
    );
    let digests: Vec<&str> = first["images"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        digests,
        vec![tool_1.as_str(), tool_2.as_str(), multi.as_str()]
    );
    // Exact bytes for programs, rounded sizes for people.
    let copied = &first["images"][0];
    assert!(copied["bytes_copied"].as_u64().unwrap() > 0, "{copied}");
    let message = copied["message"].as_str().unwrap();
    assert!(message.starts_with("copied "), "{message}");
    assert!(
        [" B)", " KiB)", " MiB)"]
            .iter()
            .any(|unit| message.contains(unit)),
        "{message}"
    );
    assert!(first["images"][3].get("bytes_copied").is_none());
    let failure = first["images"][3]["message"].as_str().unwrap();
    assert!(
        failure.contains("team/missing:9") && failure.contains("does not exist"),
        "{failure}"
    );
    assert_eq!(
        first["images"][0]["target"],
        format!("{ECR_HOST}/{namespace}/team/tool:1")
    );

    // Repositories: created with our tag and the omics grant; the existing one merged, untagged.
    let ours = format!("{namespace}/team/tool");
    let mut expected = vec![theirs.clone(), ours.clone()];
    expected.sort();
    assert_eq!(moto.repository_names(), expected);
    assert_eq!(
        tags_of(&moto, &ours),
        vec![("createdBy".to_string(), "omx-ecr-helper".to_string())]
    );
    assert!(omics_grants(&policy_of(&moto, &ours)));
    let merged = policy_of(&moto, &theirs);
    assert!(omics_grants(&merged), "{merged}");
    assert!(
        merged.contains("team pull") && merged.contains(OMICS_SID),
        "{merged}"
    );
    assert_eq!(tags_of(&moto, &theirs), vec![]);

    // The mapping users need: private URIs and a containerRegistryMap of the images in place.
    let map: Value = serde_json::from_str(&std::fs::read_to_string(&map_file).unwrap()).unwrap();
    assert_eq!(map["images"].as_array().unwrap().len(), 3);
    assert_eq!(
        map["containerRegistryMap"]["imageMappings"][0],
        json!({"sourceImage": inputs[0], "destinationImage": format!("{ECR_HOST}/{ours}:1")})
    );
    assert_eq!(map["containerRegistryMap"]["registryMappings"], json!([]));

    // A second run finds everything in place and writes nothing to the registry.
    let writes_before = writes_logged(&ecr_registry);
    let output = omx(&args, &moto, home.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let second = output.json();
    let second_statuses: Vec<String> = statuses(&second).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        second_statuses,
        vec!["SKIPPED", "SKIPPED", "SKIPPED", "FAILED"]
    );
    assert_eq!(
        writes_logged(&ecr_registry),
        writes_before,
        "{}",
        ecr_registry.log()
    );
}

/// moto answers 500 to pull-through-cache calls and serves no registry API, so a
/// `docker-registry` in proxy mode stands in for ECR's pull-through-cache endpoint here: pulling
/// `quay/...` through it fetches from the upstream registry, as ECR does from quay.io. The
/// upstream is a local registry that a namespace rule marks as the `quay` pull-through source;
/// it holds the image at the same path under `quay/` too, because distribution's proxy mode maps
/// paths one to one where ECR strips the prefix.
#[test]
fn pull_through_cache_images_are_primed_verified_tagged_and_granted() {
    let (Some(moto), Some(upstream)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let cache = Registry::builder()
        .pull_through_cache_of(upstream.url())
        .start();
    let home = tempfile::tempdir().unwrap();
    let fixture = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(11, 1, 50_000),
        Format::Oci,
    );
    let digest = fixture.push(&upstream, "biocontainers/tool:1");
    fixture.push(&upstream, "quay/biocontainers/tool:1");

    let rules = home.path().join("namespaces.json");
    let rule = json!({"rules": [{"hosts": [upstream.host()], "namespace": "quay",
        "method": "pull-through-cache"}]});
    std::fs::write(&rules, rule.to_string()).unwrap();
    let manifest = home.path().join("manifest.json");
    let input = format!("{}/biocontainers/tool:1", upstream.host());
    std::fs::write(&manifest, json!({"manifest": [input]}).to_string()).unwrap();

    let output = omx(
        &[
            "pull",
            manifest.to_str().unwrap(),
            "--registry",
            "ecr://123456789012/us-east-1",
            "--ecr-registry-endpoint",
            &cache.host(),
            "--namespaces",
            rules.to_str().unwrap(),
            "--format",
            "json",
        ],
        &moto,
        home.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = output.json();
    let image = &report["images"][0];
    assert_eq!(image["status"], "SUCCEEDED", "{report}");
    assert_eq!(image["digest"], digest.as_str());
    assert!(
        image["message"].as_str().unwrap().contains("pull-through"),
        "{report}"
    );

    // The cache fetched the index and every platform's manifest from upstream.
    let fetched = cache.log();
    for child in fixture.images() {
        assert!(fetched.contains(&child.manifest.digest), "{fetched}");
    }
    let repository = "quay/biocontainers/tool";
    assert_eq!(moto.repository_names(), vec![repository.to_string()]);
    assert_eq!(
        tags_of(&moto, repository),
        vec![("createdBy".to_string(), "omx-ecr-helper".to_string())]
    );
    assert!(omics_grants(&policy_of(&moto, repository)));
}

#[test]
fn dry_run_checks_and_changes_nothing() {
    let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let target = Registry::start();
    let home = tempfile::tempdir().unwrap();
    ImageFixture::single(&LayerSpec::distinct(21, 1, 10_000), Format::Oci)
        .push(&source, "team/tool:1");
    let manifest = home.path().join("manifest.json");
    let input = format!("{}/team/tool:1", source.host());
    std::fs::write(&manifest, json!({"manifest": [input]}).to_string()).unwrap();

    let output = omx(
        &[
            "pull",
            manifest.to_str().unwrap(),
            "--registry",
            &target.host(),
            "--dry-run",
            "--format",
            "json",
        ],
        &moto,
        home.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(output.json()["images"][0]["status"], "PLANNED");
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

#[test]
fn unusable_input_exits_2_before_any_aws_call() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let manifest = home.path().join("manifest.json");
    std::fs::write(&manifest, "{\"manifest\": [\"ubuntu:20.04\",]}").unwrap();
    let output = omx(&["pull", manifest.to_str().unwrap()], &moto, home.path());
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("line 1, column 30"), "{stderr}");
    assert!(moto.repository_names().is_empty());
}

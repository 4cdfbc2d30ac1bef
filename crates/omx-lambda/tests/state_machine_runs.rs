//! The state machines `cdk deploy` creates, executed with the Lambdas it deploys: the synthesized
//! definitions run unmodified (only references resolved to ARNs and names) in an Amazon States
//! Language interpreter, each Lambda task invoking the built `bootstrap` through the Lambda Invoke
//! and Runtime APIs, each CodeBuild task running the project's buildspec here, with moto standing
//! in for the AWS control planes and `docker-registry` for the registries (see `state_machines`).
//!
//! Needs the release artifacts (`infra/scripts/build-artifacts`) and the CDK app's packages
//! (`npm ci --prefix infra`); skips without them, unless `OMX_REQUIRE_LAMBDA_ARTIFACTS=1`.

// Shared with tests/bootstrap.rs, which uses the parts this test does not.
#[allow(dead_code)]
mod artifacts;
mod emulated_aws;
#[allow(dead_code)]
mod runtime_api;
mod state_machines;

use std::time::{Duration, Instant};

use artifacts::Artifacts;
use emulated_aws::{create_repository, ecr_registry, pull_through_cache_created, put_bundle};
use omx_testenv::{Format, ImageFixture, LayerSpec, Moto, Registry};
use serde_json::{json, Value};
use state_machines::submit::{reported, StepFunctionsApi};
use state_machines::{
    infra_installed, run_state_machine, template_policies, Lambdas, LocalCodeBuild,
};

/// The Lambda hands larger images to CodeBuild (OMX_MAX_LAMBDA_BYTES); "big" is above it.
const MAX_LAMBDA_BYTES: u64 = 150_000;

/// The puller's world: a source registry with images, ECR (moto plus a registry), the Lambdas.
struct PullerWorld {
    moto: Moto,
    source: Registry,
    ecr_registry: Registry,
}

impl PullerWorld {
    fn start() -> Option<PullerWorld> {
        let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
            return None;
        };
        let ecr_registry = ecr_registry();
        Some(PullerWorld {
            moto,
            source,
            ecr_registry,
        })
    }

    /// Pushes an image of `layers` layers of `size` bytes to the source; its manifest reference.
    fn image(&self, path: &str, seed: u64, size: u64) -> String {
        ImageFixture::single(&LayerSpec::distinct(seed, 2, size), Format::Oci)
            .push(&self.source, path);
        format!("{}/{path}", self.source.host())
    }

    fn lambdas(&self, artifacts: &Artifacts) -> Lambdas {
        Lambdas::start(
            artifacts,
            &self.moto,
            &self.ecr_registry,
            &[(
                "omx-pull-image",
                vec![("OMX_MAX_LAMBDA_BYTES", MAX_LAMBDA_BYTES.to_string())],
            )],
        )
    }

    fn codebuild(&self, artifacts: &Artifacts) -> LocalCodeBuild {
        LocalCodeBuild::new(
            artifacts,
            &self.moto,
            &self.ecr_registry,
            "omx-container-pull",
            false,
        )
    }

    /// The source registry's images land in `127.0.0.1-<port>/...`: a namespace the stack lets
    /// the puller write only when app-config lists it.
    fn app_config(&self) -> Value {
        json!({"container_puller": {"extra_namespaces": [format!("127.0.0.1-{}", self.source.port())]}})
    }
}

fn statuses(images: &Value) -> Vec<(String, String)> {
    images
        .as_array()
        .expect("a list of results")
        .iter()
        .map(|image| {
            (
                image["image"].as_str().unwrap_or_default().to_string(),
                image["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn puller_execution_copies_skips_and_fails_on_missing_and_invalid_images() {
    let (Some(artifacts), Some(infra)) = (Artifacts::find(), infra_installed()) else {
        return;
    };
    let Some(world) = PullerWorld::start() else {
        return;
    };
    let present = world.image("team/present:1", 71, 20_000);
    let fresh = world.image("team/fresh:1", 72, 20_000);
    let big = world.image("team/big:1", 73, 100_000);
    let missing = format!("{}/team/missing:1", world.source.host());
    let invalid = "Not A Valid Reference!".to_string();
    let lambdas = world.lambdas(&artifacts);
    let codebuild = world.codebuild(&artifacts);
    let app_config = world.app_config();
    let run = |manifest: &[Value]| {
        let input = json!({ "manifest": manifest });
        run_state_machine(&infra, "puller", &app_config, input, &lambdas, &codebuild)
    };

    let first = run(&[json!(present)]);
    assert_eq!(first.status, "SUCCEEDED", "{first:?}\n{}", lambdas.logs());
    assert_eq!(first.output["total"], 1);
    assert_eq!(
        statuses(&first.output["images"]),
        [(present.clone(), "SUCCEEDED".into())]
    );

    // A number is no image reference: the function refuses `{"image": 42}` (its request type
    // wants a string), and the task's Catch turns the function error into a FAILED result.
    let manifest = [&present, &fresh, &big, &missing, &invalid].map(|image| json!(image));
    let manifest = [manifest.as_slice(), &[json!(42)]].concat();
    let second = run(&manifest);
    assert_eq!(second.status, "FAILED", "{second:?}");
    assert_eq!(second.error, "OmxImagesFailed");
    let failed_list = second
        .cause
        .strip_prefix("3 of 6 image(s) failed: ")
        .unwrap_or_else(|| panic!("cause: {}", second.cause));
    let failed: Value =
        serde_json::from_str(failed_list).unwrap_or_else(|e| panic!("{e}: {}", second.cause));
    assert_eq!(
        statuses(&failed)[..2],
        [
            (missing.clone(), "FAILED".into()),
            (invalid.clone(), "FAILED".into())
        ],
        "only the failed images, in manifest order"
    );
    assert_eq!(failed[2]["image"], 42);
    assert_eq!(failed[2]["status"], "FAILED");
    let refused = failed[2]["message"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("omx-pull-image failed: ")
            && refused.contains("invalid type: integer `42`"),
        "the function's error type and error document: {refused}"
    );

    // Exactly {"image": <manifest entry>} reached the function, once per entry of each run.
    let mut events = lambdas.events("omx-pull-image");
    let mut expected: Vec<Value> = [json!(present)]
        .iter()
        .chain(manifest.iter())
        .map(|image| json!({ "image": image }))
        .collect();
    let key = |event: &Value| event.to_string();
    events.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(events, expected);

    // The too-large image went to the CodeBuild project, which copied it with the CLI.
    assert_eq!(second.builds.len(), 1, "{:?}", second.builds);
    let build = &second.builds[0];
    assert_eq!(build["project"], "omx-container-pull");
    assert_eq!(build["overrides"], json!({ "IMAGE": big }));
    assert_eq!(build["status"], "SUCCEEDED", "{}", build["log"]);

    // Now every image but the failed ones is there: a run of them all succeeds and skips them.
    let third = run(&[json!(present), json!(fresh), json!(big)]);
    assert_eq!(third.status, "SUCCEEDED", "{third:?}");
    assert_eq!(
        statuses(&third.output["images"]),
        [
            (present.clone(), "SKIPPED".into()),
            (fresh.clone(), "SKIPPED".into()),
            (big.clone(), "SKIPPED".into())
        ]
    );
    assert!(third.builds.is_empty(), "nothing left for CodeBuild");

    // `submit` starts an execution of the same state machine and follows it to its report:
    // every entry, the failed one from the results state's output in the execution's history.
    let api = StepFunctionsApi::start(&infra, &app_config, &lambdas, &codebuild);
    let submitted = api.submit(&artifacts, json!([present, missing]), &[]);
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert_eq!(submitted.status.code(), Some(1), "{stderr}");
    assert_eq!(
        reported(&submitted),
        [
            (present.clone(), "SKIPPED".into()),
            (missing.clone(), "FAILED".into())
        ],
        "{stderr}"
    );

    // Everything the function and the build did, the stack's roles allow.
    lambdas.assert_permissions_granted(&third.policies);
    codebuild.assert_permissions_granted(&third.policies);
}

#[test]
fn puller_runs_a_large_manifest_through_the_distributed_map_in_bounded_time() {
    let (Some(artifacts), Some(infra)) = (Artifacts::find(), infra_installed()) else {
        return;
    };
    let Some(world) = PullerWorld::start() else {
        return;
    };
    let images: Vec<String> = (0..3)
        .map(|index| world.image(&format!("many/tool-{index}:1"), 80 + index, 4_000))
        .collect();
    let lambdas = world.lambdas(&artifacts);
    let codebuild = world.codebuild(&artifacts);
    let app_config = world.app_config();
    let run = |input: Value| {
        run_state_machine(&infra, "puller", &app_config, input, &lambdas, &codebuild)
    };
    let copied = run(json!({ "manifest": images }));
    assert_eq!(copied.status, "SUCCEEDED", "{copied:?}\n{}", lambdas.logs());

    // 300 entries (the copied images again and again): each is an item of the Map, run at most
    // MaxConcurrency (10) at a time, answered SKIPPED by the real function.
    const ENTRIES: usize = 300;
    let manifest: Vec<&String> = (0..ENTRIES)
        .map(|index| &images[index % images.len()])
        .collect();
    let started = Instant::now();
    let large = run(json!({ "manifest": manifest }));
    let elapsed = started.elapsed();
    assert_eq!(large.status, "SUCCEEDED", "{large:?}");
    assert_eq!(large.output["total"], ENTRIES);
    let listed = statuses(&large.output["images"]);
    let expected: Vec<(String, String)> = manifest
        .iter()
        .map(|image| (image.to_string(), "SKIPPED".into()))
        .collect();
    assert_eq!(listed, expected, "every entry, in manifest order");
    assert!(
        elapsed < Duration::from_secs(150),
        "{ENTRIES} entries took {elapsed:?} (the interpreter alone: {} ms)",
        large.millis
    );
}

/// The ECR registry host the stacks' targets name (moto's account, the test region).
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

#[tokio::test(flavor = "multi_thread")]
async fn builder_execution_builds_changed_sources_skips_unchanged_ones_and_fails_on_missing_ones() {
    let (Some(artifacts), Some(infra)) = (Artifacts::find(), infra_installed()) else {
        return;
    };
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let ecr_registry = ecr_registry();
    put_bundle(
        &moto,
        "sources",
        &[
            (
                "tools/alpha/Dockerfile",
                "FROM scratch\nCOPY hello.txt /hello.txt\n",
            ),
            ("tools/alpha/hello.txt", "hello\n"),
        ],
    )
    .await;
    let lambdas = Lambdas::start(
        &artifacts,
        &moto,
        &ecr_registry,
        &[("omx-build-prepare", Vec::new())],
    );
    let codebuild = LocalCodeBuild::new(
        &artifacts,
        &moto,
        &ecr_registry,
        "omx-container-build",
        true,
    );
    let app_config = json!({"container_builder": {"source_uris": ["s3://sources/tools/"]}});
    let alpha = json!({"source_uri": "s3://sources/tools/alpha/", "target_image": "tools/alpha:1"});
    let missing =
        json!({"source_uri": "s3://sources/tools/missing/", "target_image": "tools/missing:1"});
    let run = |manifest: Value| {
        let input = json!({ "manifest": manifest });
        run_state_machine(&infra, "builder", &app_config, input, &lambdas, &codebuild)
    };

    let first = tokio::task::block_in_place(|| run(json!([alpha, missing])));
    assert_eq!(first.status, "FAILED", "{first:?}\n{}", lambdas.logs());
    assert_eq!(first.error, "OmxBuildsFailed");
    let failed: Value = serde_json::from_str(
        first
            .cause
            .strip_prefix("1 of 2 build(s) failed: ")
            .unwrap_or_else(|| panic!("cause: {}", first.cause)),
    )
    .unwrap();
    assert_eq!(failed[0]["source_uri"], missing["source_uri"], "{failed}");
    assert_eq!(failed[0]["status"], "FAILED");
    // The changed source was built by the CodeBuild project, with the prepared target and digest.
    assert_eq!(first.builds.len(), 1, "{:?}", first.builds);
    let build = &first.builds[0];
    assert_eq!(build["project"], "omx-container-build");
    assert_eq!(build["status"], "SUCCEEDED", "{}", build["log"]);
    assert_eq!(build["overrides"]["SOURCE_URI"], alpha["source_uri"]);
    assert_eq!(
        build["overrides"]["TARGET_IMAGE"],
        format!("{ECR_HOST}/tools/alpha:1")
    );
    assert!(build["overrides"]["SOURCE_DIGEST"]
        .as_str()
        .is_some_and(|digest| digest.starts_with("sha256:")));

    // The same source again: omx-build-prepare finds the image built from it, nothing is built.
    let second = tokio::task::block_in_place(|| run(json!([alpha])));
    assert_eq!(second.status, "SUCCEEDED", "{second:?}");
    assert_eq!(second.output["total"], 1);
    let unchanged = &second.output["builds"][0];
    assert_eq!(unchanged["status"], "SKIPPED", "{unchanged}");
    assert_eq!(unchanged["skip"], true);
    assert_eq!(
        unchanged["source_digest"],
        build["overrides"]["SOURCE_DIGEST"]
    );
    assert!(second.builds.is_empty());

    // Exactly {"source_uri", "target_image"} reached the function, once per entry.
    let mut events = lambdas.events("omx-build-prepare");
    events.sort_by_key(Value::to_string);
    let mut expected = vec![alpha.clone(), missing.clone(), alpha.clone()];
    expected.sort_by_key(Value::to_string);
    assert_eq!(events, expected);

    // `submit --builder` follows an execution of the builder to its report.
    let api = StepFunctionsApi::start(&infra, &app_config, &lambdas, &codebuild);
    let submitted =
        tokio::task::block_in_place(|| api.submit(&artifacts, json!([alpha]), &["--builder"]));
    let stderr = String::from_utf8_lossy(&submitted.stderr);
    assert_eq!(submitted.status.code(), Some(0), "{stderr}");
    assert_eq!(
        reported(&submitted),
        [("tools/alpha:1".to_string(), "SKIPPED".to_string())],
        "{stderr}"
    );

    lambdas.assert_permissions_granted(&second.policies);
    codebuild.assert_permissions_granted(&second.policies);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_policy_function_uses_only_what_its_role_grants() {
    let (Some(artifacts), Some(infra)) = (Artifacts::find(), infra_installed()) else {
        return;
    };
    let Some(moto) = Moto::try_start() else {
        return;
    };
    create_repository(&moto, "quay/biocontainers/tool").await;
    let ecr_registry = ecr_registry();
    let lambdas = Lambdas::start(
        &artifacts,
        &moto,
        &ecr_registry,
        &[("omx-apply-policy", Vec::new())],
    );
    let created = pull_through_cache_created("quay/biocontainers/tool");
    let answer = tokio::task::block_in_place(|| lambdas.invoke("omx-apply-policy", &created));
    assert_eq!(
        answer,
        json!({"repository": "quay/biocontainers/tool", "policy": "updated"})
    );
    let policies = tokio::task::block_in_place(|| template_policies(&infra, "puller", &json!({})));
    lambdas.assert_permissions_granted(&policies);
}

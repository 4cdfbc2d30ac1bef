//! The CodeBuild engine against moto: the bundle's source digest is computed from S3, the ECR
//! repository is prepared before the build starts, `StartBuild` carries the S3 source, the
//! environment and the buildspec (checked in the exact request moto recorded), the build is
//! followed with `BatchGetBuilds`, and the log link is reported. moto runs nothing, so the
//! pushed image never appears: the builder's verification reports that, naming the build.
//!
//! This file holds one test because it points moto's request recorder at a file through the
//! environment before starting moto, which must not race with other tests.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use omx_aws::{CodeBuild, S3};
use omx_builder::{
    source_digest, BuildInputs, BuildOptions, BuildPlan, Builder, CodeBuildEngine, Engine,
    DEFAULT_CODEBUILD_PROJECT,
};
use omx_core::manifest_file::parse_build_manifest;
use omx_core::policy::omics_grants;
use omx_core::report::ImageStatus;
use omx_puller::ResolvedTarget;
use omx_registry::ClientConfig;
use omx_testenv::Moto;
use serde_json::{json, Value};

/// The JSON bodies of the requests moto recorded for `target` (`X-Amz-Target`).
fn recorded_bodies(moto: &Moto, target: &str) -> Vec<Value> {
    let recording = moto
        .request("GET", "/moto-api/recorder/download-recording", &[], b"")
        .text();
    recording
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|entry| {
            entry["headers"]
                .as_object()
                .unwrap()
                .iter()
                .any(|(name, value)| {
                    name.eq_ignore_ascii_case("x-amz-target") && value.as_str() == Some(target)
                })
        })
        .map(|entry| {
            let body = entry["body"].as_str().unwrap();
            let bytes = if entry["body_encoded"].as_bool() == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            } else {
                body.as_bytes().to_vec()
            };
            serde_json::from_slice(&bytes).unwrap()
        })
        .collect()
}

fn variable<'a>(start_build: &'a Value, name: &str) -> Option<&'a str> {
    start_build["environmentVariablesOverride"]
        .as_array()?
        .iter()
        .find(|variable| variable["name"] == name)
        .and_then(|variable| {
            assert_eq!(variable["type"], "PLAINTEXT");
            variable["value"].as_str()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codebuild_builds_s3_bundles_and_reports_the_log_link() {
    let temp = tempfile::tempdir().unwrap();
    // moto reads this at start-up; no other test runs in this binary.
    std::env::set_var(
        "MOTO_RECORDER_FILEPATH",
        temp.path().join("recording.jsonl"),
    );
    let (Some(moto), Some(registry)) = (Moto::try_start(), ecr_standing_registry()) else {
        return;
    };
    let config = aws_config(&moto).await;
    let s3 = s3_client(&config);
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    let files = [
        (
            "Dockerfile",
            "FROM public.ecr.aws/docker/library/alpine:3.20\nCOPY app.sh /\n",
        ),
        ("app.sh", "echo hi\n"),
    ];
    let local_copy = temp.path().join("alpha");
    std::fs::create_dir(&local_copy).unwrap();
    for (name, content) in files {
        put_object(
            &s3,
            "bundles",
            &format!("tools/alpha/{name}"),
            content.into(),
        )
        .await;
        std::fs::write(local_copy.join(name), content).unwrap();
    }
    omx_aws::testing::create_codebuild_project(&config, DEFAULT_CODEBUILD_PROJECT).await;
    moto.request("POST", "/moto-api/recorder/start-recording", &[], b"");

    let manifest = json!({"manifest": [
        {"source_uri": "s3://bundles/tools/alpha/", "target_image": "alpha:omics"},
        {"source_uri": "bundles/local", "target_image": "local:omics"},
    ]});
    let (target, client_config) = ecr_target(&config, &registry).await;
    let entries = parse_build_manifest(&manifest.to_string()).unwrap();
    let mut plan = BuildPlan::new(&entries, &target.registry, temp.path());
    plan.require_s3_sources("CodeBuild reads bundles from S3; upload it first");
    assert_eq!(plan.builds.len(), 1);
    assert_eq!(
        plan.errors[0].error,
        "bundles/local is not in S3: CodeBuild reads bundles from S3; upload it first"
    );

    let engine = Engine::CodeBuild(CodeBuildEngine {
        client: CodeBuild::new(&config),
        project: DEFAULT_CODEBUILD_PROJECT.to_string(),
        poll_interval: Duration::from_millis(20),
        project_buildspec: false,
    });
    let build_args = BTreeMap::from([("VERSION".to_string(), "1.2".to_string())]);
    let options = BuildOptions {
        build_args: build_args.clone(),
        log_dir: temp.path().join("logs"),
        work_dir: temp.path().join("work"),
        ..BuildOptions::default()
    };
    let builder = Builder::new(
        engine.clone(),
        target,
        client_config,
        Some(S3::new(&config)),
        options.clone(),
    )
    .unwrap();
    let progress = Recorder::default();
    let report = builder.run(&plan, &progress).await;

    // The build "succeeded" in moto, which pushes nothing: the verification says so, with the
    // build and its log link.
    let image = &report.images[0];
    assert_eq!(image.status, ImageStatus::Failed, "{report:#?}");
    assert_eq!(image.target, format!("{ECR_HOST}/alpha:omics"));
    assert!(
        image.message.contains(&format!(
            "verification failed: {ECR_HOST}/alpha:omics does not exist after the build"
        )) && image
            .message
            .contains("CodeBuild build omx-container-build:")
            && image
                .message
                .contains("https://console.aws.amazon.com/cloudwatch/"),
        "{}",
        image.message
    );
    assert_eq!(report.errors, plan.errors);
    let steps = progress.steps.lock().unwrap().clone();
    let started = steps
        .iter()
        .find(|(_, step)| step.starts_with("CodeBuild build omx-container-build:"))
        .map(|(_, step)| step.as_str())
        .expect("the start is reported");
    assert!(
        started.contains(" started; logs: https://console.aws.amazon.com/cloudwatch/"),
        "{started}"
    );

    // The repository was ready, with its policy, before the build could push.
    assert_eq!(moto.repository_names(), ["alpha"]);
    let policy = moto.ecr_call("GetRepositoryPolicy", json!({"repositoryName": "alpha"}));
    assert!(omics_grants(policy["policyText"].as_str().unwrap()));

    // What CodeBuild was asked to do.
    let start_builds = recorded_bodies(&moto, "CodeBuild_20161006.StartBuild");
    assert_eq!(start_builds.len(), 1);
    let request = &start_builds[0];
    assert_eq!(request["projectName"], DEFAULT_CODEBUILD_PROJECT);
    assert_eq!(request["sourceTypeOverride"], "S3");
    assert_eq!(request["sourceLocationOverride"], "bundles/tools/alpha/");
    let expected_digest = source_digest(
        &local_copy,
        &BuildInputs {
            dockerfile: "Dockerfile",
            build_args: &build_args,
            platform: "linux/amd64",
        },
    )
    .unwrap()
    .to_string();
    assert_eq!(
        variable(request, "OMX_TARGET_IMAGE"),
        Some(format!("{ECR_HOST}/alpha:omics").as_str())
    );
    assert_eq!(variable(request, "OMX_REGISTRY"), Some(ECR_HOST));
    assert_eq!(
        variable(request, "OMX_SOURCE_DIGEST"),
        Some(expected_digest.as_str())
    );
    assert_eq!(variable(request, "OMX_BUILD_ARG_0"), Some("VERSION=1.2"));
    assert_eq!(variable(request, "OMX_PLATFORM"), Some("linux/amd64"));
    let buildspec = request["buildspecOverride"].as_str().unwrap();
    assert!(
        buildspec.contains("docker push \\\"$OMX_TARGET_IMAGE\\\""),
        "{buildspec}"
    );
    let build_id = started
        .strip_prefix("CodeBuild build ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    let polls = recorded_bodies(&moto, "CodeBuild_20161006.BatchGetBuilds");
    assert!(!polls.is_empty());
    assert!(polls.iter().all(|poll| poll["ids"] == json!([build_id])));

    // CodeBuild pushes to ECR only.
    let error = Builder::new(
        engine,
        ResolvedTarget::registry(&registry.host()),
        ClientConfig::default(),
        None,
        options,
    )
    .err()
    .expect("a non-ECR target is refused")
    .to_string();
    assert!(error.contains("pushes to ECR only"), "{error}");
}

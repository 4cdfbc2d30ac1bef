//! Real builds with buildah (chroot isolation, vfs storage in a per-test folder) of bundles from
//! moto's S3 (a folder and a zip) and a local folder, pushed to ECR on moto whose registry API is a
//! `docker-registry` that accepts only the ECR token: the base image is pulled with that login,
//! repositories get their tag and policy, a second run skips, a changed file rebuilds only its
//! image, `force` rebuilds everything, and a broken Dockerfile fails alone with its log kept.

mod common;

use std::collections::BTreeMap;

use common::*;
use omx_aws::S3;
use omx_builder::{
    published, BuildOptions, BuildPlan, Buildah, Builder, Engine, SOURCE_DIGEST_LABEL,
};
use omx_core::manifest_file::parse_build_manifest;
use omx_core::policy::{omics_grants, CREATED_BY_TAG};
use omx_core::report::{ImageStatus, RunReport};
use omx_core::Reference;
use omx_registry::{ManifestKind, Platform, RegistryClient, Repository};
use omx_testenv::{moto_ecr_password, Moto, MOTO_ACCOUNT_ID};
use serde_json::{json, Value};

const ALPHA_DOCKERFILE: &str = "\
ARG BASE
FROM ${BASE}
ARG GREETING=unset
ENV APP_GREETING=${GREETING}
COPY hello.txt /app/hello.txt
COPY run.sh /app/run.sh
RUN sh /app/run.sh && test \"$(cat /app/out.txt)\" = \"hello from alpha\"
";

const BETA_DOCKERFILE: &str = "\
ARG BASE
FROM $BASE
ARG GREETING
COPY . /src
RUN /src/build.sh
";

fn statuses(report: &RunReport) -> Vec<ImageStatus> {
    report.images.iter().map(|image| image.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_pushes_skips_and_rebuilds_only_what_changed() {
    let (Some(moto), Some(registry)) = (Moto::try_start(), ecr_standing_registry()) else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let base = push_base_image(&registry, temp.path());

    let config = aws_config(&moto).await;
    let s3 = s3_client(&config);
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    put_object(
        &s3,
        "bundles",
        "tools/alpha/Dockerfile",
        ALPHA_DOCKERFILE.into(),
    )
    .await;
    put_object(
        &s3,
        "bundles",
        "tools/alpha/hello.txt",
        "hello from alpha".into(),
    )
    .await;
    put_object(
        &s3,
        "bundles",
        "tools/alpha/run.sh",
        "cat /app/hello.txt > /app/out.txt\n".into(),
    )
    .await;
    let beta = zip_of(&[
        ("Dockerfile", BETA_DOCKERFILE, 0o644),
        // Executable only if the zip's mode survives extraction.
        (
            "build.sh",
            "#!/bin/sh\nset -e\necho \"$GREETING\" > /greeting\n",
            0o755,
        ),
    ]);
    put_object(&s3, "bundles", "tools/beta.zip", beta).await;
    let gamma = temp.path().join("bundles/gamma");
    std::fs::create_dir_all(&gamma).unwrap();
    std::fs::write(
        gamma.join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nRUN echo \"gamma is broken\" && exit 3\n",
    )
    .unwrap();

    let manifest = json!({"manifest": [
        {"source_uri": "s3://bundles/tools/alpha/", "target_image": "alpha:omics"},
        {"source_uri": "s3://bundles/tools/beta.zip", "target_image": format!("{ECR_HOST}/team/beta:1.0")},
        {"source_uri": "bundles/gamma", "target_image": "gamma:omics"},
    ]});
    let entries = parse_build_manifest(&manifest.to_string()).unwrap();

    let (target, client_config) = ecr_target(&config, &registry).await;
    let plan = BuildPlan::new(&entries, &target.registry, temp.path());
    assert_eq!((plan.builds.len(), plan.errors.len()), (3, 0), "{plan:?}");
    let (wrapper, calls) = counting_buildah(temp.path());
    let engine = Engine::Buildah(Buildah {
        program: wrapper,
        storage: Some(temp.path().join("store")),
    });
    let options = BuildOptions {
        build_args: BTreeMap::from([
            ("BASE".to_string(), base.clone()),
            ("GREETING".to_string(), "hello".to_string()),
        ]),
        log_dir: temp.path().join("logs"),
        work_dir: temp.path().join("work"),
        ..BuildOptions::default()
    };
    let builder = |options: BuildOptions| {
        Builder::new(
            engine.clone(),
            target.clone(),
            client_config.clone(),
            Some(S3::new(&config)),
            options,
        )
        .unwrap()
    };

    // First run: alpha and beta are built and pushed; gamma fails alone, its log kept.
    let progress = Recorder::default();
    let first = builder(options.clone()).run(&plan, &progress).await;
    assert_eq!(
        statuses(&first),
        [
            ImageStatus::Succeeded,
            ImageStatus::Succeeded,
            ImageStatus::Failed
        ],
        "{first:#?}"
    );
    assert_eq!(builds_run(&calls), 3);
    assert_eq!(first.images[0].target, format!("{ECR_HOST}/alpha:omics"));
    assert_eq!(first.images[1].target, format!("{ECR_HOST}/team/beta:1.0"));
    assert_eq!(first.images[1].input, format!("{ECR_HOST}/team/beta:1.0"));
    assert_eq!(first.images[1].source, "s3://bundles/tools/beta.zip");
    let gamma_log = temp.path().join("logs/gamma_omics.log");
    let failure = &first.images[2].message;
    assert!(
        failure.contains("buildah bud failed (exit status: 3)")
            && failure.contains(&gamma_log.display().to_string()),
        "{failure}"
    );
    let log = std::fs::read_to_string(&gamma_log).unwrap();
    assert!(log.contains("gamma is broken"), "{log}");
    assert!(log.contains(" bud --isolation chroot "), "{log}");
    for log in ["logs/alpha_omics.log", "logs/team_beta_1.0.log"] {
        let text = std::fs::read_to_string(temp.path().join(log)).unwrap();
        assert!(text.contains("# buildah push: exit status: 0"), "{text}");
        // The login went through a private file, never through the command line or the log.
        let token = moto_ecr_password(MOTO_ACCOUNT_ID);
        assert!(
            !text.contains(&token) && !text.contains("--creds"),
            "{text}"
        );
    }
    let steps = progress.steps.lock().unwrap().clone();
    let reported: Vec<&str> = steps
        .iter()
        .filter(|(target, _)| target.ends_with("/alpha:omics"))
        .map(|(_, step)| match step.starts_with("fetching ") {
            true => "fetching",
            false => step.as_str(),
        })
        .collect();
    assert_eq!(reported, ["fetching", "buildah bud", "buildah push"]);
    assert_eq!(progress.done.lock().unwrap().len(), 3);

    // The pushed images carry their source digest and what the Dockerfiles did.
    let client = RegistryClient::new(client_config.clone()).unwrap();
    let amd64 = Platform::linux_amd64();
    for (position, name) in [(0, "alpha:omics"), (1, "team/beta:1.0")] {
        let image = Reference::parse(&format!("{}/{name}", registry.host())).unwrap();
        let found = published(&client, &image, &amd64).await.unwrap().unwrap();
        assert_eq!(Some(&found.digest), first.images[position].digest.as_ref());
        let label = found.source_digest.expect("the source digest label");
        assert!(
            first.images[position].message.contains(&label[..19]),
            "{}",
            first.images[position].message
        );
    }
    let alpha = Reference::parse(&format!("{}/alpha:omics", registry.host())).unwrap();
    let manifest = client.get_manifest(&alpha).await.unwrap();
    let ManifestKind::Image(image) = manifest.kind else {
        panic!("a single-platform image");
    };
    let config_blob = client
        .get_blob_bytes(&Repository::of(&alpha), &image.config.digest, 1 << 20)
        .await
        .unwrap();
    let image_config: Value = serde_json::from_slice(&config_blob).unwrap();
    assert_eq!(image_config["architecture"], "amd64");
    let env = image_config["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&json!("APP_GREETING=hello")), "{env:?}");
    assert!(image_config["config"]["Labels"][SOURCE_DIGEST_LABEL].is_string());

    // ECR: the images that built have tagged repositories HealthOmics may pull from; the broken
    // one got none.
    assert_eq!(moto.repository_names(), ["alpha", "team/beta"]);
    for repository in ["alpha", "team/beta"] {
        let arn = format!("arn:aws:ecr:us-east-1:{MOTO_ACCOUNT_ID}:repository/{repository}");
        let tags = moto.ecr_call("ListTagsForResource", json!({"resourceArn": arn}));
        let (key, value) = CREATED_BY_TAG;
        assert_eq!(tags["tags"], json!([{"Key": key, "Value": value}]));
        let policy = moto.ecr_call("GetRepositoryPolicy", json!({"repositoryName": repository}));
        assert!(omics_grants(policy["policyText"].as_str().unwrap()));
    }

    // Second run: nothing changed, so nothing is built (gamma still fails).
    let second = builder(options.clone())
        .run(&plan, &Recorder::default())
        .await;
    assert_eq!(
        statuses(&second),
        [
            ImageStatus::Skipped,
            ImageStatus::Skipped,
            ImageStatus::Failed
        ],
        "{second:#?}"
    );
    assert_eq!(builds_run(&calls), 4, "only gamma ran buildah again");
    assert_eq!(second.images[0].digest, first.images[0].digest);
    assert!(second.images[0].message.starts_with("up to date"));

    // One file of alpha changes: alpha alone is rebuilt.
    put_object(
        &s3,
        "bundles",
        "tools/alpha/hello.txt",
        "hello from alpha\n".into(),
    )
    .await;
    put_object(
        &s3,
        "bundles",
        "tools/alpha/run.sh",
        "head -c 16 /app/hello.txt > /app/out.txt\n".into(),
    )
    .await;
    let mut two = plan.clone();
    two.builds.truncate(2);
    let third = builder(options.clone())
        .run(&two, &Recorder::default())
        .await;
    assert_eq!(
        statuses(&third),
        [ImageStatus::Succeeded, ImageStatus::Skipped],
        "{third:#?}"
    );
    assert_eq!(builds_run(&calls), 5);
    assert_ne!(third.images[0].digest, first.images[0].digest);

    // Forced: both are built again even though nothing changed.
    let forced = builder(BuildOptions {
        force: true,
        ..options.clone()
    })
    .run(&two, &Recorder::default())
    .await;
    assert_eq!(
        statuses(&forced),
        [ImageStatus::Succeeded, ImageStatus::Succeeded],
        "{forced:#?}"
    );
    assert_eq!(builds_run(&calls), 7);

    // Nothing was left in the work folder.
    let leftovers = std::fs::read_dir(temp.path().join("work")).unwrap().count();
    assert_eq!(leftovers, 0);
}

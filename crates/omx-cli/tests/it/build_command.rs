//! Runs the built `omx-ecr-helper build` with real buildah (chroot isolation, vfs store in a
//! per-test folder) on local bundles (a folder and a zip) into a real `docker-registry`: JSON
//! report, output map, build logs, invalid entries, a failing build that does not stop the
//! others, a second run that builds nothing, and exit codes.

use std::io::Write as _;
use std::path::Path;

use omx_core::policy::{omics_grants, CREATED_BY_TAG};
use omx_testenv::OmxOutput;
use omx_testenv::{
    base64_encode, moto_ecr_password, Format, ImageFixture, LayerSpec, Moto, Registry,
    MOTO_ACCOUNT_ID,
};
use serde_json::{json, Value};

use crate::util::{binary, moto_command, text};

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn omx(args: &[&str], home: &Path) -> OmxOutput {
    binary()
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("XDG_DATA_HOME")
        .run()
}

/// The binary with each AWS service it uses pointed at moto through its own
/// `AWS_ENDPOINT_URL_<SERVICE>`, and nothing of the host's AWS configuration.
fn omx_on_moto(args: &[&str], moto: &Moto, home: &Path) -> OmxOutput {
    let mut command = moto_command(args, moto, home)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("XDG_DATA_HOME");
    for service in ["S3", "ECR", "STS", "CODEBUILD"] {
        command = command.env(format!("AWS_ENDPOINT_URL_{service}"), moto.endpoint());
    }
    command.run()
}

/// An S3 request on moto, path-style.
fn s3_put(moto: &Moto, path: &str, body: &[u8]) {
    let response = moto.request(
        "PUT",
        path,
        &[("Content-Type", "application/octet-stream")],
        body,
    );
    assert_eq!(response.status, 200, "PUT {path}: {}", response.text());
}

fn statuses(report: &Value) -> Vec<&str> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["status"].as_str().unwrap())
        .collect()
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// No shell is needed: the images are built `FROM scratch` with COPY, ARG and ENV.
fn make_bundles(root: &Path) {
    write(
        &root.join("tools/alpha/Dockerfile"),
        "FROM scratch\nARG VERSION=0\nENV TOOL_VERSION=$VERSION\nCOPY hello.txt /hello.txt\n",
    );
    write(&root.join("tools/alpha/hello.txt"), "hello\n");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(root.join("tools/beta.zip")).unwrap());
    for (name, content) in [
        ("Dockerfile", "FROM scratch\nCOPY . /beta/\n"),
        ("data/values.csv", "a,b\n1,2\n"),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(content.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    write(
        &root.join("tools/broken/Dockerfile"),
        "FROM scratch\nCOPY missing-file.txt /\n",
    );
}

/// A base image in a registry that wants a login, and that login in the Docker config the
/// binary reads: the build must pull the base with it.
fn private_base(home: &Path) -> (Registry, String) {
    let registry = Registry::builder().basic_auth("me", "base-secret").start();
    ImageFixture::single(&LayerSpec::distinct(11, 1, 4_000), Format::DockerV2)
        .push(&registry, "base/img:1");
    let auth = base64_encode(b"me:base-secret");
    write(
        &home.join(".docker/config.json"),
        &json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    );
    let image = format!("{}/base/img:1", registry.host());
    (registry, image)
}

#[test]
fn build_pushes_reports_maps_and_then_skips() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("project");
    make_bundles(&root);
    let (_base_registry, base) = private_base(home.path());
    write(
        &root.join("tools/delta/Dockerfile"),
        &format!("ARG BASE={base}\nFROM $BASE\nCOPY note.txt /note.txt\n"),
    );
    write(&root.join("tools/delta/note.txt"), "on a private base\n");
    let manifest = root.join("container_build_manifest.json");
    write(
        &manifest,
        &json!({"manifest": [
            {"source_uri": "tools/alpha", "target_image": "alpha:omics"},
            {"source_uri": "tools/beta.zip", "target_image": format!("{}/team/beta:1.0", registry.host())},
            {"source_uri": "tools/broken", "target_image": "broken:1"},
            {"source_uri": "tools/alpha", "target_image": "notag"},
            {"source_uri": "tools/delta", "target_image": "delta:1"},
        ]})
        .to_string(),
    );
    let logs = home.path().join("logs");
    let map_file = home.path().join("map.json");
    let host = registry.host();
    let args = |format: &'static str| {
        vec![
            "build".to_string(),
            manifest.display().to_string(),
            "--registry".into(),
            host.clone(),
            "--engine".into(),
            "buildah".into(),
            "--build-arg".into(),
            "VERSION=2.1".into(),
            "--storage-root".into(),
            home.path().join("store").display().to_string(),
            "--work-dir".into(),
            home.path().join("work").display().to_string(),
            "--log-dir".into(),
            logs.display().to_string(),
            "--output-map".into(),
            map_file.display().to_string(),
            "--format".into(),
            format.into(),
        ]
    };
    let run = |format: &'static str| {
        let args = args(format);
        omx(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            home.path(),
        )
    };

    let output = run("json");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let first = output.json();
    assert_eq!(
        statuses(&first),
        ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED"],
        "{first:#}"
    );
    assert_eq!(first["images"][0]["target"], format!("{host}/alpha:omics"));
    assert_eq!(first["images"][0]["input"], "alpha:omics");
    assert_eq!(first["images"][0]["source"], "tools/alpha");
    assert!(first["images"][0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        first["images"][1]["target"],
        format!("{host}/team/beta:1.0")
    );
    let broken_log = logs.join("broken_1.log");
    let failure = first["images"][2]["message"].as_str().unwrap();
    assert!(
        failure.contains("buildah bud failed")
            && failure.contains(&broken_log.display().to_string()),
        "{failure}"
    );
    assert!(std::fs::read_to_string(&broken_log)
        .unwrap()
        .contains("missing-file.txt"));
    assert!(logs.join("alpha_omics.log").is_file());
    let errors = first["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["index"], 3);
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("names no tag"),
        "{errors:?}"
    );
    // Progress went to stderr, as lines (stderr is not a terminal here).
    assert!(
        stderr.contains(&format!("{host}/alpha:omics: buildah bud"))
            && stderr.contains("FAILED   tools/broken"),
        "{stderr}"
    );

    let map: Value = serde_json::from_str(&std::fs::read_to_string(&map_file).unwrap()).unwrap();
    assert_eq!(
        map["containerRegistryMap"]["imageMappings"],
        json!([
            {"sourceImage": "alpha:omics", "destinationImage": format!("{host}/alpha:omics")},
            {"sourceImage": format!("{host}/team/beta:1.0"), "destinationImage": format!("{host}/team/beta:1.0")},
            {"sourceImage": "delta:1", "destinationImage": format!("{host}/delta:1")},
        ])
    );
    assert_eq!(map["images"].as_array().unwrap().len(), 3);

    // Nothing changed: nothing is built, the table says so.
    let output = run("table");
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let skipped: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("skipped"))
        .collect();
    assert_eq!(skipped.len(), 3, "{stdout}");
    assert!(skipped[0].contains("up to date"), "{stdout}");
    assert!(
        stdout.contains("0 succeeded, 3 skipped, 1 failed, 0 planned, 0 native, 1 invalid entry"),
        "{stdout}"
    );
    assert!(
        !text(&output.stderr).contains("alpha:omics: buildah bud"),
        "alpha was not built again"
    );

    // One bundle without a manifest (the stack's CodeBuild command line): unchanged, skipped.
    let alpha = root.join("tools/alpha");
    let single = [
        "build",
        "--source",
        alpha.to_str().unwrap(),
        "--target",
        "alpha:omics",
        "--registry",
        &host,
        "--engine",
        "buildah",
        "--build-arg",
        "VERSION=2.1",
        "--storage-root",
        &home.path().join("store").display().to_string(),
        "--work-dir",
        &home.path().join("work").display().to_string(),
        "--format",
        "json",
    ]
    .map(String::from);
    let output = omx(
        &single.iter().map(String::as_str).collect::<Vec<_>>(),
        home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(statuses(&output.json()), ["SKIPPED"]);

    // Nothing was left in the work folder.
    assert_eq!(
        std::fs::read_dir(home.path().join("work")).unwrap().count(),
        0
    );
}

#[test]
fn unusable_input_exits_2_before_any_work() {
    let home = tempfile::tempdir().unwrap();
    let manifest = home.path().join("m.json");
    write(&manifest, "{\"manifest\": [");
    let output = omx(
        &[
            "build",
            manifest.to_str().unwrap(),
            "--registry",
            "127.0.0.1:1",
        ],
        home.path(),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("not valid JSON"),
        "{}",
        text(&output.stderr)
    );

    write(
        &manifest,
        r#"{"manifest": [{"source_uri": "s3://bucket/x/", "target_image": "x:1"}]}"#,
    );
    for (extra, expected) in [
        (
            vec!["--engine", "codebuild"],
            "--engine codebuild pushes to ECR only",
        ),
        (
            vec!["--dockerfile", "../Dockerfile"],
            "must be a relative path inside the bundle",
        ),
    ] {
        let mut args = vec![
            "build",
            manifest.to_str().unwrap(),
            "--registry",
            "127.0.0.1:1",
        ];
        args.extend(extra);
        let output = omx(&args, home.path());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            text(&output.stderr).contains(expected),
            "{}",
            text(&output.stderr)
        );
    }
}

#[test]
fn build_s3_bundles_into_ecr_then_hand_them_to_codebuild() {
    let (Some(moto), Some(ecr_registry)) = (
        Moto::try_start(),
        Registry::builder()
            .basic_auth("AWS", moto_ecr_password(MOTO_ACCOUNT_ID))
            .try_start(),
    ) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    s3_put(&moto, "/bundles", b"");
    s3_put(
        &moto,
        "/bundles/tools/alpha/Dockerfile",
        b"FROM scratch\nCOPY hello.txt /hello.txt\n",
    );
    s3_put(&moto, "/bundles/tools/alpha/hello.txt", b"hello\n");
    write(
        &home.path().join("tools/local/Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /\n",
    );
    let manifest = home.path().join("container_build_manifest.json");
    write(
        &manifest,
        &json!({"manifest": [
            {"source_uri": "s3://bundles/tools/alpha/", "target_image": "team/alpha:omics"},
            {"source_uri": "tools/local", "target_image": "local:1"},
        ]})
        .to_string(),
    );
    let store = home.path().join("store");
    let work = home.path().join("work");
    let logs = home.path().join("logs");
    let common = [
        "build",
        manifest.to_str().unwrap(),
        "--registry",
        "ecr://123456789012/us-east-1",
        "--ecr-registry-endpoint",
        &ecr_registry.host(),
        "--format",
        "json",
        "--work-dir",
        work.to_str().unwrap(),
        "--log-dir",
        logs.to_str().unwrap(),
    ];

    // buildah builds both; the S3 bundle comes through path-style requests to moto, the pushes
    // through the ECR token.
    let mut args = common.to_vec();
    args.extend([
        "--engine",
        "buildah",
        "--storage-root",
        store.to_str().unwrap(),
    ]);
    let output = omx_on_moto(&args, &moto, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let built = output.json();
    assert_eq!(statuses(&built), ["SUCCEEDED", "SUCCEEDED"], "{built:#}");
    assert_eq!(
        built["images"][0]["target"],
        format!("{ECR_HOST}/team/alpha:omics")
    );
    for repository in ["local", "team/alpha"] {
        let arn = format!("arn:aws:ecr:us-east-1:{MOTO_ACCOUNT_ID}:repository/{repository}");
        let tags = moto.ecr_call("ListTagsForResource", json!({"resourceArn": arn}));
        let (key, value) = CREATED_BY_TAG;
        assert_eq!(tags["tags"], json!([{"Key": key, "Value": value}]));
        let policy = moto.ecr_call("GetRepositoryPolicy", json!({"repositoryName": repository}));
        assert!(omics_grants(policy["policyText"].as_str().unwrap()));
    }

    // CodeBuild, forced: the local bundle is refused (CodeBuild reads S3); moto "runs" the S3
    // one, and the target then holds an image built from exactly these sources (the one buildah
    // pushed), so the build is verified.
    moto.aws_json_call(
        "codebuild",
        "CodeBuild_20161006.CreateProject",
        json!({
            "name": "omx-container-build",
            "source": {"type": "S3", "location": "bundles/placeholder/"},
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL", "privilegedMode": true},
            "serviceRole": "arn:aws:iam::123456789012:role/omx-container-build"
        }),
    );
    let mut args = common.to_vec();
    args.extend([
        "--engine",
        "codebuild",
        "--force",
        "--codebuild-poll-interval",
        "1",
    ]);
    let output = omx_on_moto(&args, &moto, home.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let handed = output.json();
    assert_eq!(statuses(&handed), ["SUCCEEDED"], "{handed:#}");
    let message = handed["images"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("built by CodeBuild build omx-container-build:")
            && message.contains("logs: https://console.aws.amazon.com/cloudwatch/"),
        "{message}"
    );
    assert_eq!(handed["images"][0]["digest"], built["images"][0]["digest"]);
    let error = &handed["errors"][0];
    assert_eq!(error["index"], 1);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("tools/local is not in S3: CodeBuild builds bundles from S3"),
        "{error}"
    );
    assert!(
        stderr.contains("started; logs: https://console.aws.amazon.com/cloudwatch/"),
        "{stderr}"
    );
}

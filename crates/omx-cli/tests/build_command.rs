//! Runs the built `omx-ecr-helper build` with real buildah (chroot isolation, vfs store in a
//! per-test folder) on local bundles (a folder and a zip) into a real `docker-registry`: JSON
//! report, output map, build logs, invalid entries, a failing build that does not stop the
//! others, a second run that builds nothing, and exit codes.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use omx_testenv::Registry;
use serde_json::{json, Value};

fn omx(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omx-ecr-helper"))
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn report(output: &Output) -> Value {
    serde_json::from_str(&text(&output.stdout))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&output.stdout), text(&output.stderr)))
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

#[test]
fn build_pushes_reports_maps_and_then_skips() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("project");
    make_bundles(&root);
    let manifest = root.join("container_build_manifest.json");
    write(
        &manifest,
        &json!({"manifest": [
            {"source_uri": "tools/alpha", "target_image": "alpha:omics"},
            {"source_uri": "tools/beta.zip", "target_image": format!("{}/team/beta:1.0", registry.host())},
            {"source_uri": "tools/broken", "target_image": "broken:1"},
            {"source_uri": "tools/alpha", "target_image": "notag"},
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
    let first = report(&output);
    assert_eq!(
        statuses(&first),
        ["SUCCEEDED", "SUCCEEDED", "FAILED"],
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
        ])
    );
    assert_eq!(map["images"].as_array().unwrap().len(), 2);

    // Nothing changed: nothing is built, the table says so.
    let output = run("table");
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let skipped: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("skipped"))
        .collect();
    assert_eq!(skipped.len(), 2, "{stdout}");
    assert!(skipped[0].contains("up to date"), "{stdout}");
    assert!(
        stdout.contains("0 succeeded, 2 skipped, 1 failed, 0 planned, 1 invalid entry"),
        "{stdout}"
    );
    assert!(
        !text(&output.stderr).contains("alpha:omics: buildah bud"),
        "alpha was not built again"
    );

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

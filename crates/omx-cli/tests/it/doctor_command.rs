//! `doctor` against moto (STS) and the ECR stand-in (ECR control plane): every line passes on a
//! ready machine, a missing pull-through-cache rule fails with `setup` as its fix, an upstream
//! that does not answer fails naming it, and a machine without AWS configuration gets one
//! readable line per missing piece.

use omx_testenv::OmxOutput;
use omx_testenv::{refusing_port, EcrStandIn, Format, ImageFixture, LayerSpec, Moto, Registry};
use serde_json::{json, Value};

fn checks(output: &OmxOutput) -> Vec<(String, String, String)> {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&output.stderr));
    });
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["check"].as_str().unwrap().to_string(),
                line["status"].as_str().unwrap().to_string(),
                line["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of<'a>(checks: &'a [(String, String, String)], check: &str) -> (&'a str, &'a str) {
    let line = checks
        .iter()
        .find(|line| line.0 == check)
        .unwrap_or_else(|| panic!("no {check} in {checks:?}"));
    (&line.1, &line.2)
}

#[test]
fn doctor_passes_on_a_ready_machine_and_names_what_is_missing() {
    let (Some(moto), Some(upstream), Some(source)) = (
        Moto::try_start(),
        Registry::try_start(),
        Registry::try_start(),
    ) else {
        return;
    };
    let ecr = EcrStandIn::builder()
        .upstream(&upstream.host(), &upstream.host())
        .start();
    let home = tempfile::tempdir().unwrap();
    ImageFixture::single(&LayerSpec::distinct(41, 1, 1_000), Format::Oci)
        .push(&source, "team/tool:1");
    let namespaces = home.path().join("namespaces.json");
    std::fs::write(
        &namespaces,
        json!({"rules": [{"hosts": [upstream.host()], "namespace": "lab",
                          "method": "pull-through-cache"}]})
        .to_string(),
    )
    .unwrap();
    let unreachable = format!("127.0.0.1:{}", refusing_port());
    let manifest = home.path().join("manifest.json");
    std::fs::write(
        &manifest,
        json!({"manifest": [
            format!("{}/team/tool:1", source.host()),
            format!("{}/lab/cached:1", upstream.host()),
            format!("{unreachable}/gone/tool:1"),
        ]})
        .to_string(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        crate::util::moto_command(args, &moto, home.path())
            .env("AWS_ENDPOINT_URL_ECR", ecr.endpoint())
            .run()
    };
    let doctor = [
        "doctor",
        manifest.to_str().unwrap(),
        "--namespaces",
        namespaces.to_str().unwrap(),
        "--format",
        "json",
    ];

    let output = run(&doctor);
    assert_eq!(output.status.code(), Some(1));
    let first = checks(&output);
    assert_eq!(status_of(&first, "AWS region"), ("pass", "us-east-1"));
    assert_eq!(status_of(&first, "AWS credentials").0, "pass");
    assert_eq!(status_of(&first, "ECR access").0, "pass");
    let (status, detail) = status_of(&first, "pull-through cache lab");
    assert_eq!(status, "fail");
    assert!(detail.contains("omx-ecr-helper setup"), "{detail}");
    assert_eq!(
        status_of(&first, &format!("upstream {}", source.host())).0,
        "pass"
    );
    let (status, detail) = status_of(&first, &format!("upstream {unreachable}"));
    assert_eq!(status, "fail");
    assert!(detail.contains(&unreachable), "{detail}");
    assert_eq!(status_of(&first, "docker config").0, "pass");
    for (_, _, detail) in &first {
        assert!(
            !detail.contains("{ source:") && !detail.contains("Error {"),
            "{detail}"
        );
    }

    let setup = run(&["setup", "--namespaces", namespaces.to_str().unwrap()]);
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let second = checks(&run(&doctor));
    let (status, detail) = status_of(&second, "pull-through cache lab");
    assert_eq!(status, "pass", "{detail}");
}

#[test]
fn doctor_on_a_machine_without_aws_says_what_to_set_up() {
    let home = tempfile::tempdir().unwrap();
    let output = crate::util::fresh_machine(&["doctor"], home.path()).run();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    let region = stdout
        .lines()
        .find(|line| line.starts_with("AWS region"))
        .unwrap();
    assert!(
        region.contains("FAILED") && region.contains("--region"),
        "{stdout}"
    );
    assert!(stdout.contains("AWS credentials"), "{stdout}");
}

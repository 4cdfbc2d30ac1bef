//! Runs the built `omx-ecr-helper submit` against moto's Step Functions in real execution mode.
//! The state machines here are stand-ins with the deployed stack's name and output shapes (a Pass
//! with the Map's result, or the Fail state's error and cause): moto runs no Lambda or CodeBuild,
//! and the real definitions are exercised by the infra tests.

mod common;

use common::omx;
use omx_testenv::Moto;
use serde_json::{json, Value};

fn create_state_machine(moto: &Moto, name: &str, definition: Value) {
    let body = json!({
        "name": name,
        "definition": definition.to_string(),
        "roleArn": "arn:aws:iam::123456789012:role/omx-test",
    });
    let response = moto.request(
        "POST",
        "/",
        &[
            ("X-Amz-Target", "AWSStepFunctions.CreateStateMachine"),
            ("Content-Type", "application/x-amz-json-1.0"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0",
            ),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
}

fn manifest(dir: &std::path::Path, entries: Value) -> String {
    let path = dir.join("manifest.json");
    std::fs::write(&path, json!({ "manifest": entries }).to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn submit_follows_a_succeeded_execution_and_prints_every_image() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.enable_stepfunctions_execution();
    let result = json!({"images": [
        {"image": "ubuntu:20.04", "status": "SUCCEEDED",
         "target": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dockerhub/ubuntu:20.04",
         "digest": format!("sha256:{}", "a".repeat(64)), "message": "copied", "too_large": false}],
        "total": 1});
    create_state_machine(
        &moto,
        "omx-container-puller",
        json!({"StartAt": "Report Results", "States": {
            "Report Results": {"Type": "Pass", "Result": result, "End": true}}}),
    );
    let home = tempfile::tempdir().unwrap();
    let manifest = manifest(home.path(), json!(["ubuntu:20.04", "Not Valid"]));

    let output = omx(
        &[
            "submit",
            &manifest,
            "--poll-seconds",
            "1",
            "--format",
            "json",
        ],
        &moto,
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The invalid entry makes the run exit 1; the valid one ran and succeeded.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("started arn:aws:states:"), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["images"][0]["status"], "SUCCEEDED");
    assert_eq!(report["images"][0]["input"], "ubuntu:20.04");
    assert_eq!(report["errors"][0]["index"], 1);
}

#[test]
fn a_failed_execution_reports_its_failed_images_and_exits_1() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.enable_stepfunctions_execution();
    let failed = json!([{"image": "quay.io/x/y:1", "status": "FAILED", "target": null,
        "digest": null, "message": "source image quay.io/x/y:1 does not exist", "too_large": false}]);
    create_state_machine(
        &moto,
        "omx-container-puller",
        json!({"StartAt": "Some Images Failed", "States": {
            "Some Images Failed": {"Type": "Fail", "Error": "OmxImagesFailed",
                "Cause": format!("1 of 2 image(s) failed: {failed}")}}}),
    );
    let home = tempfile::tempdir().unwrap();
    let manifest = manifest(home.path(), json!(["quay.io/x/y:1", "ubuntu:20.04"]));

    let output = omx(
        &["submit", &manifest, "--poll-seconds", "1", "--quiet"],
        &moto,
        home.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("FAILED") && table.contains("does not exist"),
        "{table}"
    );
}

#[test]
fn submitting_to_a_stack_that_is_not_deployed_says_so() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let manifest = manifest(home.path(), json!(["ubuntu:20.04"]));
    let output = omx(&["submit", &manifest], &moto, home.path());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("omx-container-puller not found") && stderr.contains("deploy"),
        "{stderr}"
    );
}

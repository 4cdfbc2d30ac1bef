//! Runs the built `omx-ecr-helper submit` against moto's Step Functions in real execution mode.
//! The state machines here are stand-ins with the deployed stack's name and output shapes (a Pass
//! with the Map's result, or the Fail state's error and cause): moto runs no Lambda or CodeBuild,
//! and the real definitions are exercised by the infra tests.

use omx_testenv::Moto;
use serde_json::{json, Value};

use crate::util::on_moto as omx;

fn create_state_machine(moto: &Moto, name: &str, definition: Value) {
    let body = json!({
        "name": name,
        "definition": definition.to_string(),
        "roleArn": "arn:aws:iam::123456789012:role/omx-test",
    });
    moto.aws_json_call("states", "AWSStepFunctions.CreateStateMachine", body);
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

/// A stand-in with the deployed machine's shape: a Map over the manifest whose items succeed,
/// except `failing`, then "Check Results" with every result, then (when any failed) a Fail
/// state whose cause lists only the failed items.
fn mapping_machine(failing: &[&str]) -> Value {
    let result = |status: &str, message: &str| {
        json!({"Type": "Pass", "End": true, "Parameters": {
            "image.$": "$", "status": status, "target": null, "digest": null,
            "message": message, "too_large": false}})
    };
    let mut choices: Vec<Value> = failing
        .iter()
        .map(|image| json!({"Variable": "$", "StringEquals": image, "Next": "Failed Item"}))
        .collect();
    if choices.is_empty() {
        choices.push(json!({"Variable": "$", "StringEquals": "", "Next": "Failed Item"}));
    }
    json!({"StartAt": "Manifest Items", "States": {
        "Manifest Items": {"Type": "Map", "ItemsPath": "$.manifest", "ResultPath": "$.images",
            "Iterator": {"StartAt": "Item", "States": {
                "Item": {"Type": "Choice", "Choices": choices, "Default": "Copied Item"},
                "Copied Item": result("SUCCEEDED", "copied"),
                "Failed Item": result("FAILED", "source image does not exist")}},
            "Next": "Check Results"},
        "Check Results": {"Type": "Pass",
            "Parameters": {"images.$": "$.images", "total.$": "States.ArrayLength($.images)"},
            "Next": "Any Image Failed?"},
        "Any Image Failed?": {"Type": "Choice", "Default": "Report Results", "Choices": [
            {"Variable": "$.images[0].status", "IsPresent": true, "Next": if failing.is_empty() { "Report Results" } else { "Some Images Failed" }}]},
        "Report Results": {"Type": "Pass", "End": true},
        "Some Images Failed": {"Type": "Fail", "Error": "OmxImagesFailed",
            "Cause": format!("{} of N image(s) failed: {}", failing.len(),
                Value::Array(failing.iter().map(|image| json!({"image": image,
                    "status": "FAILED", "target": null, "digest": null,
                    "message": "source image does not exist", "too_large": false})).collect()))}}})
}

#[test]
fn a_failed_execution_reports_every_image_from_its_history_and_exits_1() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.enable_stepfunctions_execution();
    create_state_machine(
        &moto,
        "omx-container-puller",
        mapping_machine(&["quay.io/x/y:1"]),
    );
    let home = tempfile::tempdir().unwrap();
    let manifest = manifest(home.path(), json!(["quay.io/x/y:1", "ubuntu:20.04"]));

    let output = omx(
        &[
            "submit",
            &manifest,
            "--poll-seconds",
            "1",
            "--quiet",
            "--format",
            "json",
        ],
        &moto,
        home.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let statuses: Vec<(&str, &str, &str)> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            (
                image["input"].as_str().unwrap(),
                image["status"].as_str().unwrap(),
                image["message"].as_str().unwrap(),
            )
        })
        .collect();
    // The image that succeeded is known from the execution's history, not only the failed one
    // its cause lists.
    assert_eq!(
        statuses,
        [
            ("quay.io/x/y:1", "FAILED", "source image does not exist"),
            ("ubuntu:20.04", "SUCCEEDED", "copied")
        ]
    );
}

#[test]
fn a_large_manifest_runs_as_several_executions_reported_in_manifest_order() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    moto.enable_stepfunctions_execution();
    create_state_machine(&moto, "omx-container-puller", mapping_machine(&[]));
    let home = tempfile::tempdir().unwrap();
    let images: Vec<String> = (1..=5).map(|n| format!("ubuntu:2{n}.04")).collect();
    let manifest = manifest(home.path(), json!(images));

    let output = omx(
        &[
            "submit",
            &manifest,
            "--batch-size",
            "2",
            "--poll-seconds",
            "1",
            "--format",
            "json",
        ],
        &moto,
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let started: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("started arn:aws:states:"))
        .collect();
    assert_eq!(started.len(), 3, "{stderr}");
    assert!(started[2].ends_with("(1 entries)"), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let reported: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["input"].as_str().unwrap())
        .collect();
    assert_eq!(reported, images);
    assert!(report["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|image| image["status"] == "SUCCEEDED"));
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

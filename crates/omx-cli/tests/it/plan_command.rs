//! Runs the built `omx-ecr-helper plan` on the shipped examples and on bad input.

use std::path::{Path, PathBuf};

use omx_testenv::OmxOutput;
use serde_json::{json, Value};

use crate::util::binary;

fn omx(args: &[&str]) -> OmxOutput {
    binary().args(args).run()
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn the_readme_example_plans_cleanly() {
    let manifest = example("container_image_manifest.json");
    let namespaces = example("namespaces.json");
    let output = omx(&[
        "plan",
        manifest.to_str().unwrap(),
        "--registry",
        "ecr://123456789012/us-east-1",
        "--namespaces",
        namespaces.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let targets: Vec<(&str, &str)> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["target_repository"].as_str().unwrap(),
                i["method"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            ("dockerhub/ubuntu", "copy"),
            ("quay/biocontainers/bcftools", "pull-through-cache"),
            ("quay/biocontainers/samtools", "pull-through-cache"),
            ("ecr-public/lts/ubuntu", "pull-through-cache"),
            ("dockerhub/biocontainers/fastqc", "copy"),
        ]
    );
    assert_eq!(plan["errors"], json!([]));
}

#[test]
fn invalid_entries_exit_1_and_unusable_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    std::fs::write(
        &manifest,
        r#"{"manifest": ["ubuntu:20.04", "Ubuntu:1", 7]}"#,
    )
    .unwrap();
    let output = omx(&["plan", manifest.to_str().unwrap(), "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["images"].as_array().unwrap().len(), 1);
    let indexes: Vec<u64> = plan["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 2]);

    let table = omx(&["plan", manifest.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("manifest[1] \"Ubuntu:1\": invalid reference format"),
        "{text}"
    );

    std::fs::write(&manifest, "{\"manifest\": \"ubuntu\"}").unwrap();
    let output = omx(&["plan", manifest.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let missing = omx(&["plan", dir.path().join("nope.json").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn a_single_image_plans_without_a_manifest_file() {
    let output = omx(&[
        "plan",
        "--single",
        "quay/biocontainers/bcftools:1.16--hfe4b78e_1",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        plan["images"][0]["source"],
        "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1"
    );
    assert_eq!(
        plan["images"][0]["target_repository"],
        "quay/biocontainers/bcftools"
    );

    let both = omx(&["plan", "m.json", "--single", "ubuntu:20.04"]);
    assert_eq!(both.status.code(), Some(2));
}

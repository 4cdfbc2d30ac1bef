//! Runs the built `omx-ecr-helper scan` on the fixture workflows of omx-workflow.

use std::path::{Path, PathBuf};

use omx_testenv::OmxOutput;

use crate::util::{binary, text};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../omx-workflow/tests/fixtures")
}

fn omx(args: &[&str]) -> OmxOutput {
    binary().args(args).current_dir(fixtures()).run()
}

#[test]
fn writes_the_pull_manifest_and_exits_1_with_warnings_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("container_image_manifest.json");
    let output = omx(&["scan", "nextflow", "--output", manifest.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(text(&output.stdout), "");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"manifest": [
            "community.wave.seqera.io/library/fastqc:0.12.1--af7a5314d5015c29",
            "ghcr.io/example/index-tools:2.1",
            "nvcr.io/nvidia/clara/clara-parabricks:4.2.0-1",
            "quay.io/biocontainers/biocontainers:v1.2.0_cv1",
            "quay.io/biocontainers/foo:1.0--0",
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
            "quay.io/staphb/bwa:0.7.17"
        ]})
    );
    assert!(
        stderr.contains("warning: nextflow/modules/local/custom/main.nf:4: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: nextflow/conf/modules.config:7: "),
        "{stderr}"
    );
}

#[test]
fn wdl_inputs_resolve_everything_and_exit_0() {
    let output = omx(&[
        "scan",
        "wdl",
        "--inputs",
        "wdl/inputs.json",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["manifest"].as_array().unwrap().len(), 6);
    assert_eq!(json["warnings"], serde_json::json!([]));
    assert_eq!(
        json["images"][0],
        serde_json::json!({"image": "biocontainers/bwa:v0.7.17_cv1", "locations": ["wdl/inputs.json:3"]})
    );
}

#[test]
fn table_names_where_each_image_is_written() {
    let output = omx(&["scan", "cwl", "--format", "table"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        stdout.contains("debian:stable-slim                               cwl/count-lines.json:8"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warnings in cwl/pipeline.cwl:\n  16: "),
        "{stdout}"
    );
    assert!(stdout.ends_with("3 images found, 1 warning\n"), "{stdout}");
}

#[test]
fn unusable_paths_and_inputs_exit_2() {
    let missing = omx(&["scan", "no/such/workflow"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no/such/workflow does not exist"));
    let bad_inputs = omx(&["scan", "wdl", "--inputs", "cwl/sort.cwl"]);
    assert_eq!(bad_inputs.status.code(), Some(2));
    assert!(text(&bad_inputs.stderr).contains("the inputs file is not valid JSON"));
}

#[test]
fn parameter_defaults_are_listed_with_a_note_and_warnings_grouped_by_file() {
    let output = omx(&["scan", "nextflow-params", "--format", "table"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        stdout.contains(
            "note: nextflow-params/main.nf:6: the image is the default of `params.my_image` \
             (nextflow-params/nextflow.config:3); a run can give another with --my_image\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nwarnings in nextflow-params/main.nf:\n  18: "),
        "{stdout}"
    );
    assert!(stdout.contains("\n  22: "), "{stdout}");
    assert!(stdout.ends_with("7 images found, 2 warnings\n"), "{stdout}");
}

#[test]
fn snakemake_images_are_skipped_and_json_carries_the_notes() {
    let output = omx(&["scan", "snakemake", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["manifest"], serde_json::json!([]));
    assert_eq!(json["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(json["notes"][0]["location"]["file"], "snakemake/Snakefile");
    let manifest = omx(&["scan", "snakemake"]);
    let stderr = text(&manifest.stderr);
    assert!(
        stderr.contains(
            "note: 2 container value(s) skipped, for Singularity only or in a Snakemake workflow"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: 2 note(s) on the workflow"),
        "{stderr}"
    );
}

//! Shared by the `reliability_*` tests: the built binary run in an isolated home, its reports,
//! and direct looks at a registry (no proxy, no product code in between).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use omx_testenv::{http_request, Registry};
use serde_json::Value;

/// The four manifest media types, so distribution 2.8 answers for OCI content too.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The binary with nothing of the host's configuration: `HOME` and `DOCKER_CONFIG` in `home`,
/// AWS pointed at a closed port (no test here may reach AWS), `RUST_LOG` unset.
pub fn omx_command(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omx-ecr-helper"));
    command
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG");
    command
}

/// Runs the binary to completion.
pub fn omx(home: &Path, args: &[&str]) -> Output {
    omx_command(home)
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout and stderr together, for searching.
pub fn all_output(output: &Output) -> String {
    format!("{}\n{}", text(&output.stdout), text(&output.stderr))
}

/// The exit code, after checking the process ended by itself and did not panic.
pub fn exit_code(output: &Output) -> i32 {
    let code = output.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal: {:?}\n{}",
            output.status,
            all_output(output)
        )
    });
    assert_ne!(code, 101, "the binary panicked:\n{}", all_output(output));
    assert!(
        !text(&output.stderr).contains("panicked at"),
        "the binary panicked:\n{}",
        all_output(output)
    );
    code
}

/// The JSON report on stdout.
pub fn json_report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

/// `(input, status)` of every image of a pull report.
pub fn statuses(report: &Value) -> Vec<(String, String)> {
    report["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|image| {
            (
                image["input"].as_str().expect("input").to_string(),
                image["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// Writes `{"manifest": entries}` to `dir/name`.
pub fn write_manifest(dir: &Path, name: &str, entries: &[String]) -> PathBuf {
    let path = dir.join(name);
    let body = serde_json::json!({ "manifest": entries }).to_string();
    std::fs::write(&path, body).expect("write the manifest");
    path
}

/// Status and `Docker-Content-Digest` of a manifest, asked of the registry itself.
pub fn head_manifest(registry: &Registry, repository: &str, name: &str) -> (u16, Option<String>) {
    let response = http_request(
        &registry.host(),
        "HEAD",
        &format!("/v2/{repository}/manifests/{name}"),
        &[("Accept", MANIFEST_ACCEPT)],
        &[],
    )
    .expect("the registry answers");
    let digest = response.header("docker-content-digest").map(str::to_string);
    (response.status, digest)
}

/// The digest a registry serves for `repository:tag`, or `None` when it has no such tag.
pub fn served_digest(registry: &Registry, repository: &str, tag: &str) -> Option<String> {
    match head_manifest(registry, repository, tag) {
        (200, digest) => Some(digest.expect("distribution sends Docker-Content-Digest")),
        (404, _) => None,
        (status, _) => panic!("HEAD {repository}:{tag} answered {status}"),
    }
}

/// Requests that write (uploads, mounts, manifest pushes) in a registry's access log.
pub fn writes_logged(registry: &Registry) -> usize {
    registry
        .log()
        .lines()
        .filter(|line| {
            line.contains("\"PUT /v2/")
                || line.contains("\"POST /v2/")
                || line.contains("\"PATCH /v2/")
        })
        .count()
}

/// The target repository `pull` derives for a loopback source registry's `path`.
pub fn target_repository(source_host: &str, path: &str) -> String {
    format!("{}/{path}", source_host.replace(':', "-"))
}

/// Whether the registry itself holds `digest` in `repository`.
pub fn holds_blob(registry: &Registry, repository: &str, digest: &str) -> bool {
    let response = http_request(
        &registry.host(),
        "HEAD",
        &format!("/v2/{repository}/blobs/{digest}"),
        &[],
        &[],
    )
    .expect("the registry answers");
    match response.status {
        200 => true,
        404 => false,
        status => panic!("HEAD blob {digest} in {repository} answered {status}"),
    }
}

//! What the CLI tests share: the binary run against moto, on a fresh machine, against local
//! registries only, or isolated (AWS on a closed port); the reports it prints; and direct looks
//! at a registry (re-exported from `omx_testenv`, no product code in between).

use std::path::{Path, PathBuf};

use omx_testenv::{EcrStandIn, Moto, OmxCommand, OmxOutput};
use serde_json::Value;

pub use omx_testenv::registry_state::{holds_blob, served_digest, writes_logged};
pub use omx_testenv::text;

/// The built `omx-ecr-helper`, hermetic ([`OmxCommand::new`] drops the host's AWS, Docker and
/// `OMX_*` variables); every launcher below starts from it.
pub fn binary() -> OmxCommand {
    OmxCommand::new(env!("CARGO_BIN_EXE_omx-ecr-helper"))
}

/// [`on_moto`] as a command, for tests that add to its environment.
pub fn moto_command(args: &[&str], moto: &Moto, home: &Path) -> OmxCommand {
    binary()
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// The binary with AWS pointed at moto and nothing of the host's configuration.
pub fn on_moto(args: &[&str], moto: &Moto, home: &Path) -> OmxOutput {
    moto_command(args, moto, home).run()
}

/// The binary with STS (and Secrets Manager) on moto and ECR, control plane and registry, on
/// the stand-in: commands that talk to a registry get `--ecr-registry-endpoint`.
pub fn on_ecr(args: &[&str], moto: &Moto, ecr: &EcrStandIn, home: &Path) -> OmxOutput {
    let mut all: Vec<&str> = args.to_vec();
    let endpoint = ecr.host();
    if matches!(args[0], "pull" | "verify" | "copy" | "build") {
        all.extend(["--ecr-registry-endpoint", &endpoint]);
    }
    moto_command(&all, moto, home)
        .env("AWS_ENDPOINT_URL_ECR", ecr.endpoint())
        .run()
}

/// The binary on a machine with nothing of AWS set up: no variables but PATH, a fresh HOME, and
/// instance metadata on a refusing loopback port (the SDK probes it outside EC2 too).
pub fn fresh_machine(args: &[&str], home: &Path) -> OmxCommand {
    binary()
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}/", omx_testenv::refusing_port()),
        )
}

/// The binary against local registries only: the host's Docker credentials and AWS set-up kept
/// out (a fresh HOME and Docker config).
pub fn local(args: &[&str], home: &Path) -> OmxOutput {
    binary()
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .run()
}

/// The binary with nothing of the host's configuration: `HOME` and `DOCKER_CONFIG` in `home`,
/// AWS pointed at a closed port (no test here may reach AWS).
pub fn isolated(home: &Path) -> OmxCommand {
    binary()
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// [`isolated`] run to completion.
pub fn run_isolated(home: &Path, args: &[&str]) -> OmxOutput {
    isolated(home).args(args).run()
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

/// The target repository `pull` derives for a loopback source registry's `path`.
pub fn target_repository(source_host: &str, path: &str) -> String {
    format!("{}/{path}", source_host.replace(':', "-"))
}

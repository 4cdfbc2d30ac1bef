//! What the CLI tests share: the binary run against moto, on a fresh machine, or against local
//! registries only.

use std::path::Path;
use std::process::{Command, Output};

use omx_testenv::{EcrStandIn, Moto};

/// The binary with AWS pointed at moto and nothing of the host's configuration.
#[allow(dead_code)] // not every test binary that includes this module runs it this way
pub fn omx(args: &[&str], moto: &Moto, home: &Path) -> Output {
    command(args, moto, home).output().expect("the binary runs")
}

/// [`omx`] as a command, for tests that add to its environment.
#[allow(dead_code)] // not every test binary that includes this module adds to it
pub fn command(args: &[&str], moto: &Moto, home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omx-ecr-helper"));
    command
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
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG");
    command
}

/// The binary with STS (and Secrets Manager) on moto and ECR, control plane and registry, on
/// the stand-in: commands that talk to a registry get `--ecr-registry-endpoint`.
#[allow(dead_code)] // not every test binary that includes this module runs it this way
pub fn on_ecr(args: &[&str], moto: &Moto, ecr: &EcrStandIn, home: &Path) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    let endpoint = ecr.host();
    if matches!(args[0], "pull" | "verify" | "copy" | "build") {
        all.extend(["--ecr-registry-endpoint", &endpoint]);
    }
    command(&all, moto, home)
        .env("AWS_ENDPOINT_URL_ECR", ecr.endpoint())
        .output()
        .expect("the binary runs")
}

/// The binary on a machine with nothing of AWS set up: no variables but PATH, a fresh HOME, and
/// instance metadata on a refusing loopback port (the SDK probes it outside EC2 too).
#[allow(dead_code)] // not every test binary that includes this module runs it this way
pub fn fresh_machine(args: &[&str], home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omx-ecr-helper"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}/", omx_testenv::refusing_port()),
        );
    command
}

/// The binary against local registries only: the host's Docker credentials and AWS set-up kept
/// out (a fresh HOME and Docker config).
#[allow(dead_code)] // not every test binary that includes this module runs it this way
pub fn local(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omx-ecr-helper"))
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// Output bytes as (lossy) text.
#[allow(dead_code)] // not every test binary that includes this module prints output
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

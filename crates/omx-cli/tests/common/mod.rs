//! What the CLI tests that talk to moto share.

use std::path::Path;
use std::process::{Command, Output};

use omx_testenv::Moto;

/// The binary with AWS pointed at moto and nothing of the host's configuration.
pub fn omx(args: &[&str], moto: &Moto, home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omx-ecr-helper"))
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
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

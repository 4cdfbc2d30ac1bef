//! Runs the built `omx-ecr-helper setup` on arguments it must refuse before any AWS call. What
//! it does with AWS is tested on recorded ECR exchanges in omx-puller (moto has no
//! pull-through-cache rules or creation templates).

use omx_testenv::OmxOutput;

use crate::util::binary;

const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf";

/// The binary with AWS pointed at a port nothing listens on, so a call would fail loudly.
fn omx(args: &[&str]) -> OmxOutput {
    let home = tempfile::tempdir().unwrap();
    binary()
        .args(args)
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("aws-credentials"),
        )
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .run()
}

#[test]
fn a_secret_ecr_cannot_read_is_refused_with_the_naming_rule() {
    let output = omx(&[
        "setup",
        "--dry-run",
        "--dockerhub-secret",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:docker-hub-AbCdEf",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = output.stderr();
    assert!(
        message.contains("--dockerhub-secret")
            && message.contains("\"docker-hub-AbCdEf\"")
            && message.contains("whose name starts with ecr-pullthroughcache/"),
        "{message}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn malformed_arns_and_azure_options_are_refused() {
    for (args, expected) in [
        (
            vec![
                "setup",
                "--dry-run",
                "--ghcr-secret",
                "ecr-pullthroughcache/ghcr",
            ],
            "not a Secrets Manager secret ARN (too few ':'-separated fields)",
        ),
        (
            vec![
                "setup",
                "--dry-run",
                "--gitlab-secret",
                "arn:aws:s3:us-east-1:1:secret:ecr-pullthroughcache/x",
            ],
            "not a Secrets Manager secret ARN (it must name a secretsmanager secret)",
        ),
        (
            vec!["setup", "--dry-run", "--azure-secret", SECRET],
            "--azure-registry",
        ),
        (
            vec![
                "setup",
                "--dry-run",
                "--azure-secret",
                SECRET,
                "--azure-registry",
                "lab.example.org",
            ],
            "expected NAME.azurecr.io",
        ),
    ] {
        let output = omx(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = output.stderr();
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

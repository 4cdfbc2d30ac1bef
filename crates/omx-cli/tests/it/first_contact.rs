//! A new user's first runs, on a machine with no AWS set up and then with credentials that do
//! not work: each ends in one line saying what is wrong and how to fix it, with no SDK warnings
//! about instance metadata and no `Debug` dumps. Instance metadata is a loopback port that
//! refuses, which reproduces the SDK's probing outside EC2 without leaving the machine.

use omx_testenv::OmxOutput;

use crate::util::fresh_machine;

const MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/container_image_manifest.json"
);

/// Stderr of a run that failed with exit code 1, checked to be a single readable line.
fn one_line_error(output: OmxOutput) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no SDK warnings: {stderr}");
    for dump in ["{ source:", "Error {", "WARN", "IMDS"] {
        assert!(!stderr.contains(dump), "{dump:?} in {stderr}");
    }
    lines[0].to_string()
}

#[test]
fn no_region_is_one_line_that_says_so_once() {
    let home = tempfile::tempdir().unwrap();
    let output = fresh_machine(&["pull", MANIFEST], home.path()).run();
    let line = one_line_error(output);
    assert_eq!(
        line,
        "error: cannot use ECR as the target: no AWS region is configured: pass --region, set \
         AWS_REGION, or give the profile a region (`aws configure set region us-east-1`)"
    );
}

#[test]
fn no_credentials_is_one_line_naming_the_sources_and_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let output = fresh_machine(&["pull", MANIFEST], home.path())
        .env("AWS_REGION", "us-east-1")
        .run();
    let line = one_line_error(output);
    assert_eq!(
        line,
        "error: cannot use ECR as the target: no AWS credentials found (tried environment \
         variables, the shared config and credentials files, a web identity token, ECS container \
         credentials, EC2 instance metadata): run `aws configure`, set AWS_PROFILE to a \
         configured profile, or run `aws sso login`"
    );
}

#[test]
fn the_whole_chain_is_there_at_verbose() {
    let home = tempfile::tempdir().unwrap();
    let output = fresh_machine(&["-v", "pull", MANIFEST], home.path())
        .env("AWS_REGION", "us-east-1")
        .run();
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    let failed = stderr
        .lines()
        .find(|line| line.contains("AWS call failed"))
        .unwrap_or_else(|| panic!("no debug line of the failure: {stderr}"));
    assert!(
        failed.contains("operation=\"GetCallerIdentity\""),
        "{failed}"
    );
    assert!(failed.contains("no credentials found in chain"), "{failed}");
    // The SDK's own probing is visible at -v too.
    assert!(stderr.contains("IMDS"), "{stderr}");
}

#[test]
fn an_expired_sso_session_says_to_log_in_again() {
    let home = tempfile::tempdir().unwrap();
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(aws.join("sso/cache")).unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile work]\nsso_session = omx\nsso_account_id = 123456789012\n\
         sso_role_name = Developer\nregion = us-east-1\n\n\
         [sso-session omx]\nsso_start_url = https://example.awsapps.com/start\n\
         sso_region = us-east-1\n",
    )
    .unwrap();
    // The cached token of session `omx` (its file is named by the SHA-1 of the session name),
    // expired and without what a refresh needs.
    std::fs::write(
        aws.join("sso/cache/7f95b77a679dbefd73006689be9764375e80f657.json"),
        r#"{"accessToken": "expired", "expiresAt": "2020-01-01T00:00:00Z", "region": "us-east-1", "startUrl": "https://example.awsapps.com/start"}"#,
    )
    .unwrap();
    let output = fresh_machine(&["pull", MANIFEST], home.path())
        .env("AWS_PROFILE", "work")
        .run();
    let line = one_line_error(output);
    assert_eq!(
        line,
        "error: cannot use ECR as the target: the AWS SSO session has expired: run `aws sso \
         login` (with --profile NAME for a named profile) and run again"
    );
}

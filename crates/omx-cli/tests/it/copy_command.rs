//! Runs the built `omx-ecr-helper copy` between two real registries.

use omx_testenv::OmxOutput;
use omx_testenv::{Format, ImageFixture, LayerSpec, Registry};

use crate::util::binary;
use crate::util::text;

fn omx(args: &[&str], docker_config: &std::path::Path) -> OmxOutput {
    binary()
        .args(args)
        // Keep the host's Docker credentials out of the test.
        .env("DOCKER_CONFIG", docker_config)
        .run()
}

#[test]
fn copy_prints_the_destination_digest_and_logs_lines_off_a_terminal() {
    let source = Registry::start();
    let target = Registry::start();
    let fixture = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(5, 2, 100_000),
        Format::Oci,
    );
    let pushed = fixture.push(&source, "bio/tool:1.0");
    let docker_config = tempfile::tempdir().unwrap();

    let src = format!("{}/bio/tool:1.0", source.host());
    let dst = format!("{}/quay/bio/tool", target.host());
    let output = omx(&["copy", &src, &dst], docker_config.path());
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(text(&output.stdout), format!("{pushed}\n"));
    assert!(
        stderr.contains(&format!("copying {src} -> {dst}:1.0")),
        "{stderr}"
    );
    assert!(
        stderr.contains("copied") && stderr.contains("6 blobs copied"),
        "{stderr}"
    );

    // The same copy again, quietly: nothing to transfer, the same digest, no chatter.
    let output = omx(
        &["copy", "--quiet", &src, &format!("{dst}:1.0")],
        docker_config.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{pushed}\n"));
    assert_eq!(text(&output.stderr), "");

    let output = omx(
        &[
            "copy",
            "--quiet",
            "--platform",
            "linux/arm64",
            &src,
            &format!("{dst}:arm"),
        ],
        docker_config.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("{}\n", fixture.images()[1].manifest.digest)
    );
    assert!(text(&output.stderr).contains("warning: copied only linux/arm64/v8"));
}

#[test]
fn copy_failures_exit_non_zero_with_the_error_chain() {
    let source = Registry::start();
    let target = Registry::builder()
        .basic_auth("u", "right-password")
        .start();
    let docker_config = tempfile::tempdir().unwrap();

    let missing = format!("{}/no/such:tag", source.host());
    let output = omx(
        &[
            "copy",
            "--quiet",
            &missing,
            &format!("{}/x/y:1", target.host()),
        ],
        docker_config.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains(&missing) && stderr.contains("not found"),
        "{stderr}"
    );
    assert_eq!(text(&output.stdout), "");

    let fixture = ImageFixture::single(&LayerSpec::distinct(6, 1, 10_000), Format::DockerV2);
    fixture.push(&source, "ok/img:1");
    let output = omx(
        &[
            "copy",
            "--quiet",
            "--dest-creds",
            "u:wrong-password",
            &format!("{}/ok/img:1", source.host()),
            &format!("{}/ok/img:1", target.host()),
        ],
        docker_config.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("rejected") && !stderr.contains("wrong-password"),
        "{stderr}"
    );

    let output = omx(&["copy", "Not A Reference!", "x/y"], docker_config.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

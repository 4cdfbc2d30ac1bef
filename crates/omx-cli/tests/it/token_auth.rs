//! `omx-ecr-helper copy` into and out of a real `docker-registry` that uses Docker token auth.

use omx_testenv::{Format, ImageFixture, LayerSpec, Moto, Registry};

use crate::util::on_moto as omx;
use crate::util::text;

const USER: &str = "cli-pusher";
const PASSWORD: &str = "cli-token-pass";

#[test]
fn copy_with_dest_creds_into_a_token_auth_registry() {
    let moto = Moto::start();
    let home = tempfile::tempdir().unwrap();
    let plain = Registry::start();
    let target = Registry::builder().token_auth(USER, PASSWORD).start();
    let tokens = target.token_server().expect("token auth");
    let fixture = ImageFixture::single(&LayerSpec::distinct(41, 6, 30_000), Format::Oci);
    let pushed = fixture.push(&plain, "bio/tool:1");
    let creds = format!("{USER}:{PASSWORD}");
    let into = format!("{}/bio/tool:1", target.host());

    let output = omx(
        &[
            "copy",
            "--quiet",
            "--dest-creds",
            &creds,
            &format!("{}/bio/tool:1", plain.host()),
            &into,
        ],
        &moto,
        home.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{pushed}\n"));
    let requests = tokens.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.user.as_deref() == Some(USER) && r.status == 200),
        "{requests:?}"
    );
    // One token to look for the tag, one to push the 7 blobs and the manifest.
    assert_eq!(
        (
            tokens.requests_for("repository:bio/tool:pull"),
            tokens.requests_for("repository:bio/tool:pull,push")
        ),
        (1, 1),
        "{requests:?}"
    );

    // What the registry holds reads back, with --src-creds, as the same digest.
    let output = omx(
        &[
            "copy",
            "--quiet",
            "--src-creds",
            &creds,
            &into,
            &format!("{}/back/tool:1", plain.host()),
        ],
        &moto,
        home.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{pushed}\n"));

    let output = omx(
        &[
            "copy",
            "--quiet",
            "--dest-creds",
            &format!("{USER}:not-{PASSWORD}"),
            &format!("{}/bio/tool:1", plain.host()),
            &format!("{}/bio/other:1", target.host()),
        ],
        &moto,
        home.path(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&target.host()) && stderr.contains("rejected"),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("not-{PASSWORD}")), "{stderr}");
}

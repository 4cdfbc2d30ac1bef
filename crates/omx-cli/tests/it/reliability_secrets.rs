//! Secrets never reach the output, and TLS is verified by default.
//!
//! Basic-auth registries with distinctive passwords; the binary runs `copy` and `pull` with
//! `--src-creds`/`--dest-creds`, with a Docker `config.json`, with wrong passwords, with
//! `-vv` (trace logging of every crate) and `--format json`; all of stdout and stderr is
//! searched for each password and for the base64 `user:password` a Basic header carries.

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use omx_core::Digest;
use omx_testenv::OmxOutput;
use omx_testenv::{base64_encode, read_request, Format, ImageFixture, LayerSpec, Registry};
use serde_json::json;

use crate::util::*;

const SOURCE_USER: &str = "omx-src";
const SOURCE_PASSWORD: &str = "S3cr3t-pa55-XYZ";
const TARGET_USER: &str = "omx-dst";
const TARGET_PASSWORD: &str = "D3st-pa55-QRS";
const WRONG_PASSWORD: &str = "Wr0ng-pa55-JKL";

/// Every form in which a credential could leak.
fn forbidden() -> Vec<String> {
    let mut forms = Vec::new();
    for (user, password) in [
        (SOURCE_USER, SOURCE_PASSWORD),
        (TARGET_USER, TARGET_PASSWORD),
        (SOURCE_USER, WRONG_PASSWORD),
        (TARGET_USER, WRONG_PASSWORD),
    ] {
        forms.push(password.to_string());
        forms.push(base64_encode(format!("{user}:{password}").as_bytes()));
    }
    forms.push(base64_encode(SOURCE_PASSWORD.as_bytes()));
    forms.push(base64_encode(TARGET_PASSWORD.as_bytes()));
    forms
}

fn assert_no_secret(case: &str, output: &OmxOutput) {
    let all = output.all();
    for secret in forbidden() {
        assert!(
            !all.contains(&secret),
            "{case}: the output contains {secret:?}:\n{all}"
        );
    }
}

/// A Docker config with `auths` for both registries.
fn write_docker_config(home: &Path, entries: &[(&Registry, &str, &str)]) {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(registry, user, password)| {
            (
                registry.host(),
                json!({ "auth": base64_encode(format!("{user}:{password}").as_bytes()) }),
            )
        })
        .collect();
    let dir = home.join(".docker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        json!({ "auths": auths }).to_string(),
    )
    .unwrap();
}

struct Setup {
    source: Registry,
    target: Registry,
    digest: String,
}

fn setup() -> Option<Setup> {
    let source = Registry::builder()
        .basic_auth(SOURCE_USER, SOURCE_PASSWORD)
        .try_start()?;
    let target = Registry::builder()
        .basic_auth(TARGET_USER, TARGET_PASSWORD)
        .start();
    let digest = ImageFixture::single(&LayerSpec::distinct(61, 2, 30_000), Format::Oci)
        .push(&source, "team/secret:1");
    Some(Setup {
        source,
        target,
        digest,
    })
}

fn src_creds() -> String {
    format!("{SOURCE_USER}:{SOURCE_PASSWORD}")
}

fn dest_creds() -> String {
    format!("{TARGET_USER}:{TARGET_PASSWORD}")
}

#[test]
fn copy_with_credentials_on_the_command_line_or_in_docker_config_shows_none() {
    let Some(setup) = setup() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let source_image = format!("{}/team/secret:1", setup.source.host());

    // Command-line credentials, trace logging.
    let output = run_isolated(
        home.path(),
        &[
            "copy",
            "-vv",
            &source_image,
            &format!("{}/flags/secret:1", setup.target.host()),
            "--src-creds",
            &src_creds(),
            "--dest-creds",
            &dest_creds(),
        ],
    );
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(text(&output.stdout).trim(), setup.digest);
    assert!(
        text(&output.stderr).contains("TRACE") || text(&output.stderr).contains("DEBUG"),
        "-vv logs: {}",
        text(&output.stderr)
    );
    assert_no_secret("copy --src-creds --dest-creds -vv", &output);

    // The same through a Docker config.json.
    write_docker_config(
        home.path(),
        &[
            (&setup.source, SOURCE_USER, SOURCE_PASSWORD),
            (&setup.target, TARGET_USER, TARGET_PASSWORD),
        ],
    );
    let output = run_isolated(
        home.path(),
        &[
            "copy",
            "-vv",
            &source_image,
            &format!("{}/config/secret:1", setup.target.host()),
        ],
    );
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_no_secret("copy with config.json -vv", &output);
    assert_eq!(
        served_digest(&setup.target, "config/secret", "1"),
        Some(setup.digest.clone())
    );
}

#[test]
fn wrong_credentials_fail_clearly_without_showing_any() {
    let Some(setup) = setup() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let source_image = format!("{}/team/secret:1", setup.source.host());
    let target_image = format!("{}/wrong/secret:1", setup.target.host());

    let output = run_isolated(
        home.path(),
        &[
            "copy",
            "-vv",
            &source_image,
            &target_image,
            "--src-creds",
            &format!("{SOURCE_USER}:{WRONG_PASSWORD}"),
            "--dest-creds",
            &dest_creds(),
        ],
    );
    assert_eq!(output.code(), 1, "{}", output.all());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("team/secret:1") && stderr.contains(SOURCE_USER),
        "the error names the image and the user whose credentials were refused: {stderr}"
    );
    assert_no_secret("copy with a wrong source password", &output);

    // A wrong password in the Docker config, and a wrong --dest-creds.
    write_docker_config(home.path(), &[(&setup.source, SOURCE_USER, WRONG_PASSWORD)]);
    let output = run_isolated(
        home.path(),
        &[
            "copy",
            "-vv",
            &source_image,
            &target_image,
            "--dest-creds",
            &format!("{TARGET_USER}:{WRONG_PASSWORD}"),
        ],
    );
    assert_eq!(output.code(), 1, "{}", output.all());
    assert_no_secret(
        "copy with wrong passwords in config.json and --dest-creds",
        &output,
    );
    assert_eq!(writes_logged(&setup.target), 0, "{}", setup.target.log());
}

#[test]
fn pull_with_credentials_and_json_report_shows_none() {
    let Some(setup) = setup() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    write_docker_config(
        home.path(),
        &[(&setup.source, SOURCE_USER, SOURCE_PASSWORD)],
    );
    let input = format!("{}/team/secret:1", setup.source.host());
    let manifest = write_manifest(home.path(), "manifest.json", std::slice::from_ref(&input));
    let pull = |dest_creds: &str| {
        run_isolated(
            home.path(),
            &[
                "pull",
                "-vv",
                manifest.to_str().unwrap(),
                "--registry",
                &setup.target.host(),
                "--dest-creds",
                dest_creds,
                "--format",
                "json",
            ],
        )
    };

    let output = pull(&format!("{TARGET_USER}:{WRONG_PASSWORD}"));
    assert_eq!(output.code(), 1, "{}", output.all());
    assert_eq!(
        statuses(&output.json()),
        [(input.clone(), "FAILED".to_string())]
    );
    assert_no_secret("pull with a wrong --dest-creds", &output);

    let output = pull(&dest_creds());
    assert_eq!(output.code(), 0, "{}", output.all());
    let report = output.json();
    assert_eq!(statuses(&report), [(input, "SUCCEEDED".to_string())]);
    assert_eq!(report["images"][0]["digest"], setup.digest.as_str());
    assert_no_secret("pull with --dest-creds and config.json", &output);
}

fn reference_with_credentials(setup: &Setup) -> String {
    format!(
        "{SOURCE_USER}:{SOURCE_PASSWORD}@{}/team/secret:1",
        setup.source.host()
    )
}

#[test]
fn copy_of_a_reference_with_credentials_does_not_repeat_them() {
    let Some(setup) = setup() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let output = run_isolated(
        home.path(),
        &[
            "copy",
            &reference_with_credentials(&setup),
            &format!("{}/x/secret:1", setup.target.host()),
        ],
    );
    assert_eq!(output.code(), 2, "{}", output.all());
    assert!(
        text(&output.stderr).contains("credentials"),
        "{}",
        text(&output.stderr)
    );
    assert_no_secret("copy of user:password@host/...", &output);
}

#[test]
fn plan_and_pull_of_a_reference_with_credentials_do_not_repeat_them() {
    let Some(setup) = setup() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let with_userinfo = reference_with_credentials(&setup);
    let manifest = write_manifest(
        home.path(),
        "manifest.json",
        std::slice::from_ref(&with_userinfo),
    );
    for args in [
        vec!["plan", manifest.to_str().unwrap()],
        vec!["plan", manifest.to_str().unwrap(), "--format", "json"],
        vec!["plan", "--single", &with_userinfo],
    ] {
        let output = run_isolated(home.path(), &args);
        assert_eq!(output.code(), 1, "{args:?}: {}", output.all());
        assert!(
            output.all().contains("credentials"),
            "{args:?}: {}",
            output.all()
        );
        assert_no_secret(&format!("{args:?}"), &output);
    }
    let target_host = setup.target.host();
    for format in ["json", "table"] {
        let output = run_isolated(
            home.path(),
            &[
                "pull",
                "-vv",
                manifest.to_str().unwrap(),
                "--registry",
                &target_host,
                "--format",
                format,
            ],
        );
        assert_eq!(output.code(), 1, "{}", output.all());
        assert!(output.all().contains("credentials"), "{}", output.all());
        assert_no_secret("pull of user:password@host/...", &output);
    }
    assert_eq!(writes_logged(&setup.target), 0, "{}", setup.target.log());
}

#[test]
fn tls_is_verified_unless_the_ca_is_given() {
    let Some(registry) = Registry::builder().tls().try_start() else {
        return;
    };
    let target = Registry::start();
    let home = tempfile::tempdir().unwrap();
    let digest = ImageFixture::single(&LayerSpec::distinct(62, 1, 20_000), Format::Oci)
        .push(&registry, "team/tls:1");
    let source_image = format!("{}/team/tls:1", registry.host());
    let target_image = format!("{}/team/tls:1", target.host());

    let output = run_isolated(home.path(), &["copy", &source_image, &target_image]);
    assert_eq!(output.code(), 1, "{}", output.all());
    let stderr = text(&output.stderr).to_lowercase();
    assert!(
        stderr.contains("certificate") && stderr.contains("team/tls:1"),
        "{stderr}"
    );
    assert_eq!(writes_logged(&target), 0, "{}", target.log());

    let ca = registry
        .ca_cert_path()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let output = run_isolated(
        home.path(),
        &["copy", &source_image, &target_image, "--ca-cert", &ca],
    );
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(text(&output.stdout).trim(), digest);
}

/// The token and signature of a presigned blob URL (ECR and Docker Hub redirect blob downloads
/// to such URLs on S3 or a CDN): short-lived credentials in a query string.
const SIGNED_URL_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN";
static SIGNED_URL_HITS: AtomicUsize = AtomicUsize::new(0);
const SIGNED_URL_SIGNATURE: &str =
    "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

/// A one-image registry whose layer download redirects to a presigned URL that always fails,
/// before or during the body, as a flaky CDN would.
fn start_redirecting_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer = vec![7u8; 50_000];
    let config_digest = Digest::sha256_of(&config).to_string();
    let layer_digest = Digest::sha256_of(&layer).to_string();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let signed = format!(
        "http://{host}/signed/layer?X-Amz-Security-Token={SIGNED_URL_TOKEN}&X-Amz-Signature={SIGNED_URL_SIGNATURE}"
    );
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, layer, manifest) = (config.clone(), layer.clone(), manifest.clone());
            let (config_digest, layer_digest, signed) =
                (config_digest.clone(), layer_digest.clone(), signed.clone());
            thread::spawn(move || -> std::io::Result<()> {
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut out = stream;
                loop {
                    let Some((method, path)) = read_request(&mut reader)? else {
                        return Ok(());
                    };
                    let respond =
                        |out: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
                            write!(
                                out,
                                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
                                body.len()
                            )?;
                            if method != "HEAD" {
                                out.write_all(body)?;
                            }
                            out.flush()
                        };
                    if path == "/v2/" {
                        respond(&mut out, "200 OK", "", b"{}")?;
                    } else if path.ends_with("/manifests/1") {
                        let headers = format!(
                            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\
                             Docker-Content-Digest: {}\r\n",
                            Digest::sha256_of(&manifest)
                        );
                        respond(&mut out, "200 OK", &headers, &manifest)?;
                    } else if path.ends_with(&format!("/blobs/{config_digest}")) {
                        respond(&mut out, "200 OK", "", &config)?;
                    } else if path.ends_with(&format!("/blobs/{layer_digest}")) {
                        let headers = format!("Location: {signed}\r\n");
                        respond(&mut out, "307 Temporary Redirect", &headers, b"")?;
                    } else if path.starts_with("/signed/layer") {
                        // Every other time the CDN hangs up before answering; otherwise it
                        // sends the layer's length, half of it, and hangs up.
                        if SIGNED_URL_HITS.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                            write!(
                                out,
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                layer.len()
                            )?;
                            out.write_all(&layer[..layer.len() / 2])?;
                            out.flush()?;
                        }
                        return Ok(());
                    } else {
                        respond(&mut out, "404 Not Found", "", b"")?;
                    }
                }
            });
        }
    });
    host
}

#[test]
fn a_failed_download_does_not_show_the_presigned_blob_url() {
    let Some(target) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let source = start_redirecting_registry();
    let output = run_isolated(
        home.path(),
        &[
            "copy",
            "-vv",
            &format!("{source}/team/redirect:1"),
            &format!("{}/team/redirect:1", target.host()),
        ],
    );
    assert_eq!(output.code(), 1, "{}", output.all());
    let all = output.all();
    assert!(all.contains("team/redirect:1"), "{all}");
    assert!(
        SIGNED_URL_HITS.load(Ordering::SeqCst) >= 2,
        "the download followed the redirect, both failures happened"
    );
    for secret in [SIGNED_URL_TOKEN, SIGNED_URL_SIGNATURE] {
        assert!(!all.contains(secret), "the output shows {secret}:\n{all}");
    }
}

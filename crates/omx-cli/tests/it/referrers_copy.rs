//! `pull --with-referrers` and `copy --with-referrers` against real docker-registry 2.8
//! instances. distribution 2.8 has no referrers API (it answers 404), so the source holds an
//! OCI 1.1 artifact (a manifest with `subject`) listed in the referrers tag schema's fallback
//! index `sha256-<hex>`, as an OCI 1.1 client pushes it to such a registry, plus a cosign-style
//! legacy signature under the tag `sha256-<hex>.sig`; the target is a registry of the same kind,
//! so it must receive the fallback index too.

use omx_core::Digest;
use omx_testenv::{http_request, upload_blob, Format, ImageFixture, LayerSpec, Registry};
use serde_json::{json, Value};

use crate::util::{local as omx, text};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Pushes a manifest document under `reference` and returns its bytes and digest.
fn push_manifest(
    host: &str,
    repository: &str,
    reference: &str,
    document: &Value,
) -> (Vec<u8>, String) {
    let bytes = serde_json::to_vec(document).unwrap();
    let media_type = document["mediaType"].as_str().unwrap();
    let put = http_request(
        host,
        "PUT",
        &format!("/v2/{repository}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        &bytes,
    )
    .unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
    let digest = Digest::sha256_of(&bytes).to_string();
    (bytes, digest)
}

/// The manifest `repository:reference` as served, or `None` for 404.
fn manifest_bytes(host: &str, repository: &str, reference: &str) -> Option<Vec<u8>> {
    let response = http_request(
        host,
        "GET",
        &format!("/v2/{repository}/manifests/{reference}"),
        &[("Accept", ACCEPT)],
        b"",
    )
    .unwrap();
    match response.status {
        200 => Some(response.body),
        404 => None,
        other => panic!("GET {repository}:{reference}: {other} {}", response.text()),
    }
}

fn blob_bytes(host: &str, repository: &str, digest: &str) -> Option<Vec<u8>> {
    let response = http_request(
        host,
        "GET",
        &format!("/v2/{repository}/blobs/{digest}"),
        &[],
        b"",
    )
    .unwrap();
    (response.status == 200).then_some(response.body)
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// An OCI 1.1 artifact (empty config, one layer) whose subject is `subject`, pushed by digest.
fn push_artifact(
    host: &str,
    repository: &str,
    subject: &Value,
    content: &[u8],
) -> (Vec<u8>, String, Value) {
    let empty = upload_blob(host, repository, b"{}");
    let layer = upload_blob(host, repository, content);
    let artifact_type = "application/spdx+json";
    let document = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor("application/vnd.oci.empty.v1+json", &empty, 2),
        "layers": [descriptor(artifact_type, &layer, content.len())],
        "subject": subject,
    });
    let bytes = serde_json::to_vec(&document).unwrap();
    let digest = Digest::sha256_of(&bytes).to_string();
    let (bytes, digest) = push_manifest(host, repository, &digest, &document);
    let mut listed = descriptor(OCI_MANIFEST, &digest, bytes.len());
    listed["artifactType"] = json!(artifact_type);
    (bytes, digest, listed)
}

fn listed_digests(index: &[u8]) -> Vec<String> {
    let index: Value = serde_json::from_slice(index).unwrap();
    let mut digests: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    digests.sort();
    digests
}

#[test]
fn with_referrers_the_target_holds_the_signature_tag_and_the_artifact_byte_for_byte() {
    let (Some(source), Some(target), Some(bare)) = (
        Registry::try_start(),
        Registry::try_start(),
        Registry::try_start(),
    ) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let src = source.host();
    let image = ImageFixture::single(&LayerSpec::distinct(61, 1, 20_000), Format::Oci);
    let subject_digest = image.push(&source, "team/signed:1");
    assert_eq!(subject_digest, image.digest());
    let subject = descriptor(OCI_MANIFEST, image.digest(), image.root_bytes().len());
    let fallback = format!("sha256-{}", image.digest().trim_start_matches("sha256:"));

    // OCI 1.1 artifact, listed in the fallback index (distribution 2.8 has no referrers API).
    let (artifact, artifact_digest, listed) = push_artifact(
        &src,
        "team/signed",
        &subject,
        br#"{"spdxVersion":"SPDX-2.3"}"#,
    );
    let fallback_index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed]});
    push_manifest(&src, "team/signed", &fallback, &fallback_index);
    // cosign's legacy signature: a manifest under the tag sha256-<hex>.sig.
    let config_bytes = br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config = upload_blob(&src, "team/signed", config_bytes);
    let payload = br#"{"critical":{"type":"cosign container image signature"}}"#;
    let payload_digest = upload_blob(&src, "team/signed", payload);
    let mut signature_layer = descriptor(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        &payload_digest,
        payload.len(),
    );
    signature_layer["annotations"] = json!({"dev.cosignproject.cosign/signature": "MEUCIQ"});
    let sig_tag = format!("{fallback}.sig");
    let (signature, _) = push_manifest(
        &src,
        "team/signed",
        &sig_tag,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config, config_bytes.len()),
            "layers": [signature_layer],
        }),
    );

    let dst = target.host();
    let repository = format!("127.0.0.1-{}/team/signed", source.port());
    // The target already lists a referrer of its own in its fallback index: it must stay.
    let (_, theirs, their_listing) =
        push_artifact(&dst, &repository, &subject, br#"{"theirs":true}"#);
    push_manifest(
        &dst,
        &repository,
        &fallback,
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [their_listing]}),
    );

    let manifest = home.path().join("m.json");
    std::fs::write(
        &manifest,
        json!({"manifest": [format!("{src}/team/signed:1")]}).to_string(),
    )
    .unwrap();
    let manifest = manifest.to_str().unwrap();
    let output = omx(
        &[
            "pull",
            manifest,
            "--registry",
            &dst,
            "--with-referrers",
            "--quiet",
            "--format",
            "json",
        ],
        home.path(),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let message = report["images"][0]["message"].as_str().unwrap();
    assert!(message.contains("referrers: 2"), "{message}");

    assert_eq!(
        manifest_bytes(&dst, &repository, &artifact_digest).as_deref(),
        Some(artifact.as_slice())
    );
    let layer = json!(serde_json::from_slice::<Value>(&artifact).unwrap()["layers"][0]["digest"]);
    assert_eq!(
        blob_bytes(&dst, &repository, layer.as_str().unwrap()).as_deref(),
        Some(&br#"{"spdxVersion":"SPDX-2.3"}"#[..])
    );
    assert_eq!(
        manifest_bytes(&dst, &repository, &sig_tag).as_deref(),
        Some(signature.as_slice())
    );
    assert_eq!(
        blob_bytes(&dst, &repository, &payload_digest).as_deref(),
        Some(&payload[..])
    );
    let merged = manifest_bytes(&dst, &repository, &fallback).expect("the fallback index");
    let mut expected = vec![artifact_digest.clone(), theirs];
    expected.sort();
    assert_eq!(listed_digests(&merged), expected);

    // Without the flag: the image only.
    let output = omx(
        &[
            "pull",
            manifest,
            "--registry",
            &bare.host(),
            "--quiet",
            "--format",
            "json",
        ],
        home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let bare_host = bare.host();
    assert!(manifest_bytes(&bare_host, &repository, "1").is_some());
    for reference in [artifact_digest.as_str(), &sig_tag, &fallback] {
        assert_eq!(
            manifest_bytes(&bare_host, &repository, reference),
            None,
            "{reference}"
        );
    }

    // copy takes the flag too and says how many it brought.
    let output = omx(
        &[
            "copy",
            "--with-referrers",
            &format!("{src}/team/signed:1"),
            &format!("{bare_host}/copied/signed:1"),
        ],
        home.path(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("referrers: 2"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        manifest_bytes(&bare_host, "copied/signed", &sig_tag).as_deref(),
        Some(signature.as_slice())
    );
    let copied_index = manifest_bytes(&bare_host, "copied/signed", &fallback).unwrap();
    assert_eq!(listed_digests(&copied_index), vec![artifact_digest]);
}

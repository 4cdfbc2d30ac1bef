//! Image fixtures push with skopeo, and the registry serves exactly the bytes and digests we wrote.

use std::process::Command;

use omx_testenv::{docker, oci, Format, ImageFixture, LayerSpec, OmxCommand, Registry};
use sha2::{Digest as _, Sha256};

/// `skopeo inspect --raw` of `repo_and_tag` in `registry`, with its credentials and CA.
fn inspect_raw(registry: &Registry, repo_and_tag: &str) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command
        .args(["inspect", "--raw"])
        .arg(format!("--tls-verify={}", registry.is_tls()));
    if let Some(cert_dir) = registry.cert_dir() {
        command.arg("--cert-dir").arg(cert_dir);
    }
    if let Some((user, password)) = registry.credentials() {
        command.arg("--creds").arg(format!("{user}:{password}"));
    }
    let output = command
        .arg(format!("docker://{}/{repo_and_tag}", registry.host()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn oci_image_push_preserves_the_computed_digest() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let fixture = ImageFixture::single(
        &[LayerSpec::new(1, 200_000), LayerSpec::new(2, 3)],
        Format::Oci,
    );
    let image = &fixture.images()[0];
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.manifest.media_type, oci::MANIFEST);
    assert!(image
        .layers
        .iter()
        .all(|layer| layer.media_type == oci::LAYER_GZIP));
    for blob in image.layers.iter().chain([&image.config]) {
        let bytes = std::fs::read(fixture.blob_path(&blob.digest)).unwrap();
        assert_eq!(sha256_digest(&bytes), blob.digest);
        assert_eq!(bytes.len() as u64, blob.size);
    }

    let pushed = fixture.push(&registry, "library/fixture:v1");
    assert_eq!(pushed, fixture.digest());
    let raw = inspect_raw(&registry, "library/fixture:v1");
    assert_eq!(sha256_digest(&raw), fixture.digest());
    assert_eq!(raw, fixture.root_bytes());
}

#[test]
fn docker_manifest_list_push_with_basic_auth_keeps_docker_media_types() {
    let Some(registry) = Registry::builder()
        .basic_auth("omx", "fixture-pass")
        .try_start()
    else {
        return;
    };
    let platforms = [("linux", "amd64"), ("linux", "arm64/v8")];
    let fixture = ImageFixture::index(&platforms, &[LayerSpec::new(10, 50_000)], Format::DockerV2);
    assert_eq!(fixture.root().media_type, docker::MANIFEST_LIST);
    assert_eq!(fixture.images().len(), 2);
    let [amd64, arm64] = fixture.images() else {
        unreachable!()
    };
    assert_ne!(
        amd64.layers[0].digest, arm64.layers[0].digest,
        "platforms must not share layers"
    );

    let pushed = fixture.push(&registry, "multi/arch:latest");
    let raw = inspect_raw(&registry, "multi/arch:latest");
    assert_eq!(sha256_digest(&raw), pushed);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], docker::MANIFEST_LIST);
    assert_eq!(index["manifests"][1]["platform"]["variant"], "v8");

    let child = inspect_raw(&registry, &format!("multi/arch@{}", arm64.manifest.digest));
    let child: serde_json::Value = serde_json::from_slice(&child).unwrap();
    assert_eq!(child["mediaType"], docker::MANIFEST);
    assert_eq!(child["layers"][0]["mediaType"], docker::LAYER_GZIP);
}

#[test]
fn push_to_tls_registry_verifies_against_its_ca() {
    let Some(registry) = Registry::builder().tls().try_start() else {
        return;
    };
    let fixture = ImageFixture::single(&[LayerSpec::new(5, 1000)], Format::Oci);
    let pushed = fixture.push(&registry, "secure/image:1");
    assert_eq!(
        sha256_digest(&inspect_raw(&registry, "secure/image:1")),
        pushed
    );
}

#[test]
fn same_layer_specs_give_the_same_blobs_and_digests() {
    let base = LayerSpec::new(99, 10_000);
    let first = ImageFixture::single(&[base, LayerSpec::new(1, 10)], Format::Oci);
    let second = ImageFixture::single(&[base, LayerSpec::new(2, 10)], Format::Oci);
    let again = ImageFixture::single(&[base, LayerSpec::new(1, 10)], Format::Oci);
    assert_eq!(first.images()[0].layers[0], second.images()[0].layers[0]);
    assert_ne!(first.images()[0].layers[1], second.images()[0].layers[1]);
    assert_eq!(first.digest(), again.digest());
    assert_ne!(first.digest(), second.digest());

    let distinct = LayerSpec::distinct(7, 3, 100);
    assert_eq!(distinct, LayerSpec::distinct(7, 3, 100));
    assert_ne!(distinct[0].seed, distinct[1].seed);
}

#[test]
fn omx_fixture_cli_pushes_a_synthetic_image() {
    let Some(registry) = Registry::builder()
        .basic_auth("omx", "cli-pass")
        .try_start()
    else {
        return;
    };
    let output = OmxCommand::new(env!("CARGO_BIN_EXE_omx-fixture"))
        .args([
            "push",
            "--registry",
            &registry.host(),
            "--repo",
            "bench/synthetic",
            "--tag",
            "t1",
        ])
        .args(["--layers", "3", "--layer-size", "64KiB", "--seed", "4"])
        .args(["--shared-base-seed", "1", "--shared-base-size", "100KiB"])
        .args(["--creds", "omx:cli-pass", "--insecure"])
        .run();
    assert!(output.status.success(), "omx-fixture: {}", output.stderr());
    let digest = output.stdout().trim().to_string();
    let raw = inspect_raw(&registry, "bench/synthetic:t1");
    assert_eq!(sha256_digest(&raw), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "shared base plus three layers");
    let base = ImageFixture::single(&[LayerSpec::new(1, 100 << 10)], Format::Oci);
    assert_eq!(
        layers[0]["digest"],
        base.images()[0].layers[0].digest.as_str()
    );
}

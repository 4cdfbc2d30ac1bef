//! Copies between real `docker-registry` servers, checked with an independent client (skopeo)
//! and, where the wire matters, through a recording fault proxy.

mod common;

use std::sync::Arc;

use common::*;
use omx_registry::{
    CopyError, CopyOptions, CopyWarning, Credential, ManifestRef, NoProgress, Platform,
    RegistryError, Repository, StaticCredentials,
};
use omx_testenv::{Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry};

fn layers(seed: u64) -> Vec<LayerSpec> {
    LayerSpec::distinct(seed, 3, 150_000)
}

fn blob_count(fixture: &ImageFixture) -> usize {
    fixture.images().iter().map(|i| i.layers.len() + 1).sum()
}

fn blob_bytes(fixture: &ImageFixture) -> u64 {
    fixture
        .images()
        .iter()
        .map(|i| i.config.size + i.layers.iter().map(|l| l.size).sum::<u64>())
        .sum()
}

#[tokio::test]
async fn copies_single_platform_images_in_both_formats_with_identical_digests() {
    let source = Registry::start();
    let target = Registry::start();
    for (format, media_type, seed) in [
        (
            Format::DockerV2,
            "application/vnd.docker.distribution.manifest.v2+json",
            1,
        ),
        (Format::Oci, "application/vnd.oci.image.manifest.v1+json", 2),
    ] {
        let fixture = ImageFixture::single(&layers(seed), format);
        let pushed = fixture.push(&source, "src/app:v1");
        let repo = format!("dst/{seed}");
        let sink = RecordingSink::default();
        let report = default_engine()
            .copy(
                &reference(&format!("{}/src/app:v1", source.host())),
                &reference(&format!("{}/{repo}:v1", target.host())),
                &sink,
            )
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {}", chain(&e)));

        assert_eq!(report.digest, digest(&pushed), "{format:?}");
        assert_eq!(report.source_digest, report.digest);
        assert_eq!(report.media_type, media_type);
        assert_eq!(report.blobs_copied, blob_count(&fixture));
        assert_eq!(report.bytes_copied, blob_bytes(&fixture));
        assert_eq!((report.blobs_skipped, report.blobs_mounted), (0, 0));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(
            skopeo_raw_digest(&target, &target.host(), &format!("{repo}:v1")),
            report.digest
        );
        assert_eq!(sink.count("blob-finished"), blob_count(&fixture));
        assert_eq!(sink.count("done"), 1);

        let head = default_engine()
            .client()
            .head_manifest(&report.target)
            .await
            .unwrap()
            .expect("target tag exists");
        assert_eq!(head.digest, report.digest);
        assert_eq!(head.media_type, media_type);
    }
}

#[tokio::test]
async fn copies_a_whole_multi_platform_index_in_both_formats() {
    let source = Registry::start();
    let target = Registry::start();
    for (format, seed) in [(Format::Oci, 10), (Format::DockerV2, 11)] {
        let fixture = ImageFixture::index(
            &[("linux", "amd64"), ("linux", "arm64/v8")],
            &layers(seed),
            format,
        );
        let pushed = fixture.push(&source, "multi/app:2.0");
        let repo = format!("mirror/{seed}");
        let report = default_engine()
            .copy(
                &reference(&format!("{}/multi/app:2.0", source.host())),
                &reference(&format!("{}/{repo}:2.0", target.host())),
                &NoProgress,
            )
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)));

        assert_eq!(report.digest, digest(&pushed));
        assert_eq!(report.blobs_copied, blob_count(&fixture));
        assert_eq!(report.manifests_pushed, 3);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(
            skopeo_raw_digest(&target, &target.host(), &format!("{repo}:2.0")),
            report.digest
        );
        let client = default_engine();
        let target_repo = Repository::new(target.host(), repo.clone());
        for image in fixture.images() {
            let child = digest(&image.manifest.digest);
            let found = client
                .client()
                .head_manifest_in(&target_repo, ManifestRef::Digest(&child))
                .await
                .unwrap();
            assert_eq!(found.map(|d| d.digest), Some(child));
        }
    }
}

#[tokio::test]
async fn platform_selection_copies_one_child_and_says_the_digest_differs() {
    let source = Registry::start();
    let target = Registry::start();
    let fixture = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &layers(20),
        Format::Oci,
    );
    let index_digest = digest(&fixture.push(&source, "multi/app:1"));
    let arm = &fixture.images()[1];
    let options = CopyOptions {
        platform: Some("linux/arm64".parse().unwrap()),
        ..CopyOptions::default()
    };
    let report = engine(config(), options)
        .copy(
            &reference(&format!("{}/multi/app:1", source.host())),
            &reference(&format!("{}/arm/app:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));

    assert_eq!(report.digest, digest(&arm.manifest.digest));
    assert_eq!(report.source_digest, index_digest);
    assert_eq!(report.blobs_copied, arm.layers.len() + 1);
    assert_eq!(report.manifests_pushed, 1);
    assert_eq!(
        report.warnings,
        [CopyWarning::PlatformSelected {
            platform: Platform::new("linux", "arm64", Some("v8")),
            index_digest: index_digest.clone(),
            manifest_digest: report.digest.clone(),
        }]
    );
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "arm/app:1"),
        report.digest
    );

    let options = CopyOptions {
        platform: Some("linux/s390x".parse().unwrap()),
        ..CopyOptions::default()
    };
    let error = engine(config(), options)
        .copy(
            &reference(&format!("{}/multi/app:1", source.host())),
            &reference(&format!("{}/s390x/app:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CopyError::PlatformNotFound { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("linux/s390x") && message.contains("linux/amd64, linux/arm64/v8"),
        "{message}"
    );
}

#[tokio::test]
async fn warns_when_no_linux_amd64_image_exists() {
    let source = Registry::start();
    let target = Registry::start();
    let fixture = ImageFixture::index(&[("linux", "arm64/v8")], &layers(30), Format::Oci);
    fixture.push(&source, "armonly/app:1");
    let report = default_engine()
        .copy(
            &reference(&format!("{}/armonly/app:1", source.host())),
            &reference(&format!("{}/armonly/app:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert!(
        matches!(&report.warnings[..], [CopyWarning::NoLinuxAmd64 { platforms, .. }]
            if platforms == &[Platform::new("linux", "arm64", Some("v8"))]),
        "{:?}",
        report.warnings
    );
}

#[tokio::test]
async fn target_without_tag_keeps_the_source_tag() {
    let source = Registry::start();
    let target = Registry::start();
    let fixture = ImageFixture::single(&layers(40), Format::Oci);
    let pushed = digest(&fixture.push(&source, "tools/samtools:1.19"));
    let report = default_engine()
        .copy(
            &reference(&format!("{}/tools/samtools:1.19", source.host())),
            &reference(&format!("{}/quay/tools/samtools", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.target.tag(), Some("1.19"));
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "quay/tools/samtools:1.19"),
        pushed
    );
}

fn blob_writes(proxy: &FaultProxy) -> Vec<(String, String, u16)> {
    proxy
        .requests()
        .into_iter()
        .filter(|(method, target, _)| {
            target.contains("/blobs/uploads")
                || method == "PATCH"
                || (method == "PUT" && target.contains("/blobs/"))
        })
        .collect()
}

#[tokio::test]
async fn second_copy_uploads_nothing() {
    let source = Registry::start();
    let target = Registry::start();
    let watched = FaultProxy::start(&target);
    let fixture = ImageFixture::single(&layers(50), Format::DockerV2);
    fixture.push(&source, "app/x:1");
    let src = reference(&format!("{}/app/x:1", source.host()));
    let dst = reference(&format!("{}/app/x:1", watched.host()));

    let first = default_engine()
        .copy(&src, &dst, &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.blobs_copied, blob_count(&fixture));
    assert!(!first.up_to_date);
    watched.clear_requests();

    // Same name, same digest: the image is complete there, so not even its blobs are asked about.
    let again = default_engine()
        .copy(&src, &dst, &NoProgress)
        .await
        .unwrap();
    assert!(again.up_to_date);
    assert_eq!(
        (again.digest.clone(), again.bytes_copied),
        (first.digest.clone(), 0)
    );
    assert_eq!((again.blobs_copied, again.manifests_pushed), (0, 0));
    let target_requests: Vec<_> = watched
        .requests()
        .into_iter()
        .filter(|(_, target, _)| target != "/v2/")
        .collect();
    assert_eq!(target_requests.len(), 1, "{target_requests:?}");
    assert!(target_requests[0].0 == "HEAD" && target_requests[0].1 == "/v2/app/x/manifests/1");

    // A new tag in the same repository: every blob is found by HEAD and skipped.
    // (A new engine is a new run: nothing is remembered, the registry is asked.)
    watched.clear_requests();
    let new_tag = reference(&format!("{}/app/x:2", watched.host()));
    let second = default_engine()
        .copy(&src, &new_tag, &NoProgress)
        .await
        .unwrap();
    assert_eq!(second.digest, first.digest);
    assert!(!second.up_to_date);
    assert_eq!(second.bytes_copied, 0);
    assert_eq!(second.blobs_copied, 0);
    assert_eq!(second.blobs_skipped, blob_count(&fixture));
    assert_eq!(second.manifests_pushed, 1);
    assert!(
        blob_writes(&watched).is_empty(),
        "{:?}",
        blob_writes(&watched)
    );
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "app/x:2"),
        first.digest
    );
}

#[tokio::test]
async fn mounts_blobs_already_in_another_repository_of_the_target() {
    let source = Registry::start();
    let target = Registry::start();
    let watched = FaultProxy::start(&target);
    let fixture = ImageFixture::single(&layers(60), Format::Oci);
    fixture.push(&source, "base/img:1");
    let src = reference(&format!("{}/base/img:1", source.host()));
    let engine = default_engine();

    let first = engine
        .copy(
            &src,
            &reference(&format!("{}/one/img:1", watched.host())),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(first.blobs_copied, blob_count(&fixture));
    let sink = RecordingSink::default();
    let second = engine
        .copy(
            &src,
            &reference(&format!("{}/two/img:1", watched.host())),
            &sink,
        )
        .await
        .unwrap();
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.blobs_mounted, blob_count(&fixture));
    assert_eq!(second.bytes_copied, 0);
    let mounts = watched
        .requests()
        .into_iter()
        .filter(|(method, target, status)| {
            method == "POST"
                && target.starts_with("/v2/two/img/blobs/uploads/?mount=")
                && target.contains("from=one%2Fimg")
                && *status == 201
        })
        .count();
    assert_eq!(mounts, blob_count(&fixture));
    assert_eq!(sink.count("blob-mounted"), blob_count(&fixture));
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "two/img:1"),
        second.digest
    );
}

#[tokio::test]
async fn copy_within_one_registry_mounts_from_the_source_repository() {
    let registry = Registry::start();
    let fixture = ImageFixture::single(&layers(70), Format::Oci);
    let pushed = digest(&fixture.push(&registry, "orig/app:1"));
    let report = default_engine()
        .copy(
            &reference(&format!("{}/orig/app:1", registry.host())),
            &reference(&format!("{}/copy/app:1", registry.host())),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.digest, pushed);
    assert_eq!(report.blobs_mounted, blob_count(&fixture));
    assert_eq!(report.bytes_copied, 0);
}

#[tokio::test]
async fn concurrent_copies_sharing_layers_upload_each_blob_once() {
    let source = Registry::start();
    let target = Registry::start();
    let watched = FaultProxy::start(&target);
    let shared_base = LayerSpec::new(7_000, 400_000);
    let first_image =
        ImageFixture::single(&[shared_base, LayerSpec::new(7_001, 50_000)], Format::Oci);
    let second_image =
        ImageFixture::single(&[shared_base, LayerSpec::new(7_002, 50_000)], Format::Oci);
    first_image.push(&source, "a/app:1");
    second_image.push(&source, "b/app:1");
    let engine = engine(
        config(),
        CopyOptions {
            jobs: 8,
            ..CopyOptions::default()
        },
    );
    let (src_a, dst_a) = (
        reference(&format!("{}/a/app:1", source.host())),
        reference(&format!("{}/x/a:1", watched.host())),
    );
    let (src_b, dst_b) = (
        reference(&format!("{}/b/app:1", source.host())),
        reference(&format!("{}/x/b:1", watched.host())),
    );
    let (a, b) = tokio::join!(
        engine.copy(&src_a, &dst_a, &NoProgress),
        engine.copy(&src_b, &dst_b, &NoProgress)
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    let base_digest = &first_image.images()[0].layers[0].digest;
    assert_eq!(base_digest, &second_image.images()[0].layers[0].digest);
    let base_uploads = watched
        .requests()
        .into_iter()
        .filter(|(method, target, _)| {
            method == "PUT" && target.contains(&base_digest.replace(':', "%3A"))
        })
        .count();
    assert_eq!(base_uploads, 1, "{:?}", watched.requests());
    assert_eq!(a.blobs_mounted + b.blobs_mounted, 1);
    assert_eq!(a.blobs_copied + b.blobs_copied, 5);
}

#[tokio::test]
async fn chunked_uploads_preserve_digests() {
    let source = Registry::start();
    let target = Registry::start();
    let watched = FaultProxy::start(&target);
    let fixture = ImageFixture::single(&[LayerSpec::new(80, 11 * 1024 * 1024)], Format::DockerV2);
    let pushed = digest(&fixture.push(&source, "big/app:1"));
    // Asked for 64 KiB chunks, the engine sends parts of 5 MiB (the last may be smaller): ECR
    // refuses smaller ones, and no registry needs them.
    let options = CopyOptions {
        chunk_size: Some(64 * 1024),
        ..CopyOptions::default()
    };
    let report = engine(config(), options)
        .copy(
            &reference(&format!("{}/big/app:1", source.host())),
            &reference(&format!("{}/big/app:1", watched.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, pushed);
    let patches = watched
        .requests()
        .into_iter()
        .filter(|(method, _, status)| method == "PATCH" && *status == 202)
        .count();
    let image = &fixture.images()[0];
    let part = 5 * 1024 * 1024;
    // The config blob was read to learn the image's platform and goes up whole from memory.
    let parts = image.layers[0].size.div_ceil(part);
    assert_eq!(patches as u64, parts, "{patches} PATCHes");
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "big/app:1"),
        pushed
    );
}

#[tokio::test]
async fn basic_auth_target_with_right_and_wrong_credentials() {
    let source = Registry::start();
    let target = Registry::builder()
        .basic_auth("pusher", "correct-horse")
        .start();
    let fixture = ImageFixture::single(&layers(90), Format::Oci);
    let pushed = digest(&fixture.push(&source, "app/auth:1"));
    let src = reference(&format!("{}/app/auth:1", source.host()));
    let dst = reference(&format!("{}/app/auth:1", target.host()));

    let good =
        StaticCredentials::new().with(&target.host(), Credential::new("pusher", "correct-horse"));
    let report = engine(config_with(Arc::new(good)), CopyOptions::default())
        .copy(&src, &dst, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, pushed);
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "app/auth:1"),
        pushed
    );

    let bad =
        StaticCredentials::new().with(&target.host(), Credential::new("pusher", "wrong-battery"));
    let error = engine(config_with(Arc::new(bad)), CopyOptions::default())
        .copy(
            &src,
            &reference(&format!("{}/app/other:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("\"pusher\"") && message.contains("rejected"),
        "{message}"
    );
    assert!(!message.contains("wrong-battery"), "{message}");

    let error = default_engine()
        .copy(
            &src,
            &reference(&format!("{}/app/anon:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("no credentials are configured"),
        "{message}"
    );
}

#[tokio::test]
async fn tls_target_is_verified_against_the_given_ca() {
    let source = Registry::start();
    let target = Registry::builder().tls().start();
    let fixture = ImageFixture::single(&layers(100), Format::Oci);
    let pushed = digest(&fixture.push(&source, "secure/app:1"));
    let src = reference(&format!("{}/secure/app:1", source.host()));
    let dst = reference(&format!("{}/secure/app:1", target.host()));

    let with_ca = omx_registry::ClientConfig {
        ca_certificates: vec![target.ca_cert_path().unwrap().to_path_buf()],
        ..config()
    };
    let report = engine(with_ca, CopyOptions::default())
        .copy(&src, &dst, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, pushed);
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "secure/app:1"),
        pushed
    );

    // Without the CA the self-signed chain must be refused, not silently accepted.
    let error = default_engine()
        .copy(
            &src,
            &reference(&format!("{}/secure/other:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CopyError::Blob { .. } | CopyError::Push { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_source_image_is_a_clear_error() {
    let source = Registry::start();
    let target = Registry::start();
    let missing = reference(&format!("{}/nothing/here:1.0", source.host()));
    let error = default_engine()
        .copy(
            &missing,
            &reference(&format!("{}/x/y:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CopyError::SourceNotFound { .. }),
        "{error:?}"
    );
    let message = chain(&error);
    assert!(
        message.contains(&format!("{}/nothing/here:1.0", source.host())),
        "{message}"
    );
    assert!(message.contains("not found"), "{message}");
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    let source = Registry::start();
    let target = Registry::start();
    let fixture = ImageFixture::single(&layers(110), Format::Oci);
    fixture.push(&source, "app/big-manifest:1");
    let tiny = omx_registry::ClientConfig {
        max_manifest_size: 64,
        ..config()
    };
    let error = engine(tiny, CopyOptions::default())
        .copy(
            &reference(&format!("{}/app/big-manifest:1", source.host())),
            &reference(&format!("{}/app/x:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let CopyError::Source { source: cause, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(cause, RegistryError::ManifestTooLarge { .. }),
        "{cause:?}"
    );
}

#[tokio::test]
async fn an_upload_gives_its_place_up_while_the_registry_commits_it() {
    // A registry answers the final PUT only once the blob is committed (distribution's
    // filesystem driver syncs the file to disk first): the next blob may flow meanwhile.
    let source = Registry::start();
    let target = Registry::start();
    let slow_commits = FaultProxy::start(&target);
    slow_commits.add_rule(
        FaultRule::new(Fault::Stall(std::time::Duration::from_millis(500)))
            .method("PUT")
            .path_contains("/blobs/uploads/"),
    );
    let fixture = ImageFixture::single(&LayerSpec::distinct(120, 2, 300_000), Format::Oci);
    let pushed = digest(&fixture.push(&source, "slow/app:1"));
    let options = CopyOptions {
        jobs: 1,
        ..CopyOptions::default()
    };
    let sink = RecordingSink::default();
    let report = engine(config(), options)
        .copy(
            &reference(&format!("{}/slow/app:1", source.host())),
            &reference(&format!("{}/slow/app:1", slow_commits.host())),
            &sink,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, pushed);
    assert_eq!(report.blobs_copied, 3);

    // With one transfer in flight at a time, each blob still starts before the one before it
    // is answered: its place was given up once its last byte was sent.
    let lines = sink.lines();
    let position = |prefix: &str| {
        lines
            .iter()
            .position(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {lines:#?}"))
    };
    let blobs: Vec<String> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("blob-started "))
        .map(str::to_string)
        .collect();
    assert_eq!(blobs.len(), 3, "{lines:#?}");
    for pair in blobs.windows(2) {
        assert!(
            position(&format!("blob-started {}", pair[1]))
                < position(&format!("blob-finished {}", pair[0])),
            "{} started only after {} was answered: {lines:#?}",
            pair[1],
            pair[0]
        );
    }
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "slow/app:1"),
        pushed
    );
}

//! Copies through a fault-injecting proxy: damaged content must never be pushed, transient
//! failures must be retried until the copy succeeds with identical digests.

mod common;

use common::*;
use omx_registry::{CopyError, CopyOptions, NoProgress, RegistryError};
use omx_testenv::{Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry};

fn fixture(seed: u64) -> ImageFixture {
    ImageFixture::single(&LayerSpec::distinct(seed, 2, 200_000), Format::Oci)
}

#[tokio::test]
async fn corrupted_blob_fails_the_copy_and_nothing_is_tagged() {
    let source = Registry::start();
    let target = Registry::start();
    let image = fixture(1);
    image.push(&source, "app/c:1");
    let layer = image.images()[0].layers[1].digest.clone();
    let proxy = FaultProxy::start(&source);
    proxy.add_rule(
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains(&format!("/blobs/{layer}")),
    );
    let sink = RecordingSink::default();
    let error = default_engine()
        .copy(
            &reference(&format!("{}/app/c:1", proxy.host())),
            &reference(&format!("{}/app/c:1", target.host())),
            &sink,
        )
        .await
        .unwrap_err();

    let CopyError::Blob {
        digest,
        source: cause,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(digest.to_string(), layer);
    let RegistryError::RetriesExhausted { last, attempts, .. } = cause else {
        panic!("{cause:?}")
    };
    assert_eq!(*attempts, fast_retry().max_attempts);
    assert!(
        matches!(**last, RegistryError::DigestMismatch { .. }),
        "{last:?}"
    );
    let message = chain(&error);
    assert!(
        message.contains(&layer) && message.contains("app/c:1"),
        "{message}"
    );
    assert!(sink.count("failed") == 1 && sink.count("blob-retrying") >= 1);

    let client = default_engine();
    let tagged = client
        .client()
        .head_manifest(&reference(&format!("{}/app/c:1", target.host())))
        .await
        .unwrap();
    assert_eq!(tagged, None, "a tag was pushed despite the corrupted blob");
    let stored = client
        .client()
        .head_blob(
            &omx_registry::Repository::new(target.host(), "app/c"),
            &layer.parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stored, None, "the corrupted blob was committed");
}

#[tokio::test]
async fn resets_truncations_429_and_503_are_retried_to_an_identical_copy() {
    let source = Registry::start();
    let target = Registry::start();
    let image = fixture(2);
    let pushed = digest(&image.push(&source, "app/r:1"));
    let source_proxy = FaultProxy::start(&source);
    let target_proxy = FaultProxy::start(&target);
    source_proxy.add_rule(
        FaultRule::new(Fault::too_many_requests(1))
            .path_contains("/manifests/")
            .times(1),
    );
    source_proxy.add_rule(
        FaultRule::new(Fault::Reset)
            .method("GET")
            .path_contains("/blobs/")
            .times(1),
    );
    // Breaks in the middle of streamed layers: the transfers must restart from scratch.
    let layers = &image.images()[0].layers;
    source_proxy.add_rule(
        FaultRule::new(Fault::ResetMidBody)
            .method("GET")
            .path_contains(&layers[0].digest)
            .times(1),
    );
    source_proxy.add_rule(
        FaultRule::new(Fault::TruncateBody)
            .method("GET")
            .path_contains(&layers[1].digest)
            .times(1),
    );
    target_proxy.add_rule(
        FaultRule::new(Fault::status(503))
            .method("PUT")
            .path_contains("/blobs/")
            .times(1),
    );
    target_proxy.add_rule(FaultRule::new(Fault::status(503)).method("HEAD").times(1));
    target_proxy.add_rule(FaultRule::new(Fault::Reset).method("POST").times(1));
    target_proxy.add_rule(
        FaultRule::new(Fault::too_many_requests(1))
            .method("PUT")
            .path_contains("/manifests/")
            .times(1),
    );

    let sink = RecordingSink::default();
    let options = CopyOptions {
        jobs: 1,
        ..CopyOptions::default()
    };
    let report = engine(config(), options)
        .copy(
            &reference(&format!("{}/app/r:1", source_proxy.host())),
            &reference(&format!("{}/app/r:1", target_proxy.host())),
            &sink,
        )
        .await
        .unwrap_or_else(|e| panic!("{}\nevents: {:#?}", chain(&e), sink.lines()));

    assert_eq!(report.digest, pushed);
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "app/r:1"),
        pushed
    );
    assert_eq!(
        source_proxy.faults_injected(),
        4,
        "{:?}",
        source_proxy.records()
    );
    assert_eq!(
        target_proxy.faults_injected(),
        4,
        "{:?}",
        target_proxy.records()
    );
    assert!(sink.count("blob-retrying") >= 3, "{:#?}", sink.lines());
}

#[tokio::test]
async fn persistent_server_errors_end_with_a_clear_bounded_failure() {
    let source = Registry::start();
    let target = Registry::start();
    let image = fixture(3);
    image.push(&source, "app/p:1");
    let proxy = FaultProxy::start(&source);
    proxy.add_rule(FaultRule::new(Fault::status(503)).path_contains("/manifests/"));
    let error = default_engine()
        .copy(
            &reference(&format!("{}/app/p:1", proxy.host())),
            &reference(&format!("{}/app/p:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("app/p:1")
            && message.contains("gave up after 5 attempts")
            && message.contains("503"),
        "{message}"
    );
    let manifest_requests = proxy
        .requests()
        .iter()
        .filter(|(_, target, _)| target.contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 5);
}

/// distribution refuses a manifest with `400 MANIFEST_BLOB_UNKNOWN` (or `DIGEST_INVALID`) while
/// another client re-links the same blob; the copy re-checks the blobs and pushes it again.
#[tokio::test]
async fn manifest_refused_over_its_blobs_is_rechecked_and_pushed_again() {
    let source = Registry::start();
    let target = Registry::start();
    let image = fixture(4);
    let pushed = digest(&image.push(&source, "app/m:1"));
    let proxy = FaultProxy::start(&target);
    proxy.add_rule(
        FaultRule::new(Fault::RegistryError(400, "MANIFEST_BLOB_UNKNOWN"))
            .method("PUT")
            .path_contains("/manifests/")
            .times(1),
    );
    proxy.add_rule(
        FaultRule::new(Fault::RegistryError(400, "DIGEST_INVALID"))
            .method("PUT")
            .path_contains("/manifests/")
            .times(1),
    );
    let report = default_engine()
        .copy(
            &reference(&format!("{}/app/m:1", source.host())),
            &reference(&format!("{}/app/m:1", proxy.host())),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(report.digest, pushed);
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "app/m:1"),
        pushed
    );
    let manifest_puts = proxy
        .requests()
        .into_iter()
        .filter(|(method, target, _)| method == "PUT" && target.contains("/manifests/"))
        .map(|(_, _, status)| status)
        .collect::<Vec<_>>();
    assert_eq!(manifest_puts, [400, 400, 201]);
}

#[tokio::test]
async fn manifest_refused_over_its_blobs_every_time_fails_clearly_and_is_not_tagged() {
    let source = Registry::start();
    let target = Registry::start();
    let image = fixture(5);
    image.push(&source, "app/n:1");
    let proxy = FaultProxy::start(&target);
    proxy.add_rule(
        FaultRule::new(Fault::RegistryError(400, "MANIFEST_BLOB_UNKNOWN"))
            .method("PUT")
            .path_contains("/manifests/"),
    );
    let error = default_engine()
        .copy(
            &reference(&format!("{}/app/n:1", source.host())),
            &reference(&format!("{}/app/n:1", proxy.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("app/n:1") && message.contains("MANIFEST_BLOB_UNKNOWN"),
        "{message}"
    );
    let manifest_puts = proxy
        .requests()
        .iter()
        .filter(|(method, target, _)| method == "PUT" && target.contains("/manifests/"))
        .count();
    assert_eq!(manifest_puts, 4, "bounded attempts");
    let tagged = default_engine()
        .client()
        .head_manifest(&reference(&format!("{}/app/n:1", target.host())))
        .await
        .unwrap();
    assert_eq!(tagged, None);
}

/// The copy engine remembers which repositories hold a blob and skips them; when the registry
/// lost the blob since (here: its link in the repository deleted under the engine), the
/// refused manifest push makes the engine look again and upload what is really missing.
#[tokio::test]
async fn blob_lost_from_the_target_since_it_was_copied_is_uploaded_again() {
    let source = Registry::start();
    let target = Registry::start();
    let image = fixture(6);
    let pushed = digest(&image.push(&source, "app/l:1"));
    image.push(&source, "app/l:2");
    let engine = default_engine();
    for tag in ["1", "2"] {
        if tag == "2" {
            let layer = &image.images()[0].layers[0].digest;
            let link = target
                .storage_dir()
                .join("docker/registry/v2/repositories/app/l/_layers/sha256")
                .join(layer.trim_start_matches("sha256:"))
                .join("link");
            std::fs::remove_file(&link).unwrap();
            let held = engine
                .client()
                .head_blob(
                    &omx_registry::Repository::new(target.host(), "app/l"),
                    &digest(layer),
                )
                .await
                .unwrap();
            assert_eq!(held, None, "the registry still serves the unlinked blob");
        }
        let report = engine
            .copy(
                &reference(&format!("{}/app/l:{tag}", source.host())),
                &reference(&format!("{}/app/l:{tag}", target.host())),
                &NoProgress,
            )
            .await
            .unwrap();
        assert_eq!(report.digest, pushed);
        assert_eq!(
            skopeo_raw_digest(&target, &target.host(), &format!("app/l:{tag}")),
            pushed
        );
    }
}

/// A registry that answers 429 asking to wait an hour (as Docker Hub does once a pull limit is
/// spent) is not retried for seconds: the image fails at once with the wait, and the run's next
/// image from that registry fails without asking it again.
#[tokio::test]
async fn a_registry_asking_to_wait_longer_than_the_window_is_not_asked_again() {
    let source = Registry::start();
    let target = Registry::start();
    fixture(31).push(&source, "app/first:1");
    fixture(32).push(&source, "app/second:1");
    let proxy = FaultProxy::start(&source);
    proxy.add_rule(FaultRule::new(Fault::too_many_requests(3600)).path_contains("/manifests/"));
    let engine = default_engine();
    let copy = |name: &str| {
        let source = reference(&format!("{}/app/{name}:1", proxy.host()));
        let target = reference(&format!("{}/app/{name}:1", target.host()));
        let engine = &engine;
        async move { engine.copy(&source, &target, &NoProgress).await }
    };
    let first = copy("first").await.unwrap_err();
    let text = chain(&first);
    assert!(text.contains("asks to wait 60 min"), "{text}");
    let manifest_requests = |proxy: &FaultProxy| {
        proxy
            .requests()
            .iter()
            .filter(|(_, path, _)| path.contains("/manifests/"))
            .count()
    };
    assert_eq!(manifest_requests(&proxy), 1, "one refusal, no retries");
    let second = copy("second").await.unwrap_err();
    assert!(
        chain(&second).contains("asks to wait"),
        "{}",
        chain(&second)
    );
    assert_eq!(manifest_requests(&proxy), 1, "not asked again");
}

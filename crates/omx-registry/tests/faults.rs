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

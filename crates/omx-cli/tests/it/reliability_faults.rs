//! The built `pull`, with its default retry policy, on a 20-image manifest through fault
//! proxies in front of both registries (the library-level suite with many more runs is
//! `omx-registry/tests/fault_suite.rs`). Every image must end `SUCCEEDED` and identical at the
//! target, or `FAILED` with nothing under its tag; the report and the exit code must agree.

use std::time::Duration;

use omx_testenv::{Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry};

use crate::util::*;

const IMAGES: usize = 20;

/// Damage on the way down: resets, truncations, corruption, stalls, throttling, server errors.
fn source_rules() -> Vec<FaultRule> {
    let blobs = "/blobs/";
    let manifests = "/manifests/";
    vec![
        FaultRule::new(Fault::ResetMidBody)
            .method("GET")
            .path_contains(blobs)
            .probability(0.05),
        FaultRule::new(Fault::TruncateBody)
            .method("GET")
            .path_contains(blobs)
            .probability(0.04),
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains(blobs)
            .probability(0.04),
        FaultRule::new(Fault::StallMidBody(Duration::from_millis(50)))
            .method("GET")
            .path_contains(blobs)
            .probability(0.04),
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains(manifests)
            .probability(0.04),
        FaultRule::new(Fault::too_many_requests(0))
            .path_contains(manifests)
            .probability(0.04),
        FaultRule::new(Fault::too_many_requests(1))
            .path_contains(manifests)
            .probability(0.04)
            .times(1),
        FaultRule::new(Fault::status(502)).probability(0.03),
    ]
}

/// Refusals on the way up (never forwarded, so a refused push commits nothing).
fn target_rules() -> Vec<FaultRule> {
    vec![
        FaultRule::new(Fault::status(503)).probability(0.04),
        FaultRule::new(Fault::status(500)).probability(0.02),
        FaultRule::new(Fault::Reset).probability(0.03),
    ]
}

#[test]
fn a_pull_through_faults_ends_each_image_identical_or_failed_with_nothing_tagged() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let images: Vec<(String, String)> = (0..IMAGES)
        .map(|index| {
            let layers =
                LayerSpec::distinct(300 + index as u64, 2, 30_000 + 20_000 * (index as u64 % 3));
            let format = if index % 2 == 0 {
                Format::Oci
            } else {
                Format::DockerV2
            };
            let path = format!("faults/img{index}");
            let digest = ImageFixture::single(&layers, format).push(&source, &format!("{path}:1"));
            (path, digest)
        })
        .collect();

    for seed in [11, 12] {
        let target = Registry::start();
        let source_proxy = FaultProxy::start_for(&source.host(), seed, source_rules());
        let target_proxy = FaultProxy::start_for(&target.host(), seed, target_rules());
        let entries: Vec<String> = images
            .iter()
            .map(|(path, _)| format!("{}/{path}:1", source_proxy.host()))
            .collect();
        let manifest = write_manifest(home.path(), "manifest.json", &entries);
        let output = run_isolated(
            home.path(),
            &[
                "pull",
                manifest.to_str().unwrap(),
                "--registry",
                &target_proxy.host(),
                "--format",
                "json",
            ],
        );
        let code = output.code();
        let report = output.json();
        let reported = report["images"].as_array().unwrap();
        assert_eq!(reported.len(), IMAGES, "{report}");

        let mut failed = 0;
        for ((path, digest), image) in images.iter().zip(reported) {
            let repository = target_repository(&source_proxy.host(), path);
            let served = served_digest(&target, &repository, "1");
            match image["status"].as_str().unwrap() {
                "SUCCEEDED" => {
                    assert_eq!(image["digest"], digest.as_str(), "{image}");
                    assert_eq!(served.as_deref(), Some(digest.as_str()), "{image}");
                }
                "FAILED" => {
                    failed += 1;
                    let message = image["message"].as_str().unwrap();
                    assert!(
                        message.contains(path),
                        "the failure names the image: {image}"
                    );
                    assert_eq!(served, None, "failed, yet tagged: {image}");
                }
                other => panic!("unexpected status {other}: {image}"),
            }
        }
        assert_eq!(code, if failed == 0 { 0 } else { 1 }, "{}", output.all());
        let faults = source_proxy.faults_injected() + target_proxy.faults_injected();
        let requests = source_proxy.requests().len() + target_proxy.requests().len();
        println!(
            "pull through faults (seed {seed}): {IMAGES} images, {requests} requests, \
             {faults} faults injected, {failed} failed"
        );
        assert!(faults > 0, "the schedule injected nothing");
    }
}

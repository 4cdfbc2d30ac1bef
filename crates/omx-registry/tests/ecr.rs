//! The copy engine against the ECR stand-in (`omx_testenv::EcrStandIn`), where ECR's registry API
//! differs from distribution: chunked uploads (201, a `Range` that stops advancing, 5 MiB parts)
//! and blob mounts (opt-in, only from a repository whose manifest references the blob).

mod common;

use std::sync::Arc;

use common::*;
use omx_registry::{CopyOptions, Credential, NoProgress, StaticCredentials};
use omx_testenv::{EcrStandIn, Format, ImageFixture, LayerSpec, Registry};
use serde_json::json;

fn ecr_engine(ecr: &EcrStandIn, options: CopyOptions) -> omx_registry::CopyEngine {
    let (user, password) = ecr.login();
    let credentials = StaticCredentials::new().with(&ecr.host(), Credential::new(user, password));
    engine(config_with(Arc::new(credentials)), options)
}

#[tokio::test]
async fn chunked_uploads_succeed_on_ecr_despite_its_stale_range_and_part_minimum() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let ecr = EcrStandIn::start();
    ecr.call("CreateRepository", json!({"repositoryName": "team/big"}));
    // One 12 MiB layer: three parts however small a chunk size is asked for.
    let fixture = ImageFixture::single(&LayerSpec::distinct(1, 1, 12 * 1024 * 1024), Format::Oci);
    let pushed = fixture.push(&source, "team/big:1");
    let options = CopyOptions {
        chunk_size: Some(1024 * 1024),
        ..CopyOptions::default()
    };
    let report = ecr_engine(&ecr, options)
        .copy(
            &reference(&format!("{}/team/big:1", source.host())),
            &reference(&format!("{}/team/big:1", ecr.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, digest(&pushed));
    let counters = ecr.counters();
    assert_eq!(
        counters.parts_too_small, 0,
        "no part under 5 MiB but the last"
    );
    let patches = ecr
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == 201)
        .count();
    assert!(
        patches >= 2,
        "the layer went up in several parts ({patches})"
    );
}

#[tokio::test]
async fn a_shared_layer_is_mounted_once_the_first_image_s_manifest_references_it() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let ecr = EcrStandIn::builder().blob_mounting(true).start();
    let shared = LayerSpec::distinct(7, 1, 400_000);
    let images: Vec<String> = (0..3u64)
        .map(|n| {
            let mut layers = shared.clone();
            layers.extend(LayerSpec::distinct(20 + n, 1, 10_000));
            let fixture = ImageFixture::single(&layers, Format::Oci);
            fixture.push(&source, &format!("team/app-{n}:1"));
            format!("team/app-{n}")
        })
        .collect();
    for repository in &images {
        ecr.call("CreateRepository", json!({"repositoryName": repository}));
    }
    let engine = ecr_engine(
        &ecr,
        CopyOptions {
            mount_needs_manifest: true,
            ..CopyOptions::default()
        },
    );
    let copies = images.iter().map(|repository| {
        let source = reference(&format!("{}/{repository}:1", source.host()));
        let target = reference(&format!("{}/{repository}:1", ecr.host()));
        let engine = &engine;
        async move { engine.copy(&source, &target, &NoProgress).await }
    });
    let reports = futures_util::future::join_all(copies).await;
    let mut mounted = 0;
    let mut uploaded_bytes = 0;
    for report in reports {
        let report = report.unwrap_or_else(|e| panic!("{}", chain(&e)));
        mounted += report.blobs_mounted;
        uploaded_bytes += report.bytes_copied;
    }
    assert_eq!(
        mounted, 2,
        "the shared layer is mounted into the second and third repository"
    );
    assert!(
        uploaded_bytes < 2 * 400_000,
        "the shared layer went up once ({uploaded_bytes} bytes)"
    );
    assert_eq!(ecr.counters().mounts_granted, 2);
}

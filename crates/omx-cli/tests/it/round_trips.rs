//! Requests per image: what a pull costs in round trips, counted where the registries see them
//! (the ECR stand-in's log for the target, a recording proxy in front of the source). Across the
//! internet each one costs 20–100 ms, so the count, not loopback speed, is what users feel.

use omx_testenv::{EcrStandIn, FaultProxy, Format, ImageFixture, LayerSpec, Moto, Registry};
use serde_json::json;

#[test]
fn a_pull_of_three_blob_images_costs_at_most_fifteen_requests_each_and_one_ping_per_registry() {
    let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let proxy = FaultProxy::start(&source);
    let ecr = EcrStandIn::start();
    let home = tempfile::tempdir().unwrap();
    let images = 10;
    let inputs: Vec<String> = (0..images)
        .map(|n| {
            // Config and two layers: three blobs.
            ImageFixture::single(&LayerSpec::distinct(100 + n, 2, 10_000), Format::Oci)
                .push(&source, &format!("team/t{n}:1"));
            format!("{}/team/t{n}:1", proxy.host())
        })
        .collect();
    let manifest = home.path().join("manifest.json");
    std::fs::write(&manifest, json!({"manifest": inputs}).to_string()).unwrap();
    let endpoint = ecr.host();
    let registry = format!("ecr://{}/us-east-1", ecr.account());
    let args = [
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        &registry,
        "--ecr-registry-endpoint",
        &endpoint,
        "--format",
        "json",
    ];
    let output = crate::util::moto_command(&args, &moto, home.path())
        .env("AWS_ENDPOINT_URL_ECR", ecr.endpoint())
        .run();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let target: Vec<_> = ecr
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/v2"))
        .collect();
    let source_requests = proxy.requests();
    let pings = |paths: Vec<&str>| paths.iter().filter(|p| **p == "/v2/").count();
    assert_eq!(pings(target.iter().map(|r| r.target.as_str()).collect()), 1);
    assert_eq!(
        pings(source_requests.iter().map(|(_, p, _)| p.as_str()).collect()),
        1
    );
    // Fifteen per image, plus per registry its ping and, for the source, one HEAD that reads
    // whether it publishes a pull budget (a HEAD is not a pull: docker/docs, pulls.md).
    let per_image = (target.len() + source_requests.len()) as f64 / images as f64;
    assert!(
        per_image <= 15.3,
        "{per_image} registry requests per image:\n{target:#?}\n{source_requests:#?}"
    );
    // No request is refused for want of authorization: the ping taught the scheme.
    assert!(
        target.iter().all(|r| r.status != 401 || r.target == "/v2/"),
        "{target:#?}"
    );
}

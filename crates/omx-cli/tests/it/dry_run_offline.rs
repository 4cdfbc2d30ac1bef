//! `pull --dry-run` with every registry out of reach: the plan and the output map need no
//! network, so the map is the one a real run would write, each image says it could not be
//! checked, and 100 images take well under a second.

use std::time::{Duration, Instant};

use omx_testenv::refusing_port;
use serde_json::{json, Value};

#[test]
fn a_dry_run_offline_writes_the_full_map_quickly_and_says_what_it_could_not_check() {
    let home = tempfile::tempdir().unwrap();
    let source = format!("127.0.0.1:{}", refusing_port());
    let target = format!("127.0.0.1:{}", refusing_port());
    let inputs: Vec<String> = (0..100)
        .map(|n| format!("{source}/team/tool{n}:1"))
        .collect();
    let manifest = home.path().join("manifest.json");
    std::fs::write(&manifest, json!({ "manifest": inputs }).to_string()).unwrap();
    let map_file = home.path().join("map.json");

    let started = Instant::now();
    let output = crate::util::fresh_machine(
        &[
            "pull",
            manifest.to_str().unwrap(),
            "--registry",
            &target,
            "--dry-run",
            "--output-map",
            map_file.to_str().unwrap(),
            "--format",
            "json",
        ],
        home.path(),
    )
    .run();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 100);
    for image in images {
        assert_eq!(image["status"], "PLANNED", "{image}");
        let message = image["message"].as_str().unwrap();
        assert!(
            message.starts_with("dry run: would bring it over; could not check: "),
            "{message}"
        );
        assert!(
            message.contains(&target),
            "names what it could not reach: {message}"
        );
    }
    assert!(
        stderr.contains("dry run: 100 of 100 images could not be checked"),
        "{stderr}"
    );

    let map: Value = serde_json::from_str(&std::fs::read_to_string(&map_file).unwrap()).unwrap();
    let mapped = map["images"].as_array().unwrap();
    assert_eq!(mapped.len(), 100, "{map}");
    assert_eq!(
        mapped[7]["target"],
        format!(
            "{target}/127.0.0.1-{}/team/tool7:1",
            &source["127.0.0.1:".len()..]
        )
    );
    assert_eq!(
        map["containerRegistryMap"]["imageMappings"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn a_dry_run_into_ecr_with_aws_out_of_reach_is_as_quick() {
    let home = tempfile::tempdir().unwrap();
    let inputs: Vec<String> = (0..50)
        .map(|n| format!("quay.io/biocontainers/tool{n}:1"))
        .chain((0..50).map(|n| format!("127.0.0.1:{}/team/tool{n}:1", refusing_port())))
        .collect();
    let manifest = home.path().join("manifest.json");
    std::fs::write(&manifest, json!({ "manifest": inputs }).to_string()).unwrap();
    let map_file = home.path().join("map.json");
    let aws = format!("http://127.0.0.1:{}", refusing_port());
    let registry_endpoint = format!("127.0.0.1:{}", refusing_port());

    let started = Instant::now();
    let output = crate::util::fresh_machine(
        &[
            "pull",
            manifest.to_str().unwrap(),
            "--registry",
            "ecr://123456789012/us-east-1",
            "--ecr-registry-endpoint",
            &registry_endpoint,
            "--dry-run",
            "--output-map",
            map_file.to_str().unwrap(),
            "--format",
            "json",
        ],
        home.path(),
    )
    .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    .env(
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    .env("AWS_ENDPOINT_URL", &aws)
    .run();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cached = report["images"][0]["message"].as_str().unwrap();
    assert!(
        cached.contains(&format!("could not check: DescribeImages for image quay/biocontainers/tool0:1 failed: cannot reach {aws}")),
        "{cached}"
    );
    let map: Value = serde_json::from_str(&std::fs::read_to_string(&map_file).unwrap()).unwrap();
    assert_eq!(map["images"].as_array().unwrap().len(), 100);
    assert_eq!(
        map["containerRegistryMap"]["registryMappings"][0]["upstreamRegistryUrl"],
        "quay.io"
    );
}

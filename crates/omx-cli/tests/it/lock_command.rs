//! Runs the built `omx-ecr-helper lock` against real docker-registry instances: tags resolved to
//! the digests the fixtures were pushed with (computed by the fixture writer, not by the code
//! under test), linux/amd64 required, the requests made, `--check` after a tag moved, and
//! `pull`, `verify` and `map` of the locked manifest.

use std::path::Path;

use omx_testenv::OmxOutput;
use omx_testenv::{FaultProxy, Format, ImageFixture, LayerSpec, Registry};
use serde_json::{json, Value};

use crate::util::{local as omx, served_digest, text};

fn write_manifest(dir: &Path, name: &str, entries: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json!({ "manifest": entries }).to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn manifest_entries(path: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(value["manifest"].clone()).unwrap()
}

fn tool(seed: u64) -> ImageFixture {
    ImageFixture::single(&LayerSpec::distinct(seed, 1, 20_000), Format::Oci)
}

#[test]
fn lock_pins_tags_to_the_pushed_digests_with_heads_and_refuses_what_is_not_amd64() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let proxy = FaultProxy::start(&registry);
    let home = tempfile::tempdir().unwrap();
    let multi = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(41, 1, 20_000),
        Format::Oci,
    );
    multi.push(&registry, "lab/multi:1");
    let single = tool(42);
    single.push(&registry, "team/tool:1");
    let arm = ImageFixture::index(
        &[("linux", "arm64")],
        &LayerSpec::distinct(43, 1, 20_000),
        Format::DockerV2,
    );
    arm.push(&registry, "team/arm:1");

    let src = proxy.host();
    let inputs = vec![
        format!("{src}/lab/multi:1"),
        format!("{src}/team/tool:1"),
        format!("{src}/team/arm:1"),
        format!("{src}/team/missing:9"),
        format!("{src}/team/tool:1@{}", single.digest()),
        "Bad:1".to_string(),
        // The same image spelled twice: each entry keeps its own spelling.
        format!(" {src}/lab/multi:1 "),
    ];
    let manifest = write_manifest(home.path(), "m.json", &inputs);
    let locked = home.path().join("locked.json");
    let report = home.path().join("report.json");
    proxy.clear_requests();
    let output = omx(
        &[
            "lock",
            &manifest,
            "-o",
            locked.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--registry",
            "127.0.0.1:1",
        ],
        home.path(),
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );

    let multi_pin = format!("{src}/lab/multi:1@{}", multi.digest());
    assert_eq!(
        manifest_entries(locked.to_str().unwrap()),
        vec![
            multi_pin.clone(),
            format!("{src}/team/tool:1@{}", single.digest()),
            inputs[2].clone(),
            inputs[3].clone(),
            inputs[4].clone(),
            inputs[5].clone(),
            multi_pin,
        ]
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let entries = report["entries"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["locked", "locked", "failed", "failed", "kept", "failed", "locked"]
    );
    assert_eq!(entries[0]["digest"], multi.digest());
    assert_eq!(entries[0]["tag"], "1");
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entries[0]["platforms"],
        json!(["linux/amd64", "linux/arm64/v8"])
    );
    assert_eq!(entries[1]["platforms"], json!(["linux/amd64"]));
    assert_eq!(
        entries[1]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The arm64-only index is found and named, and refused for HealthOmics.
    assert_eq!(entries[2]["digest"], arm.digest());
    let arm_reason = entries[2]["reason"].as_str().unwrap();
    assert!(
        arm_reason.contains("linux/arm64") && arm_reason.contains("linux/amd64 only"),
        "{arm_reason}"
    );
    let missing = entries[3]["reason"].as_str().unwrap();
    assert!(missing.contains("does not exist"), "{missing}");
    assert!(
        entries[5]["reason"].as_str().unwrap().contains("Bad"),
        "{report}"
    );
    assert!(stdout.contains("3 locked, 1 kept, 3 failed"), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");

    // Tags are resolved with HEAD; manifests are read by digest only (the index once, a
    // single image once for its config), never by tag.
    let requests = proxy.requests();
    let count = |method: &str, path: &str| {
        requests
            .iter()
            .filter(|(m, target, _)| m == method && target.starts_with(path))
            .count()
    };
    for repository in ["lab/multi", "team/tool", "team/arm", "team/missing"] {
        for tag in ["1", "9"] {
            let path = format!("/v2/{repository}/manifests/{tag}");
            assert_eq!(count("GET", &path), 0, "GET {path}: {requests:?}");
        }
    }
    assert_eq!(
        count("HEAD", "/v2/lab/multi/manifests/1"),
        1,
        "{requests:?}"
    );
    assert_eq!(
        count("HEAD", "/v2/team/tool/manifests/1"),
        1,
        "{requests:?}"
    );
    assert_eq!(
        count(
            "GET",
            &format!("/v2/lab/multi/manifests/{}", multi.digest())
        ),
        1,
        "{requests:?}"
    );
    assert_eq!(count("GET", "/v2/lab/multi/blobs/"), 0, "{requests:?}");
    let config = &single.images()[0].config.digest;
    assert_eq!(
        count("GET", &format!("/v2/team/tool/blobs/{config}")),
        2,
        "one config read per entry of team/tool (tag and pin): {requests:?}"
    );
}

#[test]
fn a_locked_manifest_survives_a_moved_tag_in_check_pull_verify_and_map() {
    let (Some(source), Some(target)) = (Registry::try_start(), Registry::try_start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let first = tool(51);
    first.push(&source, "team/tool:1");
    let multi = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(52, 1, 20_000),
        Format::DockerV2,
    );
    multi.push(&source, "lab/multi:2");
    let src = source.host();
    let dst = target.host();
    let namespace = format!("127.0.0.1-{}", source.port());
    let manifest = write_manifest(
        home.path(),
        "m.json",
        &[format!("{src}/team/tool:1"), format!("{src}/lab/multi:2")],
    );

    // Without -o the locked manifest is stdout and the table goes to stderr.
    let output = omx(&["lock", &manifest, "--registry", &dst], home.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("2 locked, 0 kept, 0 failed"));
    let locked = home.path().join("locked.json");
    std::fs::write(&locked, &output.stdout).unwrap();
    let locked = locked.to_str().unwrap();
    let pinned_tool = format!("{src}/team/tool:1@{}", first.digest());
    assert_eq!(
        manifest_entries(locked),
        vec![
            pinned_tool.clone(),
            format!("{src}/lab/multi:2@{}", multi.digest())
        ]
    );

    let check = omx(
        &["lock", "--check", locked, "--registry", &dst],
        home.path(),
    );
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));
    assert!(text(&check.stdout).contains("2 unchanged, 0 moved, 0 failed"));

    // Upstream moves the tag to another image.
    let second = tool(53);
    second.push(&source, "team/tool:1");
    assert_ne!(first.digest(), second.digest());
    let check = omx(
        &["lock", "--check", locked, "--registry", &dst],
        home.path(),
    );
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    let moved_line = stdout
        .lines()
        .find(|line| line.starts_with("MOVED"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(moved_line.contains(&pinned_tool), "{moved_line}");
    assert!(
        moved_line.contains(&format!("now points at {}", second.digest()))
            && moved_line.contains(&format!("the lock pins {}", first.digest())),
        "{moved_line}"
    );
    assert!(
        stdout.contains("1 unchanged, 1 moved, 0 failed"),
        "{stdout}"
    );

    // Pull copies the pinned image, not what the tag points at now, under the tag.
    let pull = [
        "pull",
        locked,
        "--registry",
        &dst,
        "--quiet",
        "--format",
        "json",
    ];
    let output = omx(&pull, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let tool_repository = format!("{namespace}/team/tool");
    assert_eq!(
        served_digest(&target, &tool_repository, "1").as_deref(),
        Some(first.digest())
    );
    assert_eq!(
        served_digest(&target, &tool_repository, second.digest()),
        None
    );
    assert_eq!(
        served_digest(&target, &format!("{namespace}/lab/multi"), "2").as_deref(),
        Some(multi.digest())
    );

    let verify = ["verify", locked, "--registry", &dst, "--format", "json"];
    let image_check = |output: &OmxOutput| -> (String, String) {
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stderr)));
        let check = &report["images"][0]["checks"][0];
        (
            check["status"].as_str().unwrap().to_string(),
            check["reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(image_check(&omx(&verify, home.path())).0, "pass");

    // Someone moves the private tag: verify fails it with the reason, pull puts the pin back.
    second.push(&target, &format!("{tool_repository}:1"));
    let (status, reason) = image_check(&omx(&verify, home.path()));
    assert_eq!(status, "fail", "{reason}");
    assert!(
        reason.contains(&format!(
            "points at {}, not the pinned {}",
            second.digest(),
            first.digest()
        )),
        "{reason}"
    );
    let output = omx(&pull, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(
        served_digest(&target, &tool_repository, "1").as_deref(),
        Some(first.digest())
    );
    assert_eq!(image_check(&omx(&verify, home.path())).0, "pass");

    // map: the spelling the workflow uses (name:tag) and the pinned one lead to the pin.
    let map = omx(
        &[
            "map",
            locked,
            "--format",
            "registry-map",
            "--registry",
            &dst,
        ],
        home.path(),
    );
    assert_eq!(map.status.code(), Some(0), "{}", text(&map.stderr));
    let map: Value = serde_json::from_slice(&map.stdout).unwrap();
    let destination = format!("{dst}/{tool_repository}:1@{}", first.digest());
    for spelling in [pinned_tool.as_str(), &format!("{src}/team/tool:1")] {
        assert!(
            map["imageMappings"]
                .as_array()
                .unwrap()
                .contains(&json!({"sourceImage": spelling, "destinationImage": destination})),
            "{spelling}: {map}"
        );
    }
}

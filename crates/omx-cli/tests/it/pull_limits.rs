//! The built `pull` against Docker Hub's pull limits, as `omx_testenv::PullBudgetRegistry`
//! emulates them (docker/docs, content/manuals/docker-hub/usage/pulls.md: a pull is a manifest
//! GET, HEADs are free and carry the `ratelimit-*` headers, a spent budget answers 429), and
//! against a registry that throttles with a long `Retry-After` (GHCR and Quay answer 429 with
//! one): the plan is fitted to the budget up front, only needed manifests are pulled, and a 429
//! that asks for a long wait fails the registry's remaining images at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use omx_testenv::{
    base64_encode, Fault, FaultProxy, FaultRule, Format, Identity, ImageFixture, LayerSpec,
    OmxOutput, PullBudgetRegistry, Registry,
};
use serde_json::{json, Value};

use crate::util::*;

/// Pushes `count` small single-platform images `lib/tool<i>:1` to `registry`.
fn push_images(registry: &Registry, seed: u64, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let layers = LayerSpec::distinct(seed + index as u64, 1, 1_000);
            let path = format!("lib/tool{index}");
            ImageFixture::single(&layers, Format::Oci).push(registry, &format!("{path}:1"));
            path
        })
        .collect()
}

fn entries(host: &str, paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|path| format!("{host}/{path}:1"))
        .collect()
}

/// `pull MANIFEST --registry TARGET --format json EXTRA...`.
fn pull(
    home: &std::path::Path,
    manifest: &std::path::Path,
    target: &Registry,
    extra: &[&str],
) -> OmxOutput {
    let target_host = target.host();
    let mut args = vec![
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        &target_host,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    run_isolated(home, &args)
}

/// [`pull`] without extra arguments, and how long it took.
fn timed_pull(
    home: &std::path::Path,
    manifest: &std::path::Path,
    target: &Registry,
) -> (OmxOutput, Duration) {
    let started = Instant::now();
    let output = pull(home, manifest, target, &[]);
    (output, started.elapsed())
}

/// Docker Hub's limits in front of `backing`, allowing `pulls` anonymous pulls an hour.
fn anonymous_hub(backing: &Registry, pulls: u64) -> PullBudgetRegistry {
    PullBudgetRegistry::builder()
        .anonymous_limit(pulls)
        .window(Duration::from_secs(3600))
        .start(backing)
}

fn messages(report: &Value) -> Vec<String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["message"].as_str().unwrap().to_string())
        .collect()
}

fn count(report: &Value, status: &str) -> usize {
    statuses(report)
        .iter()
        .filter(|(_, found)| found == status)
        .count()
}

#[test]
fn a_plan_larger_than_the_budget_copies_what_fits_and_reports_the_rest_up_front() {
    let (Some(backing), Some(target)) = (Registry::try_start(), Registry::try_start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let paths = push_images(&backing, 100, 20);
    let hub = anonymous_hub(&backing, 5);
    let manifest = write_manifest(home.path(), "manifest.json", &entries(&hub.host(), &paths));

    let (output, took) = timed_pull(home.path(), &manifest, &target);
    assert_eq!(output.code(), 1, "{}", output.all());
    let report = output.json();
    let found = statuses(&report);
    // Plan order decides: the first five fit, the other fifteen are left out untouched.
    for (position, (_, status)) in found.iter().enumerate() {
        let expected = if position < 5 { "SUCCEEDED" } else { "FAILED" };
        assert_eq!(status, expected, "image {position}: {report}");
    }
    for message in &messages(&report)[5..] {
        assert!(
            message.contains("pull limit") && message.contains("log in"),
            "{message}"
        );
    }
    // One line up front says how many fit, when pulls free up, and the ways out.
    let stderr = text(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.starts_with("pull limit:"))
        .unwrap_or_else(|| panic!("no pull limit line:\n{stderr}"));
    for expected in [
        "20 images",
        "need 20 manifest pulls",
        "allows 5 more of 5 per 60 min",
        "copies the first 5 and leaves out the other 15",
        "docker login",
        "pull-through cache",
    ] {
        assert!(line.contains(expected), "{expected:?} not in: {line}");
    }
    // Exactly the budget was spent, one GET per image, none refused: no 429 was ever met.
    assert_eq!(hub.pulls(&Identity::Anonymous), 5);
    assert_eq!(hub.manifest_gets(), 5);
    assert!(hub.requests().iter().all(|request| request.status != 429));
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn with_credentials_configured_the_budget_is_the_accounts() {
    let (Some(backing), Some(target)) = (Registry::try_start(), Registry::try_start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let paths = push_images(&backing, 200, 6);
    let hub = PullBudgetRegistry::builder()
        .anonymous_limit(2)
        .authenticated_limit(10)
        .user("alice", "s3cret")
        .start(&backing);
    // What `docker login` leaves in the Docker config.
    std::fs::create_dir_all(home.path().join(".docker")).unwrap();
    let config = json!({"auths": {hub.host(): {"auth": base64_encode(b"alice:s3cret")}}});
    std::fs::write(home.path().join(".docker/config.json"), config.to_string()).unwrap();
    let manifest = write_manifest(home.path(), "manifest.json", &entries(&hub.host(), &paths));

    let output = pull(home.path(), &manifest, &target, &[]);
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(count(&output.json(), "SUCCEEDED"), 6);
    assert!(!text(&output.stderr).contains("pull limit:"));
    assert_eq!(hub.pulls(&Identity::User("alice".to_string())), 6);
    assert_eq!(hub.pulls(&Identity::Anonymous), 0);
}

#[test]
fn strict_copies_nothing_when_the_plan_does_not_fit() {
    let (Some(backing), Some(target)) = (Registry::try_start(), Registry::try_start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let paths = push_images(&backing, 300, 5);
    let hub = anonymous_hub(&backing, 3);
    let manifest = write_manifest(home.path(), "manifest.json", &entries(&hub.host(), &paths));

    let output = pull(home.path(), &manifest, &target, &["--strict"]);
    assert_eq!(output.code(), 1, "{}", output.all());
    let report = output.json();
    assert_eq!(count(&report, "FAILED"), 5, "{report}");
    for message in messages(&report) {
        assert!(message.contains("--strict"), "{message}");
    }
    assert!(
        text(&output.stderr).contains("with --strict the run copies nothing"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(hub.manifest_gets(), 0);
    assert_eq!(writes_logged(&target), 0, "{}", target.log());
}

#[test]
fn a_budgeted_registry_does_not_hold_back_another_registrys_images() {
    let (Some(backing), Some(other), Some(target)) = (
        Registry::try_start(),
        Registry::try_start(),
        Registry::try_start(),
    ) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let limited = push_images(&backing, 400, 4);
    let free = push_images(&other, 500, 3);
    let hub = anonymous_hub(&backing, 2);
    let mut inputs = entries(&hub.host(), &limited);
    inputs.extend(entries(&other.host(), &free));
    let manifest = write_manifest(home.path(), "manifest.json", &inputs);

    let output = pull(home.path(), &manifest, &target, &[]);
    assert_eq!(output.code(), 1, "{}", output.all());
    let found: HashMap<String, String> = statuses(&output.json()).into_iter().collect();
    for input in &inputs[4..] {
        assert_eq!(found[input], "SUCCEEDED", "{input}");
    }
    let limited_status: Vec<&str> = inputs[..4].iter().map(|i| found[i].as_str()).collect();
    assert_eq!(
        limited_status,
        ["SUCCEEDED", "SUCCEEDED", "FAILED", "FAILED"]
    );
    assert_eq!(hub.pulls(&Identity::Anonymous), 2);
}

#[test]
fn only_needed_manifests_are_pulled_and_a_rerun_of_present_images_pulls_none() {
    let (Some(backing), Some(target)) = (Registry::try_start(), Registry::try_start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let paths = push_images(&backing, 600, 3);
    // One multi-arch image under two tags, both in the manifest.
    let multi = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(700, 1, 1_000),
        Format::Oci,
    );
    multi.push(&backing, "lib/multi:1");
    multi.push(&backing, "lib/multi:2");
    let hub = anonymous_hub(&backing, 50);
    let mut inputs = entries(&hub.host(), &paths);
    inputs.push(format!("{}/lib/multi:1", hub.host()));
    inputs.push(format!("{}/lib/multi:2", hub.host()));
    let manifest = write_manifest(home.path(), "manifest.json", &inputs);
    let platform = ["--platform", "linux/amd64"];

    let output = pull(home.path(), &manifest, &target, &platform);
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(count(&output.json(), "SUCCEEDED"), 5);
    // One GET per single image; each tag's index, and only the platform asked for, once for
    // both: no manifest twice.
    let mut gets: Vec<String> = hub
        .requests()
        .iter()
        .filter(|request| request.is_manifest_get())
        .map(|request| request.target.clone())
        .collect();
    assert_eq!(gets.len(), 3 + 2 + 1, "{gets:?}");
    gets.sort();
    gets.dedup();
    assert_eq!(gets.len(), 6, "a manifest was pulled twice: {gets:?}");

    // Everything is there: existence checks are HEADs, which spend nothing.
    hub.clear_requests();
    let output = pull(home.path(), &manifest, &target, &platform);
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(count(&output.json(), "SKIPPED"), 5);
    assert_eq!(hub.manifest_gets(), 0, "{:?}", hub.requests());

    // A refresh asks upstream with HEADs too: unmoved single images cost nothing. (The target
    // holds the amd64 manifest of the index, whose digest no HEAD of the index tells, so each
    // tag's index is fetched again to compare, and the platform manifest once.)
    let output = pull(
        home.path(),
        &manifest,
        &target,
        &[&platform[..], &["--refresh"]].concat(),
    );
    assert_eq!(output.code(), 0, "{}", output.all());
    assert_eq!(count(&output.json(), "SKIPPED"), 5);
    assert_eq!(hub.manifest_gets(), 3, "{:?}", hub.requests());
}

/// The pull limit spent while the run goes on (a multi-arch index needs more pulls than a HEAD
/// can tell): Docker Hub's 429 (`ratelimit-remaining: 0`, no `Retry-After`) ends the image at
/// once with the limit and when it frees up, and is never asked again.
#[test]
fn a_limit_spent_mid_run_fails_at_once_and_is_not_retried() {
    let (Some(backing), Some(target)) = (Registry::try_start(), Registry::try_start()) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let platforms = [
        ("linux", "amd64"),
        ("linux", "arm64/v8"),
        ("linux", "ppc64le"),
    ];
    let paths: Vec<String> = (0..2)
        .map(|index| {
            let path = format!("lib/multi{index}");
            ImageFixture::index(
                &platforms,
                &LayerSpec::distinct(800 + index, 1, 1_000),
                Format::Oci,
            )
            .push(&backing, &format!("{path}:1"));
            path
        })
        .collect();
    // The plan counts each index as at least 2 pulls: both fit in 4. They need 8.
    let hub = anonymous_hub(&backing, 4);
    let manifest = write_manifest(home.path(), "manifest.json", &entries(&hub.host(), &paths));

    let (output, took) = timed_pull(home.path(), &manifest, &target);
    assert_eq!(output.code(), 1, "{}", output.all());
    let report = output.json();
    let failed: Vec<String> = messages(&report)
        .into_iter()
        .zip(statuses(&report))
        .filter(|(_, (_, status))| status == "FAILED")
        .map(|(message, _)| message)
        .collect();
    assert!(!failed.is_empty(), "{report}");
    for message in &failed {
        assert!(
            message.contains("asks to wait 60 min (until ") && message.contains("pull rate limit"),
            "{message}"
        );
    }
    // Each refused manifest was asked for once: no retry sleeps, no asking again.
    let refused: Vec<String> = hub
        .requests()
        .iter()
        .filter(|request| request.status == 429)
        .map(|request| request.target.clone())
        .collect();
    assert!(!refused.is_empty());
    let mut distinct = refused.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), refused.len(), "retried: {refused:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// GHCR and Quay throttle with `429` and a `Retry-After` rather than a published budget
/// (dependabot/cli #380: ghcr.io's `toomanyrequests: retry-after: ...`): one longer than the
/// run waits ends the image at once, and the registry's later images fail without a request,
/// while the other registry's images go on.
#[test]
fn a_long_retry_after_fails_the_registrys_remaining_images_without_asking() {
    let (Some(source), Some(other), Some(target)) = (
        Registry::try_start(),
        Registry::try_start(),
        Registry::try_start(),
    ) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let throttled = push_images(&source, 900, 12);
    let free = push_images(&other, 950, 2);
    let proxy = FaultProxy::start_for(
        &source.host(),
        0,
        vec![FaultRule::new(Fault::too_many_requests(3600))
            .method("GET")
            .path_contains("/manifests/")
            .skip(3)],
    );
    let mut inputs = entries(&proxy.host(), &throttled);
    inputs.extend(entries(&other.host(), &free));
    let manifest = write_manifest(home.path(), "manifest.json", &inputs);

    // One blob transfer at a time: four images at once.
    let output = pull(home.path(), &manifest, &target, &["--jobs", "1"]);
    assert_eq!(output.code(), 1, "{}", output.all());
    let report = output.json();
    let found: HashMap<String, String> = statuses(&report).into_iter().collect();
    for input in &inputs[12..] {
        assert_eq!(found[input], "SUCCEEDED", "{input}");
    }
    // The three images whose manifests were served finish: the refusal answered a pull, so
    // only pulls are held back.
    assert_eq!(count(&report, "SUCCEEDED"), 3 + 2, "{report}");
    for message in messages(&report)
        .iter()
        .zip(statuses(&report))
        .filter(|(_, (_, status))| status == "FAILED")
        .map(|(message, _)| message)
    {
        assert!(message.contains("asks to wait 60 min"), "{message}");
    }
    // Of the nine refused images, at most the four in flight reached the registry; each of those
    // asked once.
    let asked: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|(method, target, status)| {
            method == "GET" && target.contains("/manifests/") && *status == 429
        })
        .map(|(_, target, _)| target)
        .collect();
    assert!(!asked.is_empty() && asked.len() <= 4, "{asked:?}");
    let mut distinct = asked.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), asked.len(), "retried: {asked:?}");
}

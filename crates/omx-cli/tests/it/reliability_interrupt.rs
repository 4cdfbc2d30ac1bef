//! A `pull` killed (SIGKILL) in the middle of a batch, then run again: the second run finishes
//! the rest, copies nothing that was already complete, and every image ends digest-identical;
//! the killed run has saved where the target holds the blobs of the images it completed.
//!
//! Counting fault proxies sit in front of both registries. One large layer is held mid-body
//! by the source proxy, so the kill always lands while that blob is half uploaded, after other
//! images (and other blobs of the stalled image) have completed.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use omx_testenv::{Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry};

use crate::util::*;

/// How long to wait for the first run to reach the state it is killed in: a guard against a
/// hang, not a measured time.
const SETUP_GUARD: Duration = Duration::from_secs(180);

/// A blob upload the target completed: `(repository, digest)`.
type CompletedUpload = (String, String);

/// Blob uploads the target proxy saw complete (`PUT ...?digest=...` answered 201).
fn completed_uploads(proxy: &FaultProxy) -> Vec<CompletedUpload> {
    proxy
        .records()
        .iter()
        .filter(|record| record.method == "PUT" && record.status == 201)
        .filter_map(|record| upload_of(&record.target))
        .collect()
}

/// Every blob upload the target proxy saw finish or start its final `PUT`, whatever the answer.
fn attempted_uploads(proxy: &FaultProxy) -> Vec<CompletedUpload> {
    proxy
        .records()
        .iter()
        .filter(|record| record.method == "PUT")
        .filter_map(|record| upload_of(&record.target))
        .collect()
}

/// `(repository, digest)` of a `PUT /v2/<repo>/blobs/uploads/<id>?...digest=<digest>`.
fn upload_of(target: &str) -> Option<CompletedUpload> {
    let (path, query) = target.split_once('?')?;
    let repository = path
        .strip_prefix("/v2/")?
        .split_once("/blobs/uploads/")?
        .0
        .to_string();
    let digest = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("digest="))?
        .replace("%3A", ":")
        .replace("%3a", ":");
    Some((repository, digest))
}

/// Tags the target proxy saw pushed: `(repository, tag)` of `PUT /v2/<repo>/manifests/<tag>`.
fn pushed_tags(proxy: &FaultProxy) -> BTreeSet<(String, String)> {
    proxy
        .records()
        .iter()
        .filter(|record| record.method == "PUT" && (200..300).contains(&record.status))
        .filter_map(|record| {
            let (repository, tag) = record
                .target
                .strip_prefix("/v2/")?
                .split_once("/manifests/")?;
            Some((repository.to_string(), tag.to_string()))
        })
        .collect()
}

struct Image {
    path: String,
    tag: String,
    fixture: ImageFixture,
}

#[test]
fn a_killed_pull_is_finished_by_the_next_run_without_copying_anything_twice() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let target = Registry::start();
    let home = tempfile::tempdir().unwrap();

    // Ten images: three of about 3 MB, seven small ones; distinct layers throughout, so every
    // upload belongs to exactly one image.
    let images: Vec<Image> = (0..10u64)
        .map(|index| {
            let large = index % 3 == 1;
            let layers = if large {
                LayerSpec::distinct(700 + index, 2, 1_500_000)
            } else {
                LayerSpec::distinct(700 + index, 2, 40_000)
            };
            Image {
                path: format!("batch/{}{index}", if large { "large" } else { "small" }),
                tag: format!("v{index}"),
                fixture: ImageFixture::single(&layers, Format::Oci),
            }
        })
        .collect();
    for image in &images {
        image
            .fixture
            .push(&source, &format!("{}:{}", image.path, image.tag));
    }
    // The first large image (second in the manifest) stalls half-way through a layer.
    let stalled = &images[1];
    let stalled_layer = stalled.fixture.images()[0].layers[0].digest.clone();
    let stalled_others: Vec<String> = {
        let image = &stalled.fixture.images()[0];
        vec![image.config.digest.clone(), image.layers[1].digest.clone()]
    };

    let source_proxy = FaultProxy::start(&source);
    source_proxy.add_rule(
        FaultRule::new(Fault::StallMidBody(Duration::from_secs(600)))
            .method("GET")
            .path_contains(&stalled_layer)
            .times(1),
    );
    let target_proxy = FaultProxy::start(&target);
    let entries: Vec<String> = images
        .iter()
        .map(|image| format!("{}/{}:{}", source_proxy.host(), image.path, image.tag))
        .collect();
    let manifest = write_manifest(home.path(), "manifest.json", &entries);
    let target_host = target_proxy.host();
    let args = [
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        &target_host,
        "--jobs",
        "2",
        "--format",
        "json",
    ];

    // Run 1, killed once the stall holds one upload open, other blobs of the stalled image are
    // in, and at least four images are complete.
    let log = home.path().join("run1.log");
    let mut child = isolated(home.path())
        .args(args)
        .command()
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    let repository_of = |image: &Image| target_repository(&source_proxy.host(), &image.path);
    let stalled_repository = repository_of(stalled);
    loop {
        let stall_begun = source_proxy
            .records()
            .iter()
            .any(|record| record.target.contains(&stalled_layer));
        let completed = completed_uploads(&target_proxy);
        let stalled_image_progressed = stalled_others
            .iter()
            .all(|digest| completed.contains(&(stalled_repository.clone(), digest.clone())));
        if stall_begun && stalled_image_progressed && pushed_tags(&target_proxy).len() >= 4 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "run 1 ended ({status}) before it could be interrupted:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < SETUP_GUARD,
            "run 1 never reached the interruption point; requests: {:?}",
            target_proxy.requests()
        );
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "run 1 was killed, not finished");
    // Requests the dead client had fully sent may still be committing behind the proxy; the
    // state to compare with is the one after they land.
    let mut seen = target_proxy.requests().len();
    loop {
        thread::sleep(Duration::from_millis(200));
        let now = target_proxy.requests().len();
        if now == seen {
            break;
        }
        seen = now;
    }

    // What the target holds after the kill, asked of the registry itself.
    let complete_before: BTreeSet<usize> = (0..images.len())
        .filter(|&index| {
            let image = &images[index];
            served_digest(&target, &repository_of(image), &image.tag).is_some()
        })
        .collect();
    let blobs_before: BTreeSet<CompletedUpload> = images
        .iter()
        .flat_map(|image| {
            let manifest = &image.fixture.images()[0];
            std::iter::once(&manifest.config)
                .chain(&manifest.layers)
                .map(|blob| (repository_of(image), blob.digest.clone()))
        })
        .filter(|(repository, digest)| holds_blob(&target, repository, digest))
        .collect();
    assert!(
        !complete_before.contains(&1)
            && !blobs_before.contains(&(stalled_repository.clone(), stalled_layer.clone())),
        "the stalled image cannot have been completed"
    );
    assert!(
        complete_before.len() >= 4 && complete_before.len() < images.len(),
        "run 1 was killed mid-batch: {complete_before:?}"
    );
    // Where the target holds blobs, run 1 saved as its images finished, not only at an end it
    // never reached: the blobs of images it completed are in the cache its resume reads.
    let cache_file = home
        .path()
        .join(".cache/omx-ecr-helper/blob-locations/locations.json");
    let cache: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&cache_file)
            .unwrap_or_else(|e| panic!("run 1 left no {}: {e}", cache_file.display())),
    )
    .expect("the blob-location cache is JSON");
    let known = &cache["registries"][target_host.as_str()];
    let recorded = |repository: &str, digest: &str| {
        known[digest]
            .as_array()
            .is_some_and(|homes| homes.iter().any(|home| home["repository"] == repository))
    };
    let remembered = complete_before.iter().any(|&index| {
        let image = &images[index];
        let manifest = &image.fixture.images()[0];
        std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .all(|blob| recorded(&repository_of(image), &blob.digest))
    });
    assert!(
        remembered,
        "no completed image's blobs in what run 1 saved: {cache}"
    );

    // Run 2: nothing held back.
    source_proxy.clear_rules();
    target_proxy.clear_requests();
    let output = run_isolated(home.path(), &args);
    assert_eq!(output.code(), 0, "{}", output.all());
    let report = output.json();
    let by_input: HashMap<String, String> = statuses(&report).into_iter().collect();
    for (index, input) in entries.iter().enumerate() {
        let expected = if complete_before.contains(&index) {
            "SKIPPED"
        } else {
            "SUCCEEDED"
        };
        assert_eq!(by_input[input], expected, "{input}: {report}");
    }

    // Nothing complete was copied again: no blob upload into a repository that already held
    // it, and no tag pushed twice.
    let run2_uploads = attempted_uploads(&target_proxy);
    let repeated: Vec<&CompletedUpload> = run2_uploads
        .iter()
        .filter(|upload| blobs_before.contains(*upload))
        .collect();
    assert!(repeated.is_empty(), "blobs uploaded again: {repeated:?}");
    let repushed: Vec<(String, String)> = pushed_tags(&target_proxy)
        .into_iter()
        .filter(|(repository, tag)| {
            complete_before.iter().any(|&index| {
                repository_of(&images[index]) == *repository && images[index].tag == *tag
            })
        })
        .collect();
    assert!(repushed.is_empty(), "tags pushed again: {repushed:?}");
    // Of the stalled image only the interrupted blob was missing, so it is all that is sent now.
    let stalled_uploads: Vec<&CompletedUpload> = run2_uploads
        .iter()
        .filter(|(repository, _)| *repository == stalled_repository)
        .collect();
    assert_eq!(
        stalled_uploads,
        [&(stalled_repository.clone(), stalled_layer.clone())]
    );

    for image in &images {
        assert_eq!(
            served_digest(&target, &repository_of(image), &image.tag).as_deref(),
            Some(image.fixture.digest()),
            "{}",
            image.path
        );
    }
    println!(
        "interrupted run: {} of {} images and {} blobs were complete at the kill; \
         run 2 uploaded {} blob(s)",
        complete_before.len(),
        images.len(),
        blobs_before.len(),
        run2_uploads.len()
    );
}

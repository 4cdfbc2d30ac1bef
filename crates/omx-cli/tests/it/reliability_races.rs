//! Races: one repository with many tags in one manifest (shared layers, one engine), and two
//! `pull` processes on the same manifest at once (two engines pushing the same blobs and tags
//! into the same repository). Both must end correct: exit 0, every image present and identical.

use std::process::{Child, Stdio};

use omx_testenv::{Format, ImageFixture, LayerSpec, OmxCommand, OmxOutput, Registry};

use crate::util::*;

const TAGS: usize = 8;

/// Eight tags of one repository: a shared base layer (as real tags of one tool share theirs)
/// and a distinct top layer each.
fn push_tags(source: &Registry) -> Vec<(String, String)> {
    let base = LayerSpec::new(31, 150_000);
    (0..TAGS)
        .map(|index| {
            let mut layers = vec![base];
            layers.extend(LayerSpec::distinct(40 + index as u64, 1, 60_000));
            let format = if index % 2 == 0 {
                Format::Oci
            } else {
                Format::DockerV2
            };
            let tag = format!("1.{index}");
            let digest =
                ImageFixture::single(&layers, format).push(source, &format!("lab/tool:{tag}"));
            (tag, digest)
        })
        .collect()
}

fn spawn_pull(
    home: &std::path::Path,
    manifest: &std::path::Path,
    target: &str,
    jobs: &str,
) -> (OmxCommand, Child) {
    let command = isolated(home).args([
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        target,
        "--jobs",
        jobs,
        "--format",
        "json",
    ]);
    let child = command
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    (command, child)
}

fn assert_every_tag_identical(target: &Registry, repository: &str, tags: &[(String, String)]) {
    for (tag, digest) in tags {
        assert_eq!(
            served_digest(target, repository, tag).as_deref(),
            Some(digest.as_str()),
            "{repository}:{tag}"
        );
    }
}

#[test]
fn many_tags_of_one_repository_in_one_manifest() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let target = Registry::start();
    let home = tempfile::tempdir().unwrap();
    let tags = push_tags(&source);
    let entries: Vec<String> = tags
        .iter()
        .map(|(tag, _)| format!("{}/lab/tool:{tag}", source.host()))
        .collect();
    let manifest = write_manifest(home.path(), "manifest.json", &entries);

    let output = run_isolated(
        home.path(),
        &[
            "pull",
            manifest.to_str().unwrap(),
            "--registry",
            &target.host(),
            "--jobs",
            "8",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.code(), 0, "{}", output.all());
    let report = output.json();
    for (input, status) in statuses(&report) {
        assert_eq!(status, "SUCCEEDED", "{input}: {report}");
    }
    let repository = target_repository(&source.host(), "lab/tool");
    assert_every_tag_identical(&target, &repository, &tags);
    // The shared base layer travelled once (plus each tag's config and top layer): the other
    // tags found it in place.
    let uploads = target
        .log()
        .lines()
        .filter(|line| line.contains("\"PUT /v2/") && line.contains("/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 1 + 2 * TAGS, "{}", target.log());
}

/// Two `pull` processes on one manifest at once, in rounds against fresh targets. distribution
/// 2.8's filesystem storage rewrites a blob's link file in place (distribution 3 writes a
/// temporary file and renames it), so a manifest push that reads it while the other process
/// re-links the blob is refused with `MANIFEST_BLOB_UNKNOWN` or `DIGEST_INVALID`: the copy engine
/// must re-check and push again rather than fail the image.
#[test]
fn two_pulls_of_one_manifest_at_once_both_exit_0_and_leave_every_image_identical() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let tags = push_tags(&source);
    let mut entries: Vec<String> = tags
        .iter()
        .map(|(tag, _)| format!("{}/lab/tool:{tag}", source.host()))
        .collect();
    // Another repository too, so the two processes also race across repositories.
    let other = ImageFixture::single(&LayerSpec::distinct(77, 2, 80_000), Format::Oci)
        .push(&source, "lab/other:2");
    entries.push(format!("{}/lab/other:2", source.host()));
    let manifest = write_manifest(home.path(), "manifest.json", &entries);
    let tool = target_repository(&source.host(), "lab/tool");
    let other_repository = target_repository(&source.host(), "lab/other");

    // Each round against a fresh target, with different concurrency on either side, so the two
    // processes interleave differently.
    for (round, (jobs_a, jobs_b)) in [("8", "8"), ("1", "8"), ("4", "2")].into_iter().enumerate() {
        let target = Registry::start();
        let first = spawn_pull(home.path(), &manifest, &target.host(), jobs_a);
        let second = spawn_pull(home.path(), &manifest, &target.host(), jobs_b);
        for (command, child) in [first, second] {
            let output = OmxOutput::of(&command, child.wait_with_output().unwrap());
            let code = output.code();
            let report = output.json();
            for image in report["images"].as_array().unwrap() {
                let status = image["status"].as_str().unwrap();
                assert!(
                    status == "SUCCEEDED" || status == "SKIPPED",
                    "round {round}: {} {status}: {}",
                    image["input"],
                    image["message"]
                );
            }
            assert_eq!(code, 0, "round {round}:\n{}", output.all());
        }
        // Whatever each process reported, together they left every image complete.
        assert_every_tag_identical(&target, &tool, &tags);
        assert_eq!(
            served_digest(&target, &other_repository, "2"),
            Some(other.clone()),
            "round {round}"
        );
        // And a later run finds nothing left to do.
        let output = run_isolated(
            home.path(),
            &[
                "pull",
                manifest.to_str().unwrap(),
                "--registry",
                &target.host(),
                "--format",
                "json",
            ],
        );
        assert_eq!(output.code(), 0, "{}", output.all());
        for (input, status) in statuses(&output.json()) {
            assert_eq!(status, "SKIPPED", "round {round}: {input}");
        }
    }
}

//! The fault suite: one batch of images copied again and again, each run through fresh
//! fault-injecting proxies on a seeded random schedule (mid-blob resets, stalls, 429 with
//! `Retry-After` 0 and 1, 500/502/503, truncated bodies, corrupted bytes).
//!
//! Whatever the schedule, every image of every run must end one of two ways: complete at the
//! target and digest-identical to the source, or reported failed with nothing under its tag.
//! One image of the batch is poisoned (a layer always arrives corrupted) so the second branch is
//! exercised on every run, not only when the dice say so.
//!
//! Run with `--nocapture` to see the counts.

use omx_core::report::error_chain;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use omx_core::Reference;
use omx_registry::{
    ClientConfig, CopyEngine, CopyError, CopyOptions, CopyReport, ProgressEvent, ProgressSink,
    RegistryClient, RetryPolicy,
};
use omx_testenv::registry_state::head_manifest;
use omx_testenv::{
    http_request, Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry,
};

const RUNS: u64 = 20;
const PARALLEL_RUNS: u64 = 2;
const HEALTHY_IMAGES: usize = 20;
const POISONED_TAG: &str = "suite/poisoned:1";

/// One image of the batch, as pushed to the source.
struct BatchImage {
    repo_and_tag: String,
    fixture: ImageFixture,
}

impl BatchImage {
    fn repository(&self) -> &str {
        self.repo_and_tag.split_once(':').expect("repo:tag").0
    }

    fn tag(&self) -> &str {
        self.repo_and_tag.split_once(':').expect("repo:tag").1
    }

    /// Every manifest (by digest) and blob (digest, size) the image consists of.
    fn contents(&self) -> (Vec<String>, Vec<(String, u64)>) {
        let mut manifests = vec![self.fixture.digest().to_string()];
        let mut blobs = Vec::new();
        for image in self.fixture.images() {
            manifests.push(image.manifest.digest.clone());
            blobs.push((image.config.digest.clone(), image.config.size));
            for layer in &image.layers {
                blobs.push((layer.digest.clone(), layer.size));
            }
        }
        manifests.dedup();
        (manifests, blobs)
    }
}

/// Twenty small images in both formats, one of them a two-platform index, some sharing a base
/// layer (so blob dedupe and cross-repository mounts run under faults too).
fn healthy_batch() -> Vec<BatchImage> {
    let shared_base = LayerSpec::new(4242, 60_000);
    (0..HEALTHY_IMAGES)
        .map(|index| {
            let size = 20_000 + 30_000 * (index as u64 % 4);
            let mut layers = LayerSpec::distinct(100 + index as u64, 2, size);
            if index % 4 == 0 {
                layers.insert(0, shared_base);
            }
            let format = if index % 2 == 0 {
                Format::Oci
            } else {
                Format::DockerV2
            };
            let fixture = if index == 7 {
                ImageFixture::index(
                    &[("linux", "amd64"), ("linux", "arm64/v8")],
                    &layers,
                    format,
                )
            } else {
                ImageFixture::single(&layers, format)
            };
            BatchImage {
                repo_and_tag: format!("suite/img{index}:{}", 1 + index % 3),
                fixture,
            }
        })
        .collect()
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The seeded schedule in front of the source: every kind of damage a download can suffer.
/// The poison rule comes first, so it fires on every request for that layer.
fn source_rules(poisoned_layer: &str) -> Vec<FaultRule> {
    let blobs = "/blobs/";
    let manifests = "/manifests/";
    vec![
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains(poisoned_layer),
        FaultRule::new(Fault::ResetMidBody)
            .method("GET")
            .path_contains(blobs)
            .probability(0.04),
        FaultRule::new(Fault::TruncateBody)
            .method("GET")
            .path_contains(blobs)
            .probability(0.03),
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains(blobs)
            .probability(0.03),
        FaultRule::new(Fault::StallMidBody(ms(40)))
            .method("GET")
            .path_contains(blobs)
            .probability(0.03),
        FaultRule::new(Fault::status(500))
            .path_contains(blobs)
            .probability(0.02),
        FaultRule::new(Fault::CorruptByte)
            .method("GET")
            .path_contains(manifests)
            .probability(0.03),
        FaultRule::new(Fault::status(502))
            .path_contains(manifests)
            .probability(0.03),
        FaultRule::new(Fault::too_many_requests(0))
            .path_contains(manifests)
            .probability(0.03),
        // Retry-After: 1 really waits a second, so once per run at most.
        FaultRule::new(Fault::too_many_requests(1))
            .path_contains(manifests)
            .probability(0.03)
            .times(1),
        FaultRule::new(Fault::Reset)
            .path_contains(manifests)
            .probability(0.04),
        FaultRule::new(Fault::Stall(ms(40)))
            .path_contains(manifests)
            .probability(0.04),
    ]
}

/// The schedule in front of the target: refusals only. These never reach the registry, so a
/// failure they cause can never leave a committed manifest behind a "failed" report (a fault
/// that loses the response of a committed push would make "failed" and "tagged" both true,
/// correctly, and blur the invariant).
fn target_rules() -> Vec<FaultRule> {
    vec![
        FaultRule::new(Fault::status(503)).probability(0.03),
        FaultRule::new(Fault::too_many_requests(0)).probability(0.02),
        FaultRule::new(Fault::Reset).probability(0.02),
    ]
}

/// Short waits: the schedule, not the backoff, is under test.
fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig {
        retry: RetryPolicy {
            max_attempts: 6,
            initial_backoff: ms(5),
            max_backoff: ms(50),
            max_retry_after: Duration::from_secs(1),
            throttle_window: Duration::ZERO,
        },
        ..ClientConfig::default()
    })
    .expect("client")
}

/// Counts blob transfers restarted after a failure.
#[derive(Default)]
struct RestartCounter {
    restarts: AtomicUsize,
}

impl ProgressSink for RestartCounter {
    fn event(&self, event: ProgressEvent<'_>) {
        if let ProgressEvent::BlobRetrying { .. } = event {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Status and size of a blob in the target registry itself.
fn head_blob(registry: &Registry, repository: &str, digest: &str) -> (u16, Option<u64>) {
    let response = http_request(
        &registry.host(),
        "HEAD",
        &format!("/v2/{repository}/blobs/{digest}"),
        &[],
        &[],
    )
    .expect("the target registry answers");
    let size = response
        .header("content-length")
        .and_then(|length| length.parse().ok());
    (response.status, size)
}

/// Checks one image's end state at the target; returns a description of any violation.
fn check_invariant(
    target: &Registry,
    image: &BatchImage,
    outcome: &Result<CopyReport, CopyError>,
) -> Option<String> {
    let repository = image.repository();
    let (status, digest) = head_manifest(target, repository, image.tag());
    match outcome {
        Ok(report) => {
            if report.digest.to_string() != image.fixture.digest() {
                return Some(format!(
                    "{}: reported digest {} but the source has {}",
                    image.repo_and_tag,
                    report.digest,
                    image.fixture.digest()
                ));
            }
            if status != 200 || digest.as_deref() != Some(image.fixture.digest()) {
                return Some(format!(
                    "{}: reported copied, but the target tag answers {status} {digest:?}",
                    image.repo_and_tag
                ));
            }
            let (manifests, blobs) = image.contents();
            for manifest in &manifests {
                let (status, served) = head_manifest(target, repository, manifest);
                if status != 200 || served.as_deref() != Some(manifest) {
                    return Some(format!(
                        "{}: manifest {manifest} answers {status} {served:?}",
                        image.repo_and_tag
                    ));
                }
            }
            for (blob, size) in &blobs {
                // distribution hashes what it receives and refuses a commit under the wrong
                // digest, so a present blob of the right size is the right content.
                let (status, served) = head_blob(target, repository, blob);
                if status != 200 || served != Some(*size) {
                    return Some(format!(
                        "{}: blob {blob} answers {status} with size {served:?}, expected {size}",
                        image.repo_and_tag
                    ));
                }
            }
            None
        }
        Err(error) => {
            let message = error_chain(error);
            if !message.contains(&format!("/{}", image.repo_and_tag)) {
                return Some(format!(
                    "{}: the failure does not name the image: {message}",
                    image.repo_and_tag
                ));
            }
            (status != 404).then(|| {
                format!(
                    "{}: reported failed ({message}) but the target tag answers {status} {digest:?}",
                    image.repo_and_tag
                )
            })
        }
    }
}

/// Totals over all runs.
#[derive(Default)]
struct Tally {
    copies: usize,
    succeeded: usize,
    healthy_failures: Vec<String>,
    poisoned_failures: usize,
    blob_restarts: usize,
    requests: usize,
    faults_by_kind: BTreeMap<String, usize>,
    violations: Vec<String>,
}

impl Tally {
    fn count_faults(&mut self, proxy: &FaultProxy, side: &str) {
        for record in proxy.records() {
            self.requests += 1;
            if let Some(fault) = record.fault {
                let kind = format!("{fault:?}");
                let kind = kind.split('(').next().unwrap_or(&kind);
                let key = match fault {
                    Fault::Status(code, retry_after) => {
                        format!("{side} {kind} {code} retry-after={retry_after:?}")
                    }
                    _ => format!("{side} {kind}"),
                };
                *self.faults_by_kind.entry(key).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.copies += other.copies;
        self.succeeded += other.succeeded;
        self.healthy_failures.extend(other.healthy_failures);
        self.poisoned_failures += other.poisoned_failures;
        self.blob_restarts += other.blob_restarts;
        self.requests += other.requests;
        for (kind, count) in other.faults_by_kind {
            *self.faults_by_kind.entry(kind).or_default() += count;
        }
        self.violations.extend(other.violations);
    }

    fn faults(&self) -> usize {
        self.faults_by_kind.values().sum()
    }

    /// Whether a fault whose key holds `words` (whole words: "source Stall" is not
    /// "source StallMidBody") fired.
    fn kind_fired(&self, words: &str) -> bool {
        let words = format!(" {words} ");
        self.faults_by_kind
            .iter()
            .any(|(kind, count)| format!(" {kind} ").contains(&words) && *count > 0)
    }
}

/// One run: a fresh target and fresh proxies (seeded with the run number), the whole batch
/// copied at once, then every image's end state checked.
fn run_once(
    run: u64,
    runtime: &tokio::runtime::Runtime,
    source: &Registry,
    batch: &[BatchImage],
    poisoned_layer: &str,
) -> Tally {
    let mut tally = Tally::default();
    let target = Registry::start();
    let source_proxy = FaultProxy::start_for(&source.host(), run, source_rules(poisoned_layer));
    let target_proxy = FaultProxy::start_for(&target.host(), run ^ 0x5eed, target_rules());
    let engine = CopyEngine::new(
        client(),
        CopyOptions {
            jobs: 8,
            ..CopyOptions::default()
        },
    );
    let restarts = RestartCounter::default();
    let outcomes: Vec<(usize, Result<CopyReport, CopyError>)> = runtime.block_on(
        stream::iter(batch.iter().enumerate())
            .map(|(index, image)| {
                let source = reference(&format!("{}/{}", source_proxy.host(), image.repo_and_tag));
                let target = reference(&format!("{}/{}", target_proxy.host(), image.repo_and_tag));
                let engine = &engine;
                let restarts = &restarts;
                async move { (index, engine.copy(&source, &target, restarts).await) }
            })
            .buffer_unordered(8)
            .collect(),
    );

    let mut run_failures = 0;
    for (index, outcome) in &outcomes {
        let image = &batch[*index];
        tally.copies += 1;
        if let Some(violation) = check_invariant(&target, image, outcome) {
            tally.violations.push(format!("run {run}: {violation}"));
        }
        match outcome {
            Ok(_) if image.repo_and_tag == POISONED_TAG => tally
                .violations
                .push(format!("run {run}: the poisoned image was reported copied")),
            Ok(_) => tally.succeeded += 1,
            Err(_) if image.repo_and_tag == POISONED_TAG => tally.poisoned_failures += 1,
            Err(error) => tally.healthy_failures.push(format!(
                "run {run}: {}: {}",
                image.repo_and_tag,
                error_chain(error)
            )),
        }
        run_failures += usize::from(outcome.is_err());
    }
    // The corrupted layer was never committed anywhere in the target.
    let (status, _) = head_blob(&target, "suite/poisoned", poisoned_layer);
    if status != 404 {
        tally.violations.push(format!(
            "run {run}: the corrupted layer {poisoned_layer} is stored at the target ({status})"
        ));
    }
    tally.blob_restarts = restarts.restarts.load(Ordering::Relaxed);
    tally.count_faults(&source_proxy, "source");
    tally.count_faults(&target_proxy, "target");
    println!(
        "run {run:>2}: {} images, {} faults injected, {} blob restarts, {run_failures} failed",
        outcomes.len(),
        tally.faults(),
        tally.blob_restarts,
    );
    tally
}

#[test]
fn every_image_ends_identical_or_failed_with_nothing_tagged_whatever_the_faults() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let mut batch = healthy_batch();
    let poisoned = BatchImage {
        repo_and_tag: POISONED_TAG.to_string(),
        fixture: ImageFixture::single(&LayerSpec::distinct(999, 2, 30_000), Format::Oci),
    };
    let poisoned_layer = poisoned.fixture.images()[0].layers[1].digest.clone();
    batch.push(poisoned);
    // skopeo pushes dominate the set-up; two at a time keeps both cores busy.
    std::thread::scope(|scope| {
        for half in batch.chunks(batch.len().div_ceil(2)) {
            let source = &source;
            scope.spawn(move || {
                for image in half {
                    let pushed = image.fixture.push(source, &image.repo_and_tag);
                    assert_eq!(pushed, image.fixture.digest());
                }
            });
        }
    });

    // Two runs at a time, each with its own target, proxies and runtime: the runs are
    // independent, and the registries are latency- rather than CPU-bound.
    let mut tally = Tally::default();
    let lanes: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_RUNS)
            .map(|lane| {
                let (source, batch, poisoned_layer) = (&source, &batch, &poisoned_layer);
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("tokio runtime");
                    let mut lane_tally = Tally::default();
                    for run in (lane..RUNS).step_by(PARALLEL_RUNS as usize) {
                        lane_tally.merge(run_once(run, &runtime, source, batch, poisoned_layer));
                    }
                    lane_tally
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a run panicked"))
            .collect()
    });
    for lane in lanes {
        tally.merge(lane);
    }

    println!(
        "fault suite: {RUNS} runs x {} images = {} copies; {} requests through the proxies; \
         {} faults injected; {} blob restarts seen; {} succeeded; {} failed \
         ({} poisoned as designed, {} healthy)",
        batch.len(),
        tally.copies,
        tally.requests,
        tally.faults(),
        tally.blob_restarts,
        tally.succeeded,
        tally.poisoned_failures + tally.healthy_failures.len(),
        tally.poisoned_failures,
        tally.healthy_failures.len(),
    );
    for (kind, count) in &tally.faults_by_kind {
        println!("  {count:>5}  {kind}");
    }
    for failure in &tally.healthy_failures {
        println!("  healthy failure: {failure}");
    }

    assert!(
        tally.violations.is_empty(),
        "invariant violated:\n{}",
        tally.violations.join("\n")
    );
    assert_eq!(tally.poisoned_failures, RUNS as usize);
    // The schedule really ran every kind of fault.
    for kind in [
        "source ResetMidBody",
        "source TruncateBody",
        "source CorruptByte",
        "source StallMidBody",
        "source Stall",
        "source Reset",
        "Status 429 retry-after=Some(0)",
        "Status 429 retry-after=Some(1)",
        "Status 500",
        "Status 502",
        "Status 503",
        "target Reset",
    ] {
        assert!(
            tally.kind_fired(kind),
            "no {kind} fault fired: {:?}",
            tally.faults_by_kind
        );
    }
    // Six attempts against a ~15% fault rate: a healthy image failing is rare; many failing
    // would mean retries are not doing their job (and the invariant would hold vacuously).
    let healthy_copies = RUNS as usize * HEALTHY_IMAGES;
    assert!(
        tally.healthy_failures.len() * 20 <= healthy_copies,
        "{} of {healthy_copies} healthy copies failed:\n{}",
        tally.healthy_failures.len(),
        tally.healthy_failures.join("\n")
    );
}

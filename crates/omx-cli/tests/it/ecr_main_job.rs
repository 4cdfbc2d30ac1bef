//! The main job end to end on the ECR stand-in (`omx_testenv::EcrStandIn`), which behaves as
//! real ECR is documented to: `setup` → `pull` → `verify` → `map` for a manifest mixing
//! pull-through-cache images by tag and by digest, copied single and multi-arch images (with
//! attestation children `unknown/unknown`), an immutable tag and a missing image, while tokens
//! die after a few seconds (as ECR tokens do when the credentials behind them expire) and
//! PutImage is throttled. Every image must end identical to its source or FAILED with its reason.
//!
//! STS (the caller's account) is moto's; ECR's control plane and registry are the stand-in's.

use std::time::Duration;

use omx_core::policy::omics_grants;
use omx_testenv::OmxOutput;
use omx_testenv::{EcrStandIn, Format, ImageFixture, LayerSpec, Moto, Registry, RepositoryOrigin};
use serde_json::{json, Value};

use crate::util::text;

struct World {
    moto: Moto,
    ecr: EcrStandIn,
    /// The upstream a pull-through-cache rule caches (stands in for quay.io).
    cache_upstream: Registry,
    /// A registry images are copied from.
    source: Registry,
    home: tempfile::TempDir,
    namespaces: std::path::PathBuf,
}

impl World {
    fn start(
        build: impl FnOnce(omx_testenv::EcrBuilder) -> omx_testenv::EcrBuilder,
    ) -> Option<World> {
        let moto = Moto::try_start()?;
        let cache_upstream = Registry::try_start()?;
        let source = Registry::try_start()?;
        let ecr =
            build(EcrStandIn::builder().upstream(&cache_upstream.host(), &cache_upstream.host()))
                .start();
        let home = tempfile::tempdir().unwrap();
        let namespaces = home.path().join("namespaces.json");
        let rules = json!({"rules": [{"hosts": [cache_upstream.host()], "namespace": "lab",
                                      "method": "pull-through-cache"}]});
        std::fs::write(&namespaces, rules.to_string()).unwrap();
        Some(World {
            moto,
            ecr,
            cache_upstream,
            source,
            home,
            namespaces,
        })
    }

    fn run(&self, args: &[&str]) -> OmxOutput {
        crate::util::on_ecr(args, &self.moto, &self.ecr, self.home.path())
    }

    fn manifest(&self, entries: &[String]) -> std::path::PathBuf {
        let path = self.home.path().join("container_image_manifest.json");
        std::fs::write(&path, json!({"manifest": entries}).to_string()).unwrap();
        path
    }

    fn tag_digest(&self, repository: &str, tag: &str) -> Option<String> {
        let view = self.ecr.repository(repository)?;
        view.image_tags
            .into_iter()
            .find(|(t, _)| t == tag)
            .map(|(_, digest)| digest)
    }
}

/// Blob uploads (and mount attempts) the stand-in answered for `repository`.
fn uploads_to(ecr: &EcrStandIn, repository: &str) -> usize {
    let prefix = format!("/v2/{repository}/blobs/uploads");
    ecr.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.target.starts_with(&prefix))
        .count()
}

fn single(seed: u64) -> ImageFixture {
    ImageFixture::single(&LayerSpec::distinct(seed, 2, 30_000), Format::Oci)
}

fn multi_arch(seed: u64) -> ImageFixture {
    // Build attestations ride in indexes as `unknown/unknown` children.
    ImageFixture::index(
        &[
            ("linux", "amd64"),
            ("linux", "arm64"),
            ("unknown", "unknown"),
        ],
        &LayerSpec::distinct(seed, 1, 20_000),
        Format::Oci,
    )
}

fn status_of<'a>(report: &'a Value, input: &str) -> (&'a str, &'a str) {
    let image = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|image| image["input"] == input)
        .unwrap_or_else(|| panic!("{input} not in {report}"));
    (
        image["status"].as_str().unwrap(),
        image["message"].as_str().unwrap_or_default(),
    )
}

#[test]
fn setup_pull_verify_map_on_ecr_with_expiring_tokens_and_throttling() {
    let Some(world) = World::start(|ecr| {
        ecr.put_image_rate(3.0)
            .index_children_delay(Duration::from_millis(1500))
    }) else {
        return;
    };
    let (cache, src) = (world.cache_upstream.host(), world.source.host());
    let src_namespace = src.replace(':', "-");

    // Upstream content.
    let cached_tag = single(1).push(&world.cache_upstream, "bio/by-tag:1");
    let cached_pinned = multi_arch(2).push(&world.cache_upstream, "bio/pinned:2");
    let cached_digest_only = single(3).push(&world.cache_upstream, "bio/digest-only:3");
    let cached_multi = multi_arch(8).push(&world.cache_upstream, "bio/multi:1");
    let copied = single(4).push(&world.source, "team/tool:1");
    let copied_multi = multi_arch(5).push(&world.source, "team/multi:1");
    let fixed_new = single(6).push(&world.source, "team/fixed:1");

    // An immutable repository whose tag 1 already holds another image.
    let fixed_repository = format!("{src_namespace}/team/fixed");
    let (status, answer) = world.ecr.call(
        "CreateRepository",
        json!({"repositoryName": fixed_repository, "imageTagMutability": "IMMUTABLE"}),
    );
    assert_eq!(status, 200, "{answer}");

    // setup: the rule, template and registry policy for the local pull-through upstream.
    let namespaces = world.namespaces.to_str().unwrap().to_string();
    let setup = world.run(&["setup", "--namespaces", &namespaces, "--format", "json"]);
    assert!(
        setup.status.success(),
        "{}\n{}",
        text(&setup.stdout),
        text(&setup.stderr)
    );
    let (_, rules) = world.ecr.call(
        "DescribePullThroughCacheRules",
        json!({"ecrRepositoryPrefixes": ["lab"]}),
    );
    assert_eq!(
        rules["pullThroughCacheRules"][0]["upstreamRegistryUrl"],
        cache
    );

    // The old image under the immutable tag, pushed by someone else before.
    let old = world
        .ecr
        .push(&single(7), &format!("{fixed_repository}:1"))
        .unwrap();
    assert_eq!(
        world.tag_digest(&fixed_repository, "1").as_deref(),
        Some(old.as_str())
    );

    let uploads_before_pull = uploads_to(&world.ecr, &fixed_repository);
    // From now on tokens die 2 s after they are issued, as when the SSO session behind them ends.
    world.ecr.set_token_lifetime(Duration::from_secs(2));
    let inputs = vec![
        format!("{cache}/bio/by-tag:1"),
        format!("{cache}/bio/pinned:2@{cached_pinned}"),
        format!("{cache}/bio/digest-only@{cached_digest_only}"),
        format!("{src}/team/tool:1"),
        format!("{src}/team/multi:1"),
        format!("{src}/team/fixed:1"),
        format!("{src}/team/missing:9"),
        format!("{cache}/bio/multi:1"),
    ];
    let manifest = world.manifest(&inputs);
    let manifest = manifest.to_str().unwrap();
    let registry = format!("ecr://{}/us-east-1", world.ecr.account());
    let map_file = world.home.path().join("image-map.json");
    // A fast run can end within a token's 2 s: once the first image is in, the credentials
    // behind every token issued so far expire too, so the run meets an expired token for sure.
    let pushed_once = std::sync::atomic::AtomicBool::new(false);
    let puts_before_pull = world.ecr.counters().puts_accepted;
    let pull = std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if world.ecr.counters().puts_accepted > puts_before_pull {
                    world.ecr.expire_tokens();
                    pushed_once.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        world.run(&[
            "pull",
            manifest,
            "--registry",
            &registry,
            "--namespaces",
            &namespaces,
            "--refresh",
            "--format",
            "json",
            "--output-map",
            map_file.to_str().unwrap(),
        ])
    });
    assert!(pushed_once.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(pull.status.code(), Some(1), "{}", text(&pull.stderr));
    let first = pull.json();
    for (input, wanted) in [
        (&inputs[0], "SUCCEEDED"),
        (&inputs[1], "SUCCEEDED"),
        (&inputs[2], "SUCCEEDED"),
        (&inputs[3], "SUCCEEDED"),
        (&inputs[4], "SUCCEEDED"),
        (&inputs[5], "FAILED"),
        (&inputs[6], "FAILED"),
        (&inputs[7], "SUCCEEDED"),
    ] {
        let (status, message) = status_of(&first, input);
        assert_eq!(status, wanted, "{input}: {message}\n{}", text(&pull.stderr));
    }
    // Identical to the source, every one.
    assert_eq!(
        world.tag_digest("lab/bio/by-tag", "1").as_deref(),
        Some(cached_tag.as_str())
    );
    assert_eq!(
        world.tag_digest("lab/bio/pinned", "2").as_deref(),
        Some(cached_pinned.as_str())
    );
    // An index primed by tag, its children (readable only after a delay) all cached.
    assert_eq!(
        world.tag_digest("lab/bio/multi", "1").as_deref(),
        Some(cached_multi.as_str())
    );
    assert_eq!(
        world.ecr.repository("lab/bio/multi").unwrap().digests.len(),
        4
    );
    let digest_only = world
        .ecr
        .repository("lab/bio/digest-only")
        .expect("copied in");
    assert!(digest_only.digests.contains(&cached_digest_only));
    let (_, message) = status_of(&first, &inputs[2]);
    assert!(
        message.contains("copied"),
        "says it was copied, not cached: {message}"
    );
    assert_eq!(
        world
            .tag_digest(&format!("{src_namespace}/team/tool"), "1")
            .as_deref(),
        Some(copied.as_str())
    );
    assert_eq!(
        world
            .tag_digest(&format!("{src_namespace}/team/multi"), "1")
            .as_deref(),
        Some(copied_multi.as_str())
    );
    // The immutable tag is refused before any transfer, and says why.
    let (_, message) = status_of(&first, &inputs[5]);
    assert!(message.contains("immutable"), "{message}");
    assert_eq!(
        uploads_to(&world.ecr, &fixed_repository),
        uploads_before_pull,
        "nothing is uploaded for a push ECR will refuse"
    );
    assert_eq!(
        world.tag_digest(&fixed_repository, "1").as_deref(),
        Some(old.as_str())
    );
    assert_ne!(old, fixed_new);
    let (_, message) = status_of(&first, &inputs[6]);
    assert!(message.contains("does not exist"), "{message}");

    // Cache repositories carry our tag and grant (from the template); copied ones too.
    for repository in ["lab/bio/by-tag", "lab/bio/pinned"] {
        let view = world.ecr.repository(repository).unwrap();
        assert_eq!(
            view.origin,
            RepositoryOrigin::PullThroughCache,
            "{repository}"
        );
        assert!(
            view.resource_tags
                .contains(&("createdBy".into(), "omx-ecr-helper".into())),
            "{repository}"
        );
        assert!(
            omics_grants(view.policy.as_deref().unwrap_or("{}")),
            "{repository}"
        );
    }
    let counters = world.ecr.counters();
    assert!(
        counters.puts_throttled > 0,
        "throttling was exercised: {counters:?}"
    );
    assert!(
        counters.expired_token_refusals > 0,
        "tokens expired mid-run: {counters:?}"
    );

    // verify: every good image is ready; the failed ones are reported.
    let good: Vec<String> = inputs[..5].to_vec();
    let good_manifest = world.manifest(&good);
    let verify = world.run(&[
        "verify",
        good_manifest.to_str().unwrap(),
        "--registry",
        &registry,
        "--namespaces",
        &namespaces,
        "--format",
        "json",
    ]);
    assert!(
        verify.status.success(),
        "{}\n{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );

    // map: the registry map HealthOmics takes.
    let map = world.run(&[
        "map",
        good_manifest.to_str().unwrap(),
        "--registry",
        &registry,
        "--namespaces",
        &namespaces,
        "--format",
        "registry-map",
    ]);
    assert!(map.status.success(), "{}", text(&map.stderr));
    let map: Value = serde_json::from_slice(&map.stdout).unwrap();
    let mappings = map["registryMappings"].as_array().unwrap();
    assert!(
        mappings
            .iter()
            .any(|m| m["upstreamRegistryUrl"] == cache && m["ecrRepositoryPrefix"] == "lab"),
        "{map}"
    );
}

#[test]
fn a_batch_of_multi_arch_images_under_a_tight_put_image_limit_all_arrive() {
    // 4 indexes of 3 children: 16 manifest pushes at 2 a second take 8 s of throttling, more
    // than a fixed number of quick retries survives (with `--throttle-window 0`, the old
    // behaviour, images end FAILED with 429).
    let Some(world) = World::start(|ecr| ecr.put_image_rate(2.0)) else {
        return;
    };
    let src = world.source.host();
    let mut inputs = Vec::new();
    let mut digests = Vec::new();
    for n in 0..4 {
        digests.push(multi_arch(40 + n).push(&world.source, &format!("team/multi-{n}:1")));
        inputs.push(format!("{src}/team/multi-{n}:1"));
    }
    let manifest = world.manifest(&inputs);
    let registry = format!("ecr://{}/us-east-1", world.ecr.account());
    let pull = world.run(&[
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        &registry,
        "--format",
        "json",
    ]);
    assert!(
        pull.status.success(),
        "{}\n{}",
        text(&pull.stdout),
        text(&pull.stderr)
    );
    let namespace = src.replace(':', "-");
    for (n, digest) in digests.iter().enumerate() {
        assert_eq!(
            world
                .tag_digest(&format!("{namespace}/team/multi-{n}"), "1")
                .as_deref(),
            Some(digest.as_str())
        );
    }
    assert!(world.ecr.counters().puts_throttled > 0);
}

#[test]
fn copy_into_ecr_creates_the_repository_as_pull_does_and_nothing_for_a_missing_image() {
    let Some(world) = World::start(|ecr| ecr) else {
        return;
    };
    let src = world.source.host();
    let pushed = single(60).push(&world.source, "team/tool:1");
    let ecr_host = world.ecr.registry_host();
    let copied = world.run(&[
        "copy",
        &format!("{src}/team/tool:1"),
        &format!("{ecr_host}/lab/tool:1"),
        "--quiet",
    ]);
    assert!(copied.status.success(), "{}", text(&copied.stderr));
    assert_eq!(text(&copied.stdout).trim(), pushed);
    let view = world.ecr.repository("lab/tool").expect("created");
    assert_eq!(
        view.resource_tags,
        vec![("createdBy".to_string(), "omx-ecr-helper".to_string())]
    );
    assert!(omics_grants(view.policy.as_deref().unwrap_or("{}")));
    assert_eq!(
        world.tag_digest("lab/tool", "1").as_deref(),
        Some(pushed.as_str())
    );

    let missing = world.run(&[
        "copy",
        &format!("{src}/team/missing:1"),
        &format!("{ecr_host}/lab/missing:1"),
        "--quiet",
    ]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("does not exist"),
        "{}",
        text(&missing.stderr)
    );
    assert!(world.ecr.repository("lab/missing").is_none());
}

/// A dual-stack registry host named on the command line is the host of every private URI.
/// (The SDK's own `AWS_USE_DUALSTACK_ENDPOINT` choice cannot be exercised here: the SDK refuses
/// it together with a custom endpoint, "Dualstack and custom endpoint are not supported".)
#[test]
fn a_dual_stack_registry_host_names_the_private_uris() {
    let Some(world) = World::start(|ecr| ecr) else {
        return;
    };
    let src = world.source.host();
    let pushed = single(70).push(&world.source, "team/tool:1");
    let manifest = world.manifest(&[format!("{src}/team/tool:1")]);
    let dual_stack = format!("{}.dkr-ecr.us-east-1.on.aws", world.ecr.account());
    let pull = world.run(&[
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        &dual_stack,
        "--format",
        "json",
    ]);
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    let report = pull.json();
    let target = report["images"][0]["target"].as_str().unwrap();
    assert!(target.starts_with(&format!("{dual_stack}/")), "{target}");
    assert_eq!(report["images"][0]["digest"], pushed);
}

/// `build` into ECR: the repository is created with our tag and the omics grant, the push meets
/// ECR's rules (repository first, PutImage throttled), what ECR reports is what was built, and
/// an unchanged source is skipped on the next run.
#[test]
fn build_into_ecr_creates_pushes_and_then_skips() {
    let Some(world) = World::start(|ecr| ecr.put_image_rate(2.0)) else {
        return;
    };
    let home = world.home.path();
    let bundle = home.join("tools/alpha");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    std::fs::write(bundle.join("hello.txt"), "hello\n").unwrap();
    let manifest = home.join("container_build_manifest.json");
    std::fs::write(
        &manifest,
        json!({"manifest": [{"source_uri": "tools/alpha", "target_image": "team/alpha:omics"}]})
            .to_string(),
    )
    .unwrap();
    let registry = format!("ecr://{}/us-east-1", world.ecr.account());
    let (store, work, logs) = (home.join("store"), home.join("work"), home.join("logs"));
    let args = [
        "build",
        manifest.to_str().unwrap(),
        "--registry",
        &registry,
        "--engine",
        "buildah",
        "--storage-root",
        store.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--log-dir",
        logs.to_str().unwrap(),
        "--format",
        "json",
    ];
    let first = world.run(&args);
    assert!(
        first.status.success(),
        "{}\n{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let built = first.json();
    assert_eq!(built["images"][0]["status"], "SUCCEEDED", "{built}");
    let view = world.ecr.repository("team/alpha").expect("created");
    assert!(view
        .resource_tags
        .contains(&("createdBy".into(), "omx-ecr-helper".into())));
    assert!(omics_grants(view.policy.as_deref().unwrap_or("{}")));
    let (_, described) = world.ecr.call(
        "DescribeImages",
        json!({"repositoryName": "team/alpha", "imageIds": [{"imageTag": "omics"}]}),
    );
    assert_eq!(
        described["imageDetails"][0]["imageDigest"],
        built["images"][0]["digest"]
    );

    let second = world.run(&args);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(second.json()["images"][0]["status"], "SKIPPED");
}

/// `--refresh` of a cached tag whose upstream moved says the cache is stale (ECR re-checks a
/// cached tag at most once per 24 hours); without it the cached tag is skipped.
#[test]
fn refresh_of_a_stale_cached_tag_says_why_it_cannot_be_refreshed_now() {
    let Some(world) = World::start(|ecr| ecr) else {
        return;
    };
    let cache = world.cache_upstream.host();
    let first = single(80).push(&world.cache_upstream, "bio/tool:1");
    let namespaces = world.namespaces.to_str().unwrap().to_string();
    let setup = world.run(&["setup", "--namespaces", &namespaces]);
    assert!(setup.status.success(), "{}", text(&setup.stderr));
    let manifest = world.manifest(&[format!("{cache}/bio/tool:1")]);
    let registry = format!("ecr://{}/us-east-1", world.ecr.account());
    let pull = |extra: &[&str]| {
        let mut args = vec![
            "pull",
            manifest.to_str().unwrap(),
            "--registry",
            &registry,
            "--namespaces",
            &namespaces,
            "--format",
            "json",
        ];
        args.extend(extra);
        world.run(&args)
    };
    let primed = pull(&[]);
    assert!(primed.status.success(), "{}", text(&primed.stderr));
    assert_eq!(
        world.tag_digest("lab/bio/tool", "1").as_deref(),
        Some(first.as_str())
    );

    let moved = single(81).push(&world.cache_upstream, "bio/tool:1");
    assert_ne!(first, moved);
    let skipped = pull(&[]);
    assert!(skipped.status.success(), "{}", text(&skipped.stderr));
    assert_eq!(skipped.json()["images"][0]["status"], "SKIPPED");
    let refreshed = pull(&["--refresh"]);
    assert_eq!(
        refreshed.status.code(),
        Some(1),
        "{}",
        text(&refreshed.stderr)
    );
    let image = &refreshed.json()["images"][0];
    assert_eq!(image["status"], "FAILED");
    let message = image["message"].as_str().unwrap();
    assert!(message.contains("24 hours"), "{message}");
    assert_eq!(
        world.tag_digest("lab/bio/tool", "1").as_deref(),
        Some(first.as_str())
    );
}

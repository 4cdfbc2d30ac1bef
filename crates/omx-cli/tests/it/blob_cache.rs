//! The blob-location cache across runs: a later run (another process) copying an image that
//! shares layers with one an earlier run copied mounts them from the earlier image's repository
//! instead of reading them from the source and sending them again, as seen in the registries'
//! own access logs; without the cache, or with a stale one, it sends them, and the result is the
//! same image.

use crate::util;
use omx_testenv::{http_request, EcrStandIn, Format, ImageFixture, LayerSpec, Moto, Registry};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json";

/// One request of a docker-registry access log.
#[derive(Debug)]
struct Logged {
    method: String,
    /// Path and query, percent-decoded.
    target: String,
    status: u16,
}

/// The requests in `log` (distribution's combined-format access log lines).
fn requests(log: &str) -> Vec<Logged> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once('"')?;
            let (request, after) = rest.split_once("\" ")?;
            let (method, rest) = request.split_once(' ')?;
            let target = rest.strip_suffix(" HTTP/1.1")?;
            let status = after.split_whitespace().next()?.parse().ok()?;
            target.starts_with("/v2/").then(|| Logged {
                method: method.to_string(),
                target: decoded(target),
                status,
            })
        })
        .collect()
}

/// A request target with the escapes of digests and repository names undone.
fn decoded(target: &str) -> String {
    target.replace("%3A", ":").replace("%2F", "/")
}

/// What `registry` logged since its log was `from` bytes long.
fn requests_since(registry: &Registry, from: usize) -> Vec<Logged> {
    requests(&registry.log()[from..])
}

/// Blob uploads (`PATCH` or `PUT` of an upload session) of `digest`, or a monolithic `POST`.
fn uploads_of(logged: &[Logged], digest: &str) -> usize {
    let hex = digest.trim_start_matches("sha256:");
    logged
        .iter()
        .filter(|r| r.target.contains("/blobs/uploads/") && r.target.contains(hex))
        .filter(|r| r.method == "PUT" || r.method == "PATCH")
        .count()
}

fn mounts_of(logged: &[Logged], into: &str, digest: &str, from: &str) -> Vec<u16> {
    let wanted = format!("/v2/{into}/blobs/uploads/?mount={digest}&from={from}");
    logged
        .iter()
        .filter(|r| r.method == "POST" && r.target == wanted)
        .map(|r| r.status)
        .collect()
}

fn blob_reads(logged: &[Logged], digest: &str) -> usize {
    logged
        .iter()
        .filter(|r| r.method == "GET" && r.target.ends_with(&format!("/blobs/{digest}")))
        .count()
}

/// Two images sharing two layers: A (config and two layers, three blobs) and B (those layers
/// and one more), in the source as team/a:1 and team/b:1.
struct Images {
    a: ImageFixture,
    b: ImageFixture,
}

impl Images {
    fn push(source: &Registry, seed: u64) -> Images {
        let shared = LayerSpec::distinct(seed, 2, 40_000);
        let mut own = shared.clone();
        own.push(LayerSpec::new(seed ^ 0xb, 30_000));
        let images = Images {
            a: ImageFixture::single(&shared, Format::Oci),
            b: ImageFixture::single(&own, Format::Oci),
        };
        images.a.push(source, "team/a:1");
        images.b.push(source, "team/b:1");
        images
    }

    fn shared(&self) -> Vec<String> {
        self.a.images()[0]
            .layers
            .iter()
            .map(|layer| layer.digest.clone())
            .collect()
    }
}

/// A source holding [`Images`] and an empty target, both docker-registry, and a home whose
/// `blob-cache` directory the runs share.
struct World {
    source: Registry,
    target: Registry,
    home: tempfile::TempDir,
    images: Images,
}

impl World {
    fn start(seed: u64) -> Option<World> {
        let (source, target) = (Registry::try_start()?, Registry::try_start()?);
        let images = Images::push(&source, seed);
        Some(World {
            source,
            target,
            home: tempfile::tempdir().unwrap(),
            images,
        })
    }

    fn cache(&self) -> std::path::PathBuf {
        self.home.path().join("blob-cache")
    }

    /// `copy` of the source's `from` (a repository:tag) to the target's `to`, with `flags`
    /// (default: `--blob-cache-dir` [`World::cache`]); the digest it printed.
    fn copy(&self, from: &str, to: &str, flags: Option<&[&str]>) -> String {
        let cache = self.cache();
        let default = ["--blob-cache-dir", cache.to_str().unwrap()];
        let source = format!("{}/{from}", self.source.host());
        let target = format!("{}/{to}", self.target.host());
        let mut args = vec!["copy", &source, &target, "--quiet"];
        args.extend(flags.unwrap_or(&default));
        let output = util::local(&args, self.home.path());
        output.assert_code(0);
        output.stdout().trim().to_string()
    }

    /// What the target and the source logged while `run` ran.
    fn logged(&self, run: impl FnOnce() -> String) -> (String, Vec<Logged>, Vec<Logged>) {
        let (source_mark, target_mark) = (self.source.log().len(), self.target.log().len());
        let output = run();
        let sent = requests_since(&self.target, target_mark);
        (output, sent, requests_since(&self.source, source_mark))
    }

    /// Deletes `repository` from the target. Distribution has no API for that: its directory
    /// goes, as an operator would remove it.
    fn delete_repository(&self, repository: &str) {
        let repositories = self
            .target
            .storage_dir()
            .join("docker/registry/v2/repositories");
        std::fs::remove_dir_all(repositories.join(repository)).unwrap();
    }

    fn saved_cache(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.cache().join("locations.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// The target holds `image` complete under `repository:1`: the manifest of that digest and each
/// of its blobs.
fn assert_holds(target: &Registry, repository: &str, image: &ImageFixture) {
    let host = target.host();
    let manifest = http_request(
        &host,
        "HEAD",
        &format!("/v2/{repository}/manifests/1"),
        &[("Accept", MANIFEST_TYPES)],
        b"",
    )
    .unwrap();
    assert_eq!(
        manifest.header("Docker-Content-Digest"),
        Some(image.digest())
    );
    let only = &image.images()[0];
    for blob in only.layers.iter().chain([&only.config]) {
        let head = http_request(
            &host,
            "HEAD",
            &format!("/v2/{repository}/blobs/{}", blob.digest),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(head.status, 200, "{repository} lacks {}", blob.digest);
    }
}

#[test]
fn a_later_run_mounts_what_an_earlier_run_copied_and_reads_nothing_of_it_from_the_source() {
    let Some(world) = World::start(1700) else {
        return;
    };
    world.copy("team/a:1", "x/a:1", None);
    assert!(world.cache().join("locations.json").is_file());
    let (digest, sent, read) = world.logged(|| world.copy("team/b:1", "x/b:1", None));

    let images = &world.images;
    assert_eq!(digest, images.b.digest());
    for shared in images.shared() {
        assert_eq!(mounts_of(&sent, "x/b", &shared, "x/a"), [201], "{sent:#?}");
        assert_eq!(uploads_of(&sent, &shared), 0, "{sent:#?}");
        assert_eq!(blob_reads(&read, &shared), 0, "{read:#?}");
    }
    // What B does not share is sent as usual.
    let own = &images.b.images()[0].layers[2].digest;
    assert_eq!(uploads_of(&sent, own), 1, "{sent:#?}");
    assert_holds(&world.target, "x/b", &images.b);
}

#[test]
fn an_image_found_up_to_date_is_recorded_as_a_home_of_its_layers() {
    let Some(world) = World::start(1750) else {
        return;
    };
    world.copy("team/a:1", "x/a:1", Some(&["--no-blob-cache"]));
    // Nothing to copy, and the cache learns where A's layers are.
    let (_, sent, _) = world.logged(|| world.copy("team/a:1", "x/a:1", None));
    assert!(
        sent.iter().all(|r| r.method == "GET" || r.method == "HEAD"),
        "{sent:#?}"
    );
    let (_, sent, _) = world.logged(|| world.copy("team/b:1", "x/b:1", None));
    for shared in world.images.shared() {
        assert_eq!(mounts_of(&sent, "x/b", &shared, "x/a"), [201], "{sent:#?}");
    }
    assert_holds(&world.target, "x/b", &world.images.b);
}

#[test]
fn without_the_cache_a_later_run_sends_the_shared_layers_again() {
    let Some(world) = World::start(1800) else {
        return;
    };
    // --no-blob-cache neither writes the cache...
    world.copy("team/a:1", "x/a:1", Some(&["--no-blob-cache"]));
    assert!(!world.cache().exists());
    world.copy("team/a:1", "x/a:1", None);
    // ... nor reads it; and a run with an empty cache directory has nothing to read either.
    let empty = world.home.path().join("empty-cache");
    let runs = [
        ("x/b", vec!["--no-blob-cache"]),
        ("x/c", vec!["--blob-cache-dir", empty.to_str().unwrap()]),
    ];
    for (repository, flags) in runs {
        let to = format!("{repository}:1");
        let (digest, sent, read) = world.logged(|| world.copy("team/b:1", &to, Some(&flags)));
        assert_eq!(digest, world.images.b.digest());
        for shared in world.images.shared() {
            assert!(
                mounts_of(&sent, repository, &shared, "x/a").is_empty(),
                "{sent:#?}"
            );
            assert_eq!(uploads_of(&sent, &shared), 1, "{sent:#?}");
            assert_eq!(blob_reads(&read, &shared), 1, "{read:#?}");
        }
        assert_holds(&world.target, repository, &world.images.b);
    }
}

#[test]
fn a_stale_home_is_tried_once_then_the_layer_is_sent_and_the_home_forgotten() {
    let Some(world) = World::start(1900) else {
        return;
    };
    world.copy("team/a:1", "x/a:1", None);
    // The repository is deleted from the target; the cache still names it.
    world.delete_repository("x/a");
    let (digest, sent, _) = world.logged(|| world.copy("team/b:1", "x/b:1", None));

    assert_eq!(digest, world.images.b.digest());
    let saved = world.saved_cache();
    for shared in world.images.shared() {
        // Refused (202: an upload session instead), tried once, and the layer uploaded.
        assert_eq!(mounts_of(&sent, "x/b", &shared, "x/a"), [202], "{sent:#?}");
        assert_eq!(uploads_of(&sent, &shared), 1, "{sent:#?}");
        let homes: Vec<&str> = saved["registries"][&world.target.host()][&shared]
            .as_array()
            .unwrap()
            .iter()
            .map(|home| home["repository"].as_str().unwrap())
            .collect();
        assert_eq!(homes, ["x/b"], "{saved:#}");
    }
    assert_holds(&world.target, "x/b", &world.images.b);
}

#[test]
fn when_the_most_recent_home_is_gone_an_older_one_is_mounted_from() {
    let Some(world) = World::start(1950) else {
        return;
    };
    world.copy("team/a:1", "x/a:1", None);
    // A second copy of A (its layers mounted from x/a) makes x/gone their most recent home;
    // then x/gone is deleted from the target.
    world.copy("team/a:1", "x/gone:1", None);
    world.delete_repository("x/gone");
    let (digest, sent, read) = world.logged(|| world.copy("team/b:1", "x/b:1", None));

    assert_eq!(digest, world.images.b.digest());
    let saved = world.saved_cache();
    for shared in world.images.shared() {
        assert_eq!(
            mounts_of(&sent, "x/b", &shared, "x/gone"),
            [202],
            "{sent:#?}"
        );
        assert_eq!(mounts_of(&sent, "x/b", &shared, "x/a"), [201], "{sent:#?}");
        assert_eq!(uploads_of(&sent, &shared), 0, "{sent:#?}");
        assert_eq!(blob_reads(&read, &shared), 0, "{read:#?}");
        let mut homes: Vec<&str> = saved["registries"][&world.target.host()][&shared]
            .as_array()
            .unwrap()
            .iter()
            .map(|home| home["repository"].as_str().unwrap())
            .collect();
        homes.sort_unstable();
        assert_eq!(homes, ["x/a", "x/b"], "{saved:#}");
    }
    // The session each refused mount opened is cancelled, not left to expire.
    let cancelled = sent
        .iter()
        .filter(|r| r.method == "DELETE" && r.target.contains("/v2/x/b/blobs/uploads/"))
        .count();
    assert_eq!(cancelled, world.images.shared().len(), "{sent:#?}");
    assert_holds(&world.target, "x/b", &world.images.b);
}

#[test]
fn a_forged_home_degrades_to_an_upload_with_the_right_result() {
    let Some(world) = World::start(2000) else {
        return;
    };
    // Homes named for each blob of B in turn: a repository that never existed, and one that
    // exists and holds A (so of B's blobs only the layers it shares with A).
    world.copy("team/a:1", "other:1", Some(&["--no-blob-cache"]));
    let only = &world.images.b.images()[0];
    let forged: serde_json::Map<String, serde_json::Value> = only
        .layers
        .iter()
        .chain([&only.config])
        .enumerate()
        .map(|(n, blob)| {
            let repository = if n % 2 == 0 { "never/was" } else { "other" };
            let entry =
                serde_json::json!([{"repository": repository, "referenced": true, "seen": 1}]);
            (blob.digest.clone(), entry)
        })
        .collect();
    std::fs::create_dir_all(world.cache()).unwrap();
    let file = serde_json::json!({"version": 1, "registries": {world.target.host(): forged}});
    std::fs::write(world.cache().join("locations.json"), file.to_string()).unwrap();

    let (digest, sent, _) = world.logged(|| world.copy("team/b:1", "x/b:1", None));

    assert_eq!(digest, world.images.b.digest());
    let refused = [
        (&only.layers[0].digest, "never/was"),
        (&only.layers[2].digest, "never/was"),
        (&only.config.digest, "other"),
    ];
    for (blob, from) in refused {
        assert_eq!(mounts_of(&sent, "x/b", blob, from), [202], "{sent:#?}");
        assert_eq!(uploads_of(&sent, blob), 1, "{sent:#?}");
    }
    // A true home, though forged, is one.
    let layer = &only.layers[1].digest;
    assert_eq!(mounts_of(&sent, "x/b", layer, "other"), [201], "{sent:#?}");
    assert_eq!(uploads_of(&sent, layer), 0, "{sent:#?}");
    assert_holds(&world.target, "x/b", &world.images.b);
}

/// The ECR stand-in (blob mounting on) as target, a docker-registry source holding [`Images`],
/// and a home whose `blob-cache` directory the runs share.
struct EcrWorld {
    moto: Moto,
    source: Registry,
    ecr: EcrStandIn,
    home: tempfile::TempDir,
    images: Images,
}

impl EcrWorld {
    fn start(seed: u64) -> Option<EcrWorld> {
        let (moto, source) = (Moto::try_start()?, Registry::try_start()?);
        let images = Images::push(&source, seed);
        Some(EcrWorld {
            moto,
            source,
            // ECR mounts only with the BLOB_MOUNTING account setting (ECR user guide, "Blob
            // mounting").
            ecr: EcrStandIn::builder().blob_mounting(true).start(),
            home: tempfile::tempdir().unwrap(),
            images,
        })
    }

    fn cache(&self) -> std::path::PathBuf {
        self.home.path().join("blob-cache")
    }

    /// The command `args` with the shared cache, which must succeed; what it printed.
    fn run(&self, args: &[&str]) -> String {
        let cache = self.cache();
        let mut all = args.to_vec();
        all.extend(["--blob-cache-dir", cache.to_str().unwrap()]);
        let output = util::on_ecr(&all, &self.moto, &self.ecr, self.home.path());
        output.assert_code(0);
        output.stdout().trim().to_string()
    }

    /// `copy` of the source's `from` to ECR's `to`, with the shared cache; the digest copied.
    fn copy(&self, from: &str, to: &str) -> String {
        let source = format!("{}/{from}", self.source.host());
        let target = format!("{}/{to}", self.ecr.registry_host());
        self.run(&["copy", &source, &target, "--quiet"])
    }

    /// What `run` returned, and the registry API requests the stand-in answered meanwhile.
    fn logged(&self, run: impl FnOnce() -> String) -> (String, Vec<Logged>) {
        let before = self.ecr.requests().len();
        let output = run();
        let sent = self.ecr.requests()[before..]
            .iter()
            .map(|r| Logged {
                method: r.method.clone(),
                target: decoded(&r.target),
                status: r.status,
            })
            .collect();
        (output, sent)
    }
}

#[test]
fn into_ecr_only_a_home_whose_manifest_references_the_layer_is_a_mount_source() {
    let Some(world) = EcrWorld::start(2100) else {
        return;
    };
    world.copy("team/a:1", "x/a:1");
    // A home recorded without a manifest that references the blob: ECR would refuse a mount
    // from it (aws/containers-roadmap #2860), so it is not tried.
    let file = world.cache().join("locations.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let own = world.images.b.images()[0].layers[2].digest.clone();
    let registries = saved["registries"].as_object_mut().unwrap();
    assert_eq!(registries.len(), 1, "{registries:?}");
    let blobs = registries.values_mut().next().unwrap();
    blobs[&own] = serde_json::json!([{"repository": "x/a", "referenced": false, "seen": 1}]);
    std::fs::write(&file, saved.to_string()).unwrap();

    let (digest, sent) = world.logged(|| world.copy("team/b:1", "x/b:1"));

    assert_eq!(digest, world.images.b.digest());
    for shared in world.images.shared() {
        assert_eq!(mounts_of(&sent, "x/b", &shared, "x/a"), [201], "{sent:#?}");
        assert_eq!(uploads_of(&sent, &shared), 0, "{sent:#?}");
    }
    let mount_of_own = format!("mount={own}");
    assert!(
        !sent.iter().any(|r| r.target.contains(&mount_of_own)),
        "{sent:#?}"
    );
    assert_eq!(uploads_of(&sent, &own), 1, "{sent:#?}");
}

#[test]
fn into_ecr_a_home_the_cache_proved_serves_every_image_of_the_run_at_once() {
    let Some(world) = EcrWorld::start(2200) else {
        return;
    };
    // Two more images on A's layers, pulled together by the second run.
    let shared = LayerSpec::distinct(2200, 2, 40_000);
    let inputs: Vec<String> = (0..2)
        .map(|n| {
            let mut layers = shared.clone();
            layers.push(LayerSpec::new(2300 + n, 30_000));
            let image = format!("team/c{n}:1");
            ImageFixture::single(&layers, Format::Oci).push(&world.source, &image);
            format!("{}/{image}", world.source.host())
        })
        .collect();
    world.copy("team/a:1", "x/a:1");
    let manifest = world.home.path().join("manifest.json");
    let entries = serde_json::json!({ "manifest": inputs });
    std::fs::write(&manifest, entries.to_string()).unwrap();
    let registry = format!("ecr://{}/us-east-1", world.ecr.account());

    let pull = [
        "pull",
        manifest.to_str().unwrap(),
        "--registry",
        &registry,
        "--quiet",
    ];
    let (_, sent) = world.logged(|| world.run(&pull));

    for shared in world.images.shared() {
        // Each image mounts the layer from x/a: the first because the cache named it, the
        // second because that mount proved it, without waiting for the first's manifest.
        let mounts: Vec<&Logged> = sent
            .iter()
            .filter(|r| r.method == "POST" && r.target.contains(&format!("mount={shared}")))
            .collect();
        assert_eq!(mounts.len(), 2, "{sent:#?}");
        assert!(
            mounts
                .iter()
                .all(|r| r.status == 201 && r.target.ends_with("&from=x/a")),
            "{mounts:#?}"
        );
        assert_eq!(uploads_of(&sent, &shared), 0, "{sent:#?}");
    }
}

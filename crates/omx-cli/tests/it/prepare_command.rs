//! `prepare` end to end on two real public pipelines (copied unchanged into
//! `tests/fixtures/prepare/`, see its README): nf-core/demo (three quay.io biocontainers, served
//! by ECR's pull-through cache) and gatk-workflows/seq-format-conversion (two Docker Hub images,
//! copied). One command from the workflow folder must leave every image in the private registry,
//! identical to upstream, verified, with the containerRegistryMap, the Nextflow configuration or
//! WDL inputs and the report written.
//!
//! Nothing leaves 127.0.0.1, and the binary runs unchanged: it reaches "quay.io" and
//! "registry-1.docker.io" over HTTPS through `HTTPS_PROXY` (an `omx_testenv::ConnectProxy`,
//! as a corporate network's proxy), which tunnels those names to a local docker-registry with a
//! certificate for them from a test CA (given with `--ca-cert`). ECR is the stand-in
//! (`omx_testenv::EcrStandIn`); its pull-through cache imports quay.io images from a local
//! registry holding the same images. STS is moto's.
//!
//! The ground truth (which images each pipeline uses, and the digests upstream holds) comes from
//! reading the pipelines' files and from the fixtures pushed, not from the code under test.

use std::path::{Path, PathBuf};

use omx_testenv::OmxOutput;
use omx_testenv::{ConnectProxy, EcrStandIn, Format, ImageFixture, LayerSpec, Moto, Registry};
use serde_json::{json, Value};

use crate::util::text;

/// The images each pipeline's files name, read by hand: nf-core modules name
/// `biocontainers/...` and `nextflow.config` sets `docker.registry = 'quay.io'`; the WDL names
/// `broadinstitute/gatk:latest` (a workflow input's default) and `ubuntu:latest`.
const NF_CORE_DEMO_IMAGES: [&str; 3] = [
    "quay.io/biocontainers/fastqc:0.12.1--hdfd78af_0",
    "quay.io/biocontainers/multiqc:1.27--pyhdfd78af_0",
    "quay.io/biocontainers/seqtk:1.4--he4a0461_1",
];
const SEQ_FORMAT_CONVERSION_IMAGES: [&str; 2] = ["broadinstitute/gatk:latest", "ubuntu:latest"];

struct World {
    moto: Moto,
    ecr: EcrStandIn,
    /// "quay.io" and "registry-1.docker.io", reached through the proxy.
    public: Registry,
    /// What ECR's pull-through cache imports quay.io images from (the same images as `public`).
    quay_for_cache: Registry,
    proxy: ConnectProxy,
    home: tempfile::TempDir,
}

impl World {
    fn start() -> Option<World> {
        let moto = Moto::try_start()?;
        let public = Registry::builder()
            .tls_names(&["quay.io", "registry-1.docker.io"])
            .try_start()?;
        let quay_for_cache = Registry::try_start()?;
        let ecr = EcrStandIn::builder()
            .upstream("quay.io", &quay_for_cache.host())
            .start();
        let proxy = ConnectProxy::start(&[
            ("quay.io:443", &public.host()),
            ("registry-1.docker.io:443", &public.host()),
        ]);
        Some(World {
            moto,
            ecr,
            public,
            quay_for_cache,
            proxy,
            home: tempfile::tempdir().unwrap(),
        })
    }

    fn run(&self, args: &[&str]) -> OmxOutput {
        let endpoint = self.ecr.host();
        let mut all: Vec<&str> = args.to_vec();
        if args[0] == "prepare" {
            all.extend(["--ecr-registry-endpoint", &endpoint]);
            all.extend([
                "--ca-cert",
                self.public.ca_cert_path().unwrap().to_str().unwrap(),
            ]);
        }
        crate::util::moto_command(&all, &self.moto, self.home.path())
            .env("AWS_ENDPOINT_URL_ECR", self.ecr.endpoint())
            .env("HTTPS_PROXY", self.proxy.url())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .run()
    }

    /// `prepare PIPELINE --out-dir OUT` into this world's ECR, quietly, with `extra` options.
    fn prepare(&self, pipeline: &Path, out: &Path, extra: &[&str]) -> OmxOutput {
        let registry = self.registry();
        let mut args = vec![
            "prepare",
            pipeline.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--registry",
            &registry,
            "--quiet",
        ];
        args.extend(extra);
        self.run(&args)
    }

    fn registry(&self) -> String {
        format!("ecr://{}/us-east-1", self.ecr.account())
    }

    fn private_host(&self) -> String {
        format!("{}.dkr.ecr.us-east-1.amazonaws.com", self.ecr.account())
    }

    fn tag_digest(&self, repository: &str, tag: &str) -> Option<String> {
        let view = self.ecr.repository(repository)?;
        view.image_tags
            .into_iter()
            .find(|(t, _)| t == tag)
            .map(|(_, digest)| digest)
    }

    /// A copy of the fixture pipeline `name`, so nothing is written into the crate.
    fn pipeline(&self, name: &str) -> PathBuf {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/prepare")
            .join(name);
        let to = self.home.path().join(name);
        copy_tree(&from, &to);
        to
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn single(seed: u64) -> ImageFixture {
    ImageFixture::single(&LayerSpec::distinct(seed, 2, 20_000), Format::Oci)
}

fn multi_arch(seed: u64) -> ImageFixture {
    ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64")],
        &LayerSpec::distinct(seed, 1, 20_000),
        Format::DockerV2,
    )
}

fn assert_ran(output: &OmxOutput, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn prepare_takes_nf_core_demo_to_ready_through_the_pull_through_cache() {
    let Some(world) = World::start() else {
        return;
    };
    let mut upstream = Vec::new();
    for (seed, image) in NF_CORE_DEMO_IMAGES.iter().enumerate() {
        let path = image.strip_prefix("quay.io/").unwrap();
        let fixture = single(100 + seed as u64);
        let digest = fixture.push(&world.public, path);
        assert_eq!(fixture.push(&world.quay_for_cache, path), digest);
        upstream.push(digest);
    }
    let setup = world.run(&["setup"]);
    assert_ran(&setup, 0);

    let pipeline = world.pipeline("nf-core-demo");
    let out = world.home.path().join("nf-out");

    // A dry run changes nothing in the registry, and says what it would do.
    let dry_run = world.prepare(&pipeline, &out, &["--dry-run"]);
    assert_ran(&dry_run, 0);
    assert!(text(&dry_run.stdout).starts_with("dry run, nothing changed"));
    for image in NF_CORE_DEMO_IMAGES {
        let repository = image
            .strip_prefix("quay.io/")
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert!(world
            .ecr
            .repository(&format!("quay/{repository}"))
            .is_none());
    }

    let prepared = world.prepare(&pipeline, &out, &[]);
    assert_ran(&prepared, 0);
    let stdout = text(&prepared.stdout);
    assert!(
        stdout.starts_with("ready for HealthOmics: 3 image(s)"),
        "{stdout}"
    );

    // The manifest holds exactly the pipeline's images, and the lock pins each to upstream's digest.
    let manifest = read_json(&out.join("container_image_manifest.json"));
    assert_eq!(manifest, json!({ "manifest": NF_CORE_DEMO_IMAGES }));
    let pinned: Vec<String> = NF_CORE_DEMO_IMAGES
        .iter()
        .zip(&upstream)
        .map(|(image, digest)| format!("{image}@{digest}"))
        .collect();
    assert_eq!(
        read_json(&out.join("container_image_manifest.lock.json")),
        json!({ "manifest": pinned })
    );
    // Each is in its cache repository, identical to upstream.
    for (image, digest) in NF_CORE_DEMO_IMAGES.iter().zip(&upstream) {
        let (repository, tag) = image
            .strip_prefix("quay.io/")
            .unwrap()
            .split_once(':')
            .unwrap();
        assert_eq!(
            world
                .tag_digest(&format!("quay/{repository}"), tag)
                .as_deref(),
            Some(digest.as_str()),
            "{image}"
        );
    }
    // HealthOmics reaches them through the registry mapping of the quay prefix alone.
    let map = read_json(&out.join("container-registry-map.json"));
    assert_eq!(
        map,
        json!({"registryMappings": [{"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay"}],
               "imageMappings": []})
    );
    // Outside HealthOmics, the configuration runs each process on its pinned private image.
    let config = std::fs::read_to_string(out.join("nextflow.config")).unwrap();
    for ((process, image), digest) in ["FASTQC", "MULTIQC", "SEQTK_TRIM"]
        .iter()
        .zip(NF_CORE_DEMO_IMAGES)
        .zip(&upstream)
    {
        let private = format!(
            "{}/quay/{}@{digest}",
            world.private_host(),
            image.strip_prefix("quay.io/").unwrap()
        );
        assert!(
            config.contains(&format!(
                "withName: '{process}' {{\n        container = '{private}'"
            )),
            "{process} not set to {private}:\n{config}"
        );
    }
    let report = std::fs::read_to_string(out.join("prepare-report.md")).unwrap();
    assert!(report.contains("**ready for HealthOmics**"), "{report}");
    for image in NF_CORE_DEMO_IMAGES {
        assert!(
            report.contains(image),
            "{image} not in the report:\n{report}"
        );
    }
    // The cache fetched the images; the binary had no reason to reach quay.io itself.
    assert!(world
        .proxy
        .requested()
        .iter()
        .all(|authority| authority == "quay.io:443" || authority == "registry-1.docker.io:443"));
}

#[test]
fn prepare_takes_a_gatk_wdl_workflow_to_ready_by_copying_from_docker_hub() {
    let Some(world) = World::start() else {
        return;
    };
    let gatk = single(200).push(&world.public, "broadinstitute/gatk:latest");
    let ubuntu = multi_arch(201).push(&world.public, "library/ubuntu:latest");

    let pipeline = world.pipeline("seq-format-conversion");
    let inputs = pipeline.join("paired-fastq-to-unmapped-bam.inputs.json");
    let out = world.home.path().join("wdl-out");
    let prepared = world.prepare(&pipeline, &out, &["--inputs", inputs.to_str().unwrap()]);
    assert_ran(&prepared, 0);

    let manifest = read_json(&out.join("container_image_manifest.json"));
    assert_eq!(
        manifest,
        json!({ "manifest": SEQ_FORMAT_CONVERSION_IMAGES })
    );
    // Copied over HTTPS from "registry-1.docker.io", byte for byte (the digests match).
    assert!(world
        .proxy
        .requested()
        .contains(&"registry-1.docker.io:443".to_string()));
    assert_eq!(
        world
            .tag_digest("dockerhub/broadinstitute/gatk", "latest")
            .as_deref(),
        Some(gatk.as_str())
    );
    assert_eq!(
        world.tag_digest("dockerhub/ubuntu", "latest").as_deref(),
        Some(ubuntu.as_str())
    );
    // Each manifest counts as a Docker Hub pull: locking reads the index once (by digest) and
    // the copy reuses it, so ubuntu's index is fetched once and no tag is pulled (a HEAD
    // resolves it).
    let log = world.public.log();
    let gets = |path: &str| log.matches(&format!("\"GET /v2/{path} ")).count();
    assert_eq!(
        gets(&format!("library/ubuntu/manifests/{ubuntu}")),
        1,
        "{log}"
    );
    assert_eq!(gets("library/ubuntu/manifests/latest"), 0, "{log}");
    // Copied images are reached through image mappings of the spellings the workflow uses,
    // each to the pinned private image: a tag moving upstream later changes nothing.
    let map = read_json(&out.join("container-registry-map.json"));
    let private = world.private_host();
    let mappings = map["imageMappings"].as_array().unwrap();
    for (source, destination) in [
        (
            "broadinstitute/gatk:latest",
            format!("{private}/dockerhub/broadinstitute/gatk:latest@{gatk}"),
        ),
        // Docker Hub's official images lose `library/`, as in the original tool.
        (
            "ubuntu:latest",
            format!("{private}/dockerhub/ubuntu:latest@{ubuntu}"),
        ),
    ] {
        assert!(
            mappings
                .iter()
                .any(|m| m["sourceImage"] == source && m["destinationImage"] == destination),
            "{source} -> {destination} not in {map}"
        );
    }
    // The inputs name no image, so they come back as they were.
    assert_eq!(read_json(&out.join("inputs.json")), read_json(&inputs));
    assert!(!out.join("nextflow.config").exists());
    let report = std::fs::read_to_string(out.join("prepare-report.md")).unwrap();
    assert!(report.contains("**ready for HealthOmics**"), "{report}");
}

#[test]
fn prepare_reports_an_image_upstream_lacks_and_exits_1() {
    let Some(world) = World::start() else {
        return;
    };
    // Only gatk is upstream: ubuntu:latest is missing.
    single(300).push(&world.public, "broadinstitute/gatk:latest");
    let pipeline = world.pipeline("seq-format-conversion");
    let out = world.home.path().join("out");
    let prepared = world.prepare(&pipeline, &out, &[]);
    assert_ran(&prepared, 1);
    let stdout = text(&prepared.stdout);
    assert!(stdout.starts_with("NOT READY"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("pull:") && line.contains("ubuntu")),
        "{stdout}"
    );
    // What is in place is mapped (in each spelling); what failed is not.
    let map = read_json(&out.join("container-registry-map.json"));
    let sources: Vec<&str> = map["imageMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sourceImage"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"broadinstitute/gatk:latest"), "{map}");
    assert!(
        sources.iter().all(|source| !source.contains("ubuntu")),
        "{map}"
    );
    // Without --inputs, a WDL workflow gets every image's private URI.
    let private = read_json(&out.join("private-images.json"));
    assert!(
        private.get("broadinstitute/gatk:latest").is_some(),
        "{private}"
    );
}

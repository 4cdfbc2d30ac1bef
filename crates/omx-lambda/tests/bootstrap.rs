//! The artifacts the stacks deploy, run as Lambda runs them. `infra/scripts/build-artifacts`
//! builds `<target>/lambda/<name>/bootstrap.zip` for each function and the CLI CodeBuild runs;
//! these tests unpack each zip, check that the `bootstrap` is an x86-64 executable needing no
//! glibc newer than Amazon Linux 2023's, then start it with Lambda's environment against a
//! stand-in Runtime API on loopback (`runtime_api`), with moto and `docker-registry` behind it,
//! and check what it answers to Step Functions and EventBridge payloads.
//!
//! The release build takes many minutes, so the tests skip, saying why, when the artifacts are
//! missing; `scripts/test` builds them first and sets `OMX_REQUIRE_LAMBDA_ARTIFACTS=1`, under
//! which a missing artifact fails instead. `<target>` is `$CARGO_TARGET_DIR` (as for the build
//! script), else the workspace's `target/`.

mod artifacts;
// Shared with tests/state_machine_runs.rs, which also uses its Invoke API.
mod emulated_aws;
#[allow(dead_code)]
mod runtime_api;

use std::fs;

use artifacts::{Artifacts, Bootstrap, CLI, FUNCTIONS};
use emulated_aws::{create_repository, ecr_registry, pull_through_cache_created, put_bundle};
use omx_aws::testing::emulator_context;
use omx_core::policy::omics_grants;
use omx_lambda::{BuildPrepareHandler, BuildPrepareRequest};
use omx_puller::TargetOptions;
use omx_testenv::{Format, ImageFixture, LayerSpec, Moto, OmxCommand, Registry, MOTO_ACCOUNT_ID};
use runtime_api::RuntimeApi;
use serde_json::json;

/// `provided.al2023` and the CodeBuild image (Amazon Linux 2023) ship glibc 2.34.
const AMAZON_LINUX_2023_GLIBC: (u32, u32) = (2, 34);
/// The glibc build-artifacts links against (`--target x86_64-unknown-linux-gnu.2.17`): a build
/// that lost the pin would follow the build machine's glibc instead.
const PINNED_GLIBC: (u32, u32) = (2, 17);
const X86_64_INTERPRETER: &str = "/lib64/ld-linux-x86-64.so.2";

#[test]
fn artifacts_are_x86_64_executables_for_amazon_linux_2023() {
    let Some(artifacts) = Artifacts::find() else {
        return;
    };
    let mut binaries: Vec<(String, Vec<u8>)> = FUNCTIONS
        .iter()
        .map(|function| {
            let root = artifacts.unpack(function);
            (
                format!("{function} bootstrap"),
                fs::read(root.path().join("bootstrap")).unwrap(),
            )
        })
        .collect();
    binaries.push((CLI.to_string(), fs::read(artifacts.cli()).unwrap()));
    for (name, bytes) in &binaries {
        let elf = Elf::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(elf.machine, EM_X86_64, "{name} is an x86-64 binary");
        assert_eq!(
            elf.kind, ET_DYN,
            "{name} is a (position-independent) executable"
        );
        assert_eq!(
            elf.interpreter.as_deref(),
            Some(X86_64_INTERPRETER),
            "{name}"
        );
        let glibc = elf.glibc_versions();
        assert!(!glibc.is_empty(), "{name} links glibc with symbol versions");
        let newest = glibc.iter().max().unwrap();
        let newest_name = newest
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(".");
        let newest = (newest[0], newest.get(1).copied().unwrap_or(0));
        assert!(
            newest <= AMAZON_LINUX_2023_GLIBC,
            "{name} needs GLIBC_{newest_name}, newer than Amazon Linux 2023's 2.{}",
            AMAZON_LINUX_2023_GLIBC.1
        );
        assert!(
            newest <= PINNED_GLIBC,
            "{name} needs GLIBC_{newest_name}: built without build-artifacts' glibc 2.{} pin",
            PINNED_GLIBC.1
        );
    }
    // The CLI CodeBuild runs is an executable of this workspace, not just any ELF.
    let version = OmxCommand::new(artifacts.cli()).arg("--version").run();
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        version.stdout().trim(),
        format!("{CLI} {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn pull_image_bootstrap_copies_skips_and_refuses_bad_payloads() {
    let Some(artifacts) = Artifacts::find() else {
        return;
    };
    let (Some(moto), Some(source)) = (Moto::try_start(), Registry::try_start()) else {
        return;
    };
    let ecr_registry = ecr_registry();
    let digest = ImageFixture::single(&LayerSpec::distinct(61, 2, 40_000), Format::Oci)
        .push(&source, "team/tool:1");
    let image = format!("{}/team/tool:1", source.host());
    let api = RuntimeApi::start(
        "omx-pull-image",
        vec![
            json!({"image": image}),
            json!({"image": image}),
            json!({"image": image, "tag": "1"}),
        ],
    );
    let mut function = Bootstrap::start(
        &artifacts,
        "omx-pull-image",
        &api,
        &moto,
        &[("OMX_ECR_REGISTRY_ENDPOINT", ecr_registry.host())],
    );

    let repository = format!("127.0.0.1-{}/team/tool", source.port());
    let copied = function.response(&api, "req-1");
    assert_eq!(
        copied,
        json!({
            "image": image,
            "status": "SUCCEEDED",
            "target": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repository}:1"),
            "digest": digest,
            "message": copied["message"],
            "too_large": false,
        })
    );
    assert!(
        copied["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("copied 3 blobs (")),
        "two layers and the config: {copied}"
    );
    let skipped = function.response(&api, "req-2");
    assert_eq!(skipped["status"], "SKIPPED", "{skipped}");
    assert_eq!(skipped["digest"], digest);

    // A payload the handler's type refuses is the Lambda's error, not a FAILED item: the state
    // machine's Catch turns it into one.
    let (error_type, error) = function.error(&api, "req-3");
    assert!(
        error["errorMessage"]
            .as_str()
            .is_some_and(|message| message.contains("unknown field `tag`")),
        "{error}"
    );
    assert!(error_type.is_some(), "the error names its type");
    function.assert_still_serving();

    // The binary reached moto through AWS_ENDPOINT_URL: the repository has the omics policy.
    let policy = emulator_context(&moto.endpoint())
        .await
        .ecr()
        .repository_policy(&repository)
        .await
        .unwrap()
        .expect("the pull set a repository policy");
    assert!(omics_grants(&policy));
}

#[tokio::test]
async fn apply_policy_bootstrap_answers_create_repository_events() {
    let Some(artifacts) = Artifacts::find() else {
        return;
    };
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let context = emulator_context(&moto.endpoint()).await;
    create_repository(&moto, "quay/biocontainers/tool").await;
    // As EventBridge delivers the pull-through cache's CreateRepository.
    let created = pull_through_cache_created("quay/biocontainers/tool");
    let unnamed = json!({"source": "aws.ecr", "detail": {"eventName": "CreateRepository"}});
    let api = RuntimeApi::start("omx-apply-policy", vec![created.clone(), created, unnamed]);
    let mut function = Bootstrap::start(&artifacts, "omx-apply-policy", &api, &moto, &[]);

    assert_eq!(
        function.response(&api, "req-1"),
        json!({"repository": "quay/biocontainers/tool", "policy": "updated"})
    );
    assert_eq!(
        function.response(&api, "req-2"),
        json!({"repository": "quay/biocontainers/tool", "policy": "unchanged"})
    );
    let (_, error) = function.error(&api, "req-3");
    assert!(
        error["errorMessage"]
            .as_str()
            .is_some_and(|message| message.contains("no repository name")),
        "{error}"
    );
    function.assert_still_serving();
    let policy = context
        .ecr()
        .repository_policy("quay/biocontainers/tool")
        .await
        .unwrap()
        .unwrap();
    assert!(omics_grants(&policy));
}

#[tokio::test]
async fn build_prepare_bootstrap_digests_s3_sources_like_the_library() {
    let Some(artifacts) = Artifacts::find() else {
        return;
    };
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let ecr_registry = ecr_registry();
    put_bundle(
        &moto,
        "sources",
        &[
            ("tools/beta/Dockerfile", "FROM scratch\nCOPY b.txt /b.txt\n"),
            ("tools/beta/b.txt", "beta\n"),
        ],
    )
    .await;
    let request = json!({"source_uri": "s3://sources/tools/beta/", "target_image": "tools/beta:1"});
    let untagged = json!({"source_uri": "s3://sources/tools/beta/", "target_image": "tools/beta"});
    let api = RuntimeApi::start("omx-build-prepare", vec![request.clone(), untagged]);
    let mut function = Bootstrap::start(
        &artifacts,
        "omx-build-prepare",
        &api,
        &moto,
        &[("OMX_ECR_REGISTRY_ENDPOINT", ecr_registry.host())],
    );

    let planned = function.response(&api, "req-1");
    let in_process = BuildPrepareHandler::new(
        emulator_context(&moto.endpoint()).await,
        Some(MOTO_ACCOUNT_ID.to_string()),
        TargetOptions {
            ecr_registry_endpoint: Some(ecr_registry.host()),
            ..TargetOptions::default()
        },
    )
    .await
    .unwrap()
    .handle(serde_json::from_value::<BuildPrepareRequest>(request).unwrap())
    .await;
    assert_eq!(planned, serde_json::to_value(&in_process).unwrap());
    assert_eq!(planned["status"], "PLANNED", "{planned}");
    assert_eq!(planned["skip"], false);
    assert!(planned["source_digest"]
        .as_str()
        .is_some_and(|digest| digest.starts_with("sha256:")));

    let refused = function.response(&api, "req-2");
    assert_eq!(refused["status"], "FAILED", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("tag")),
        "{refused}"
    );
    function.assert_still_serving();
}

const EM_X86_64: u16 = 62;
const ET_DYN: u16 = 3;
const PT_INTERP: u32 = 3;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// What the checks need from a little-endian ELF64 file: machine, type, program interpreter and
/// the glibc symbol versions it requires (`.gnu.version_r`, which `strip` keeps).
struct Elf<'a> {
    bytes: &'a [u8],
    kind: u16,
    machine: u16,
    interpreter: Option<String>,
    /// File offset of the version-needs section, and the index of its string table section.
    verneed: Option<(usize, usize)>,
    section_offsets: Vec<usize>,
}

impl<'a> Elf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, String> {
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err("not an ELF file".to_string());
        }
        if bytes[4] != 2 || bytes[5] != 1 {
            return Err("not a little-endian 64-bit ELF file".to_string());
        }
        let mut elf = Elf {
            bytes,
            kind: u16_at(bytes, 0x10),
            machine: u16_at(bytes, 0x12),
            interpreter: None,
            verneed: None,
            section_offsets: Vec::new(),
        };
        let (phoff, phentsize, phnum) = (
            u64_at(bytes, 0x20),
            u16_at(bytes, 0x36) as usize,
            u16_at(bytes, 0x38) as usize,
        );
        for index in 0..phnum {
            let header = phoff + index * phentsize;
            if u32_at(bytes, header) == PT_INTERP {
                let (offset, size) = (u64_at(bytes, header + 8), u64_at(bytes, header + 0x20));
                let path = &bytes[offset..offset + size];
                elf.interpreter = Some(
                    String::from_utf8_lossy(path.split(|b| *b == 0).next().unwrap()).into_owned(),
                );
            }
        }
        let (shoff, shentsize, shnum) = (
            u64_at(bytes, 0x28),
            u16_at(bytes, 0x3a) as usize,
            u16_at(bytes, 0x3c) as usize,
        );
        for index in 0..shnum {
            let header = shoff + index * shentsize;
            let offset = u64_at(bytes, header + 0x18);
            if u32_at(bytes, header + 4) == SHT_GNU_VERNEED {
                elf.verneed = Some((offset, u32_at(bytes, header + 0x28) as usize));
            }
            elf.section_offsets.push(offset);
        }
        Ok(elf)
    }

    /// The `GLIBC_x.y[.z]` versions the binary needs, as numbers.
    fn glibc_versions(&self) -> Vec<Vec<u32>> {
        let Some((offset, link)) = self.verneed else {
            return Vec::new();
        };
        let strings = self.section_offsets[link];
        let mut versions = Vec::new();
        let mut need = offset;
        loop {
            let (count, aux, next) = (
                u16_at(self.bytes, need + 2) as usize,
                u32_at(self.bytes, need + 8) as usize,
                u32_at(self.bytes, need + 12) as usize,
            );
            let mut entry = need + aux;
            for _ in 0..count {
                let name = c_string(self.bytes, strings + u32_at(self.bytes, entry + 8) as usize);
                if let Some(version) = name.strip_prefix("GLIBC_") {
                    if let Ok(parts) = version.split('.').map(str::parse).collect() {
                        versions.push(parts);
                    }
                }
                entry += u32_at(self.bytes, entry + 12) as usize;
            }
            if next == 0 {
                return versions;
            }
            need += next;
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> usize {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize
}

fn c_string(bytes: &[u8], at: usize) -> String {
    let end = bytes[at..].iter().position(|b| *b == 0).unwrap_or(0);
    String::from_utf8_lossy(&bytes[at..at + end]).into_owned()
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn elf_reader_finds_the_glibc_versions_of_this_test_binary() {
    // The test binary itself is a glibc-linked x86-64 executable built on this machine: the
    // reader must find its interpreter and at least the GLIBC_2.2.5 base version.
    let bytes = fs::read(std::env::current_exe().unwrap()).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    assert_eq!(elf.machine, EM_X86_64);
    assert_eq!(elf.interpreter.as_deref(), Some(X86_64_INTERPRETER));
    assert!(
        elf.glibc_versions().contains(&vec![2, 2, 5]),
        "{:?}",
        elf.glibc_versions()
    );
    assert!(Elf::parse(b"#!/bin/sh\n").is_err());
}

//! Shared set-up of the builder's service tests: moto as AWS (ECR control plane, S3, CodeBuild),
//! a `docker-registry` standing in for the ECR registry API (its htpasswd holds moto's token, so
//! the whole ECR login is real), bundles uploaded with the SDK, and a tiny base image with a
//! real shell (static busybox) pushed by the test itself.

#![allow(dead_code)]

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use omx_aws::AwsContext;
use omx_builder::BuildProgress;
use omx_core::report::ImageReport;
use omx_puller::{CredentialChain, EcrReach, ResolvedTarget, TargetOptions};
use omx_registry::ClientConfig;
use omx_testenv::{moto_ecr_password, Moto, Registry, MOTO_ACCOUNT_ID};

pub const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

pub async fn aws_config(moto: &Moto) -> SdkConfig {
    omx_aws::testing::emulator_config(&moto.endpoint()).await
}

/// A registry that accepts only moto's ECR token, the way ECR accepts only its own.
pub fn ecr_standing_registry() -> Option<Registry> {
    Registry::builder()
        .basic_auth("AWS", moto_ecr_password(MOTO_ACCOUNT_ID))
        .try_start()
}

/// ECR on moto as the target, its registry API served by `registry`, logged in with the token
/// `GetAuthorizationToken` returns.
pub async fn ecr_target(config: &SdkConfig, registry: &Registry) -> (ResolvedTarget, ClientConfig) {
    let context = AwsContext::from_config(config.clone()).unwrap();
    let target = ResolvedTarget::for_ecr(
        context,
        None,
        None,
        &TargetOptions {
            ecr_registry_endpoint: Some(registry.host()),
            ..TargetOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(target.ecr.is_some(), "an ECR target");
    let client = ClientConfig {
        credentials: CredentialChain::ecr(&target, EcrReach::Target).build(),
        ..ClientConfig::default()
    };
    (target, client)
}

pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub async fn put_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PutObject {bucket}/{key}: {error:?}"));
}

/// A zip of `(name, content, unix mode)` entries.
pub fn zip_of(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content, mode) in files {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        zip.start_file(*name, options).unwrap();
        zip.write_all(content.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

pub fn buildah() -> PathBuf {
    omx_builder::Buildah::find()
        .map(|buildah| buildah.program)
        .expect("buildah is not installed: run scripts/install-deps")
}

/// A script that records each invocation's arguments in `calls` and runs the real buildah, so
/// a test can tell which builds happened.
pub fn counting_buildah(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("buildah");
    let calls = dir.join("buildah-calls.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            buildah().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

/// How many `buildah bud` runs `calls` recorded.
pub fn builds_run(calls: &Path) -> usize {
    std::fs::read_to_string(calls)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(" bud "))
        .count()
}

/// Builds a base image holding only a static busybox (so `RUN` has a shell) in its own buildah
/// store and pushes it to `registry` as `base:1`; returns its name there.
pub fn push_base_image(registry: &Registry, work: &Path) -> String {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "the base image needs a static busybox at /bin/busybox: run scripts/install-deps \
         (Debian package busybox-static)"
    );
    let context = work.join("base-context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(busybox, context.join("busybox")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let image = format!("{}/base:1", registry.host());
    let store = work.join("base-store");
    let buildah = |args: &[&str]| {
        let output = Command::new(buildah())
            .arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    buildah(&[
        "bud",
        "--isolation",
        "chroot",
        "-t",
        &image,
        context.to_str().unwrap(),
    ]);
    let creds = registry
        .credentials()
        .map(|(user, password)| format!("--creds={user}:{password}"));
    let mut push = vec!["push", "--tls-verify=false"];
    if let Some(creds) = &creds {
        push.push(creds);
    }
    let destination = format!("docker://{image}");
    push.extend([image.as_str(), destination.as_str()]);
    buildah(&push);
    image
}

/// Records what the builder reports.
#[derive(Default)]
pub struct Recorder {
    pub steps: Mutex<Vec<(String, String)>>,
    pub done: Mutex<Vec<ImageReport>>,
}

impl BuildProgress for Recorder {
    fn step(&self, target: &str, message: &str) {
        self.steps
            .lock()
            .unwrap()
            .push((target.to_string(), message.to_string()));
    }

    fn done(&self, report: &ImageReport) {
        self.done.lock().unwrap().push(report.clone());
    }
}

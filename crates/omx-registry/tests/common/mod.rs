//! Shared helpers for the integration tests: clients tuned for tests, a recording progress
//! sink, and an independent view of the target through skopeo.

#![allow(dead_code)]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omx_core::{Digest, Reference};
use omx_registry::{
    ClientConfig, CopyEngine, CopyOptions, CredentialProvider, ProgressEvent, ProgressSink,
    RegistryClient, RetryPolicy,
};
use omx_testenv::{find_tool, Registry, Tool};

pub fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Short waits so retry tests stay quick; Retry-After from the fault proxy is honoured up to 2 s.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(2),
        throttle_window: Duration::ZERO,
    }
}

pub fn config() -> ClientConfig {
    ClientConfig {
        retry: fast_retry(),
        ..ClientConfig::default()
    }
}

pub fn config_with(credentials: Arc<dyn CredentialProvider>) -> ClientConfig {
    ClientConfig {
        credentials,
        ..config()
    }
}

pub fn engine(config: ClientConfig, options: CopyOptions) -> CopyEngine {
    CopyEngine::new(RegistryClient::new(config).expect("client"), options)
}

pub fn default_engine() -> CopyEngine {
    engine(config(), CopyOptions::default())
}

/// Progress events reduced to owned, comparable lines.
#[derive(Default)]
pub struct RecordingSink {
    pub events: Mutex<Vec<String>>,
}

impl RecordingSink {
    pub fn lines(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

impl ProgressSink for RecordingSink {
    fn event(&self, event: ProgressEvent<'_>) {
        let line = match event {
            ProgressEvent::ImageStarted { source, target, .. } => {
                format!("started {source} -> {target}")
            }
            ProgressEvent::BlobsPlanned { blobs, bytes, .. } => format!("planned {blobs} {bytes}"),
            ProgressEvent::BlobStarted { digest, .. } => format!("blob-started {digest}"),
            ProgressEvent::BlobProgress { .. } => return,
            ProgressEvent::BlobRetrying { digest, reason, .. } => {
                format!("blob-retrying {digest} {reason}")
            }
            ProgressEvent::BlobFinished { digest, size, .. } => {
                format!("blob-finished {digest} {size}")
            }
            ProgressEvent::BlobSkipped { digest, .. } => format!("blob-skipped {digest}"),
            ProgressEvent::BlobMounted { digest, from, .. } => {
                format!("blob-mounted {digest} from {from}")
            }
            ProgressEvent::ImageDone {
                digest, up_to_date, ..
            } => format!("done {digest} up-to-date={up_to_date}"),
            ProgressEvent::ImageFailed { error, .. } => format!("failed {error}"),
        };
        self.events.lock().unwrap().push(line);
    }
}

/// The digest of what skopeo (an independent client) reads at `host/repo_and_tag`.
pub fn skopeo_raw_digest(registry: &Registry, host: &str, repo_and_tag: &str) -> Digest {
    let skopeo = find_tool(Tool::Skopeo).expect("skopeo is installed");
    let mut command = Command::new(skopeo);
    command.args(["inspect", "--raw"]);
    match registry.cert_dir() {
        Some(dir) => command.arg("--cert-dir").arg(dir),
        None => command.arg("--tls-verify=false"),
    };
    if let Some((user, password)) = registry.credentials() {
        command.arg("--creds").arg(format!("{user}:{password}"));
    }
    let output = command
        .arg(format!("docker://{host}/{repo_and_tag}"))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo inspect {host}/{repo_and_tag}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Digest::sha256_of(&output.stdout)
}

pub fn digest(text: &str) -> Digest {
    text.parse().expect("a digest")
}

/// Full error chain, as reports print it.
pub use omx_core::report::error_chain as chain;

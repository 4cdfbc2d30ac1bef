//! The OCI Distribution API client: manifests and blobs over HTTPS with authentication and retries.
//!
//! One concern per file, each adding methods to [`RegistryClient`]:
//! - `mod.rs` (here): configuration, the public value types and construction.
//! - `endpoint.rs`: which host and scheme (`https`, or probed plain `http`) a registry is reached
//!   at, and the `/v2/<repository>/…` URLs under it.
//! - `http.rs`: sending requests: the one `Call` shape, the retry and 401 loop for
//!   repeatable requests, the single attempt for one-shot streaming bodies, and the judging of
//!   the final status.
//! - `response.rs`: what is read out of responses: the content headers
//!   (`Docker-Content-Digest`, `Content-Type`), `Location`, bounded bodies.
//! - `manifests.rs`, `blobs.rs`, `uploads.rs`: the API operations on each kind of resource
//!   (uploads include cross-repository mounts, which the API asks for through the upload URL).

mod blobs;
mod endpoint;
mod http;
mod manifests;
mod referrers;
mod response;
mod uploads;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use omx_core::Repository;
use omx_core::{Digest, Reference};

use crate::auth::credentials::{Anonymous, CredentialProvider};
use crate::auth::Authenticator;
use crate::error::RegistryError;
use crate::manifest::Manifest;
use crate::rate_limit::PullBudget;
use crate::retry::RetryPolicy;

pub use referrers::{descriptor_digest, fallback_tag, Referrers};
pub(crate) use response::ContentHeaders;
pub(crate) use uploads::MountOutcome;

/// Manifests larger than this are refused: real ones are a few KiB, and the whole manifest is
/// held in memory to be hashed and pushed back byte for byte.
pub const DEFAULT_MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// How a [`RegistryClient`] connects and authenticates.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where credentials come from; anonymous by default.
    pub credentials: Arc<dyn CredentialProvider>,
    /// Hosts (`host` or `host:port`) that may be reached over plain HTTP. Loopback hosts always
    /// may. TLS certificates are verified for every HTTPS connection regardless.
    pub insecure_registries: Vec<String>,
    /// Extra trusted CA certificates (PEM files, bundles allowed), added to the system roots.
    pub ca_certificates: Vec<PathBuf>,
    pub retry: RetryPolicy,
    pub user_agent: String,
    pub connect_timeout: Duration,
    /// A connection that delivers nothing for this long is considered broken (and retried).
    pub read_timeout: Duration,
    pub max_manifest_size: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            credentials: Arc::new(Anonymous),
            insecure_registries: Vec::new(),
            ca_certificates: Vec::new(),
            retry: RetryPolicy::default(),
            user_agent: concat!("omx-ecr-helper/", env!("CARGO_PKG_VERSION")).to_string(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            max_manifest_size: DEFAULT_MAX_MANIFEST_SIZE,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("insecure_registries", &self.insecure_registries)
            .field("ca_certificates", &self.ca_certificates)
            .field("retry", &self.retry)
            .field("user_agent", &self.user_agent)
            .field("max_manifest_size", &self.max_manifest_size)
            .finish_non_exhaustive()
    }
}

/// A manifest's name inside a repository: a tag or a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestRef<'a> {
    Tag(&'a str),
    Digest(&'a Digest),
}

impl<'a> ManifestRef<'a> {
    /// The digest when the reference pins one, else its tag (`latest` when it names none).
    pub fn of(reference: &'a Reference) -> ManifestRef<'a> {
        match reference.digest() {
            Some(digest) => ManifestRef::Digest(digest),
            None => ManifestRef::Tag(reference.tag_or_latest().unwrap_or("latest")),
        }
    }

    fn path_segment(&self) -> String {
        match self {
            ManifestRef::Tag(tag) => (*tag).to_string(),
            ManifestRef::Digest(digest) => digest.to_string(),
        }
    }

    fn display_in(&self, repository: &Repository) -> String {
        match self {
            ManifestRef::Tag(tag) => format!("{repository}:{tag}"),
            ManifestRef::Digest(digest) => format!("{repository}@{digest}"),
        }
    }
}

/// What a `HEAD` on a manifest tells: enough to compare without downloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDescriptor {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// Talks the OCI Distribution API to any number of registries. Cheap to clone; clones share
/// connections, tokens and credentials.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    auth: Authenticator,
    retry: RetryPolicy,
    insecure_registries: Vec<String>,
    max_manifest_size: usize,
    /// Per registry, the base URL `endpoint.rs` settled on (probed once per client).
    base_urls: Mutex<HashMap<String, endpoint::BaseUrl>>,
    /// Registries that asked to wait longer than the run waits: until when, and what they said.
    told_to_wait: Mutex<HashMap<(String, WaitScope), ToldToWait>>,
    /// Per registry, the pull budget its last successful answer published.
    pull_budgets: Mutex<HashMap<String, PullBudget>>,
    /// Manifests fetched by digest (verified, so the same content whenever asked again).
    manifests_by_digest: Mutex<HashMap<(Repository, Digest), ManifestCell>>,
}

/// A manifest fetched by digest, or being fetched (later askers wait for the first).
type ManifestCell = Arc<tokio::sync::OnceCell<Manifest>>;

/// What a registry's request to wait covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum WaitScope {
    /// Manifest GETs only: the refusal answered one, and pull limits count only those (a HEAD
    /// or a blob is not a pull: docker/docs, content/manuals/docker-hub/usage/pulls.md), so
    /// images whose manifests are in hand still finish.
    Pulls,
    /// Every request to the registry.
    All,
}

/// A registry's request to wait longer than the run waits.
pub(super) struct ToldToWait {
    /// When its requests may be sent again.
    pub(super) until: tokio::time::Instant,
    /// The same moment on the wall clock, for people.
    pub(super) until_clock: std::time::SystemTime,
    /// What it said, for the requests refused meanwhile.
    pub(super) said: String,
}

/// A lock that a panicked holder did not spoil: the maps behind it hold whole entries only.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure_registries", &self.inner.insecure_registries)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(config: ClientConfig) -> Result<RegistryClient, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .https_only(false);
        for path in &config.ca_certificates {
            let pem = crate::input::read_user_file(path, crate::input::MAX_CONFIG_FILE_BYTES)
                .map_err(|e| {
                    RegistryError::Config(format!(
                        "cannot read CA certificate {}: {e}",
                        path.display()
                    ))
                })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Config(format!(
                    "{} is not a PEM certificate file: {e}",
                    path.display()
                ))
            })?;
            if certificates.is_empty() {
                return Err(RegistryError::Config(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build the HTTP client: {e}")))?;
        let auth = Authenticator::new(
            http.clone(),
            config.credentials.clone(),
            config.retry.clone(),
        );
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                auth,
                retry: config.retry,
                insecure_registries: config.insecure_registries,
                max_manifest_size: config.max_manifest_size,
                base_urls: Mutex::new(HashMap::new()),
                told_to_wait: Mutex::new(HashMap::new()),
                pull_budgets: Mutex::new(HashMap::new()),
                manifests_by_digest: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The pull budget `registry` published on its last successful answer to this client (a
    /// manifest HEAD reads it without spending a pull), or `None` when it published none.
    pub fn pull_budget(&self, registry: &str) -> Option<PullBudget> {
        lock(&self.inner.pull_budgets).get(registry).cloned()
    }

    /// The retry policy requests (and the copy engine's blob restarts) follow.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_bad_ca_files_are_config_errors() {
        let missing = ClientConfig {
            ca_certificates: vec!["/nonexistent/ca.pem".into()],
            ..ClientConfig::default()
        };
        let error = RegistryClient::new(missing).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let error = RegistryClient::new(ClientConfig {
            ca_certificates: vec![junk],
            ..ClientConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("junk.pem"), "{error}");
    }
}

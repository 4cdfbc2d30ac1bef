//! The OCI Distribution API client: manifests and blobs over HTTPS with authentication and retries.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use omx_core::{Digest, Reference};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Body, Method, Response, StatusCode, Url};

use crate::auth::challenge::parse_challenges;
use crate::auth::credentials::{Anonymous, CredentialProvider};
use crate::auth::{Authenticator, Scope};
use crate::error::RegistryError;
use crate::manifest::{media_type, Manifest};
use crate::retry::RetryPolicy;
use crate::transport::{
    fail_retryable_status, is_loopback_host, resolve_location, retrying, status_error,
    with_query_param,
};

/// Manifests larger than this are refused: real ones are a few KiB, and the whole manifest is
/// held in memory to be hashed and pushed back byte for byte.
pub const DEFAULT_MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

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

/// A repository inside a registry: `127.0.0.1:5000` + `library/ubuntu`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// The registry as references name it (`docker.io`, not its API host).
    pub registry: String,
    pub path: String,
}

impl Repository {
    pub fn new(registry: impl Into<String>, path: impl Into<String>) -> Repository {
        Repository {
            registry: registry.into(),
            path: path.into(),
        }
    }

    pub fn of(reference: &Reference) -> Repository {
        Repository::new(reference.domain(), reference.path())
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
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

/// Result of a cross-repository mount request.
#[derive(Debug)]
pub(crate) enum MountOutcome {
    Mounted,
    /// The registry could not mount and opened an upload session instead.
    Upload(Url),
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
    base_urls: Mutex<HashMap<String, Url>>,
}

/// One request that can be sent again as is (no body, or a small in-memory one).
struct Call<'a> {
    method: Method,
    url: Url,
    registry: &'a str,
    scopes: &'a [Scope],
    headers: HeaderMap,
    body: Option<Bytes>,
    what: &'a str,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure_registries", &self.inner.insecure_registries)
            .finish_non_exhaustive()
    }
}

/// The host serving a registry's API: Docker Hub's is not `docker.io`.
pub fn api_host(registry: &str) -> &str {
    if registry == omx_core::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
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
            let pem = std::fs::read(path).map_err(|e| {
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
            }),
        })
    }

    /// The retry policy requests (and the copy engine's blob restarts) follow.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Whether `registry` may be reached over plain HTTP (loopback or listed as insecure).
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        is_loopback_host(registry)
            || self.inner.insecure_registries.iter().any(|insecure| {
                let insecure = insecure
                    .trim()
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/');
                insecure.eq_ignore_ascii_case(registry)
                    || registry
                        .rsplit_once(':')
                        .is_some_and(|(host, _)| host.eq_ignore_ascii_case(insecure))
            })
    }

    // ----- manifests -------------------------------------------------------------------------

    /// The digest, media type and size of a manifest, or `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<ManifestDescriptor>, RegistryError> {
        self.head_manifest_in(&Repository::of(reference), ManifestRef::of(reference))
            .await
    }

    /// [`RegistryClient::head_manifest`] by repository and tag or digest.
    pub async fn head_manifest_in(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
    ) -> Result<Option<ManifestDescriptor>, RegistryError> {
        let what = format!("HEAD manifest {}", manifest.display_in(repository));
        let scopes = [Scope::pull(&repository.path)];
        let url = self
            .api_url(
                repository,
                &format!("manifests/{}", manifest.path_segment()),
            )
            .await?;
        let Some(response) = self
            .head(Call {
                method: Method::HEAD,
                url,
                registry: &repository.registry,
                scopes: &scopes,
                headers: accept_manifests(),
                body: None,
                what: &what,
            })
            .await?
        else {
            return Ok(None);
        };
        let header_digest = response
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.split(';').next().unwrap_or(ct).trim().to_string())
            .filter(|ct| media_type::is_index(ct) || media_type::is_image(ct));
        let size = response.content_length();
        match (header_digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Some(ManifestDescriptor {
                digest,
                media_type,
                size,
            })),
            // Some registries omit headers on HEAD; the manifest itself answers reliably.
            _ => {
                let manifest = self.get_manifest_in(repository, manifest).await?;
                Ok(Some(ManifestDescriptor {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: manifest.bytes.len() as u64,
                }))
            }
        }
    }

    /// Downloads a manifest, verified against the digest asked for (digest references) or the
    /// registry's `Docker-Content-Digest`. A missing manifest is [`RegistryError::NotFound`].
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        self.get_manifest_in(&Repository::of(reference), ManifestRef::of(reference))
            .await
    }

    /// [`RegistryClient::get_manifest`] by repository and tag or digest.
    pub async fn get_manifest_in(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
    ) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {}", manifest.display_in(repository));
        let url = self
            .api_url(
                repository,
                &format!("manifests/{}", manifest.path_segment()),
            )
            .await?;
        retrying(
            &self.inner.retry,
            &what,
            |_, _| {},
            || self.fetch_manifest_once(repository, manifest, url.clone(), &what),
        )
        .await
    }

    async fn fetch_manifest_once(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
        url: Url,
        what: &str,
    ) -> Result<Manifest, RegistryError> {
        let scopes = [Scope::pull(&repository.path)];
        let response = self
            .send(Call {
                method: Method::GET,
                url,
                registry: &repository.registry,
                scopes: &scopes,
                headers: accept_manifests(),
                body: None,
                what,
            })
            .await?;
        let response = self
            .expect_success(response, &repository.registry, what)
            .await?;
        let limit = self.inner.max_manifest_size;
        let too_large = || RegistryError::ManifestTooLarge {
            what: what.to_string(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_digest = response
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let body = read_body_up_to(response, what, limit, too_large).await?;
        let expected = match manifest {
            ManifestRef::Digest(digest) => Some(digest.clone()),
            ManifestRef::Tag(_) => header_digest,
        };
        let digest = match expected {
            Some(expected) => {
                let mut verifier = expected.verifier();
                verifier.update(&body);
                let actual = verifier.finish();
                if actual != expected {
                    return Err(RegistryError::DigestMismatch {
                        what: what.to_string(),
                        expected,
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256_of(&body),
        };
        Manifest::parse(body, content_type.as_deref(), digest).map_err(|source| {
            RegistryError::Manifest {
                what: what.to_string(),
                source,
            }
        })
    }

    /// Pushes `manifest`'s exact bytes and media type under `name` (a tag, or its own digest)
    /// and returns the digest. Its blobs and child manifests must already be in the repository.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        name: ManifestRef<'_>,
        manifest: &Manifest,
    ) -> Result<Digest, RegistryError> {
        let what = format!("push manifest {}", name.display_in(repository));
        let scopes = [Scope::pull_push(&repository.path)];
        let url = self
            .api_url(repository, &format!("manifests/{}", name.path_segment()))
            .await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&manifest.media_type).map_err(|_| RegistryError::Protocol {
                what: what.clone(),
                reason: format!("media type {:?} is not a valid header", manifest.media_type),
            })?,
        );
        let response = self
            .send(Call {
                method: Method::PUT,
                url,
                registry: &repository.registry,
                scopes: &scopes,
                headers,
                body: Some(manifest.bytes.clone()),
                what: &what,
            })
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        check_returned_digest(&response, &manifest.digest, &what)?;
        Ok(manifest.digest.clone())
    }

    // ----- blobs -----------------------------------------------------------------------------

    /// The size of a blob in `repository`, or `None` when the repository does not hold it.
    pub async fn head_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.head_blob_scoped(repository, digest, &[Scope::pull(&repository.path)])
            .await
    }

    pub(crate) async fn head_blob_scoped(
        &self,
        repository: &Repository,
        digest: &Digest,
        scopes: &[Scope],
    ) -> Result<Option<u64>, RegistryError> {
        let what = format!("HEAD blob {digest} in {repository}");
        let url = self.api_url(repository, &format!("blobs/{digest}")).await?;
        let response = self
            .head(Call {
                method: Method::HEAD,
                url,
                registry: &repository.registry,
                scopes,
                headers: HeaderMap::new(),
                body: None,
                what: &what,
            })
            .await?;
        Ok(response.map(|response| response.content_length().unwrap_or(0)))
    }

    /// Starts downloading a blob; the body is read by the caller (streaming).
    pub(crate) async fn get_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Response, RegistryError> {
        let what = format!("GET blob {digest} from {repository}");
        let scopes = [Scope::pull(&repository.path)];
        let url = self.api_url(repository, &format!("blobs/{digest}")).await?;
        let response = self
            .send(Call {
                method: Method::GET,
                url,
                registry: &repository.registry,
                scopes: &scopes,
                headers: HeaderMap::new(),
                body: None,
                what: &what,
            })
            .await?;
        self.expect_success(response, &repository.registry, &what)
            .await
    }

    /// Downloads a small blob (an image config) into memory, verified, refusing more than `limit`.
    pub async fn get_blob_bytes(
        &self,
        repository: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("blob {digest} from {repository}");
        retrying(
            &self.inner.retry,
            &what,
            |_, _| {},
            || async {
                let response = self.get_blob(repository, digest).await?;
                let body =
                    read_body_up_to(response, &what, limit, || RegistryError::SizeMismatch {
                        what: what.clone(),
                        reason: format!("larger than the {limit}-byte limit for in-memory blobs"),
                    })
                    .await?;
                let mut verifier = digest.verifier();
                verifier.update(&body);
                let actual = verifier.finish();
                if &actual != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: what.clone(),
                        expected: digest.clone(),
                        actual,
                    });
                }
                Ok(body)
            },
        )
        .await
    }

    /// Opens an upload session and returns its URL.
    pub(crate) async fn start_upload(&self, repository: &Repository) -> Result<Url, RegistryError> {
        let what = format!("start blob upload to {repository}");
        let scopes = [Scope::pull_push(&repository.path)];
        let response = self.post_uploads(repository, &[], &scopes, &what).await?;
        upload_location(&response, &what)
    }

    /// `POST /v2/<repository>/blobs/uploads/` with `query`: the request that opens an upload
    /// session, or mounts a blob when the query names one.
    async fn post_uploads(
        &self,
        repository: &Repository,
        query: &[(&str, &str)],
        scopes: &[Scope],
        what: &str,
    ) -> Result<Response, RegistryError> {
        let mut url = self.api_url(repository, "blobs/uploads/").await?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self
            .send(Call {
                method: Method::POST,
                url,
                registry: &repository.registry,
                scopes,
                headers: HeaderMap::new(),
                body: None,
                what,
            })
            .await?;
        self.expect_success(response, &repository.registry, what)
            .await
    }

    /// Asks the registry to link a blob it holds in `from` (same registry) into `repository`.
    pub(crate) async fn mount_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let what = format!(
            "mount blob {digest} from {}/{from} into {repository}",
            repository.registry
        );
        let scopes = [Scope::pull_push(&repository.path), Scope::pull(from)];
        let digest = digest.to_string();
        let query = [("mount", digest.as_str()), ("from", from)];
        let response = self
            .post_uploads(repository, &query, &scopes, &what)
            .await?;
        if response.status() == StatusCode::CREATED {
            Ok(MountOutcome::Mounted)
        } else {
            Ok(MountOutcome::Upload(upload_location(&response, &what)?))
        }
    }

    /// Completes an upload in one streaming `PUT` of `size` bytes. The body stream must fail
    /// (rather than end) if the content turns out wrong, so the registry never commits it.
    pub(crate) async fn put_blob_stream(
        &self,
        repository: &Repository,
        upload: &Url,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> Result<(), RegistryError> {
        let what = format!("upload blob {digest} to {repository}");
        let url = with_query_param(upload, "digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(size));
        let response = self
            .send_unrepeatable(Method::PUT, url, repository, headers, body, &what)
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        check_returned_digest(&response, digest, &what)
    }

    /// Sends one chunk of a chunked upload and returns the URL for the next request.
    pub(crate) async fn patch_chunk(
        &self,
        repository: &Repository,
        upload: &Url,
        offset: u64,
        chunk: Bytes,
    ) -> Result<Url, RegistryError> {
        let what = format!("upload chunk at byte {offset} to {repository}");
        let len = chunk.len() as u64;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
        let range = format!("{}-{}", offset, offset + len.saturating_sub(1));
        headers.insert(
            reqwest::header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("a numeric range is a valid header"),
        );
        let response = self
            .send_unrepeatable(
                Method::PATCH,
                upload.clone(),
                repository,
                headers,
                Body::from(chunk),
                &what,
            )
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        // Some registries acknowledge a chunk without storing all of it; the Range header says
        // what they hold, and a shortfall must stop the upload rather than corrupt the blob.
        if let Some(range) = response.headers().get(reqwest::header::RANGE) {
            let held = range
                .to_str()
                .ok()
                .and_then(|r| r.trim().trim_start_matches("bytes=").split_once('-'))
                .and_then(|(_, end)| end.trim().parse::<u64>().ok());
            if let Some(last) = held {
                if last + 1 != offset + len {
                    return Err(RegistryError::SizeMismatch {
                        what,
                        reason: format!(
                            "the registry holds {} bytes after this chunk, expected {}",
                            last + 1,
                            offset + len
                        ),
                    });
                }
            }
        }
        match response.headers().get(reqwest::header::LOCATION) {
            Some(_) => upload_location(&response, &what),
            None => Ok(upload.clone()),
        }
    }

    /// Commits a chunked upload whose content has been sent and verified.
    pub(crate) async fn finish_upload(
        &self,
        repository: &Repository,
        upload: &Url,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let what = format!("complete upload of blob {digest} to {repository}");
        let url = with_query_param(upload, "digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(0u64));
        let response = self
            .send_unrepeatable(
                Method::PUT,
                url,
                repository,
                headers,
                Body::from(Bytes::new()),
                &what,
            )
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        check_returned_digest(&response, digest, &what)
    }

    /// Abandons an upload session (best effort: the registry expires it anyway).
    pub(crate) async fn cancel_upload(&self, repository: &Repository, upload: &Url) {
        let scopes = [Scope::pull_push(&repository.path)];
        let Ok(Some(auth)) = self
            .inner
            .auth
            .authorization(&repository.registry, &scopes)
            .await
        else {
            let _ = self.inner.http.delete(upload.clone()).send().await;
            return;
        };
        let _ = self
            .inner
            .http
            .delete(upload.clone())
            .header(AUTHORIZATION, auth)
            .send()
            .await;
    }

    // ----- plumbing --------------------------------------------------------------------------

    async fn api_url(&self, repository: &Repository, rest: &str) -> Result<Url, RegistryError> {
        let base = self.base_url(&repository.registry).await?;
        base.join(&format!("v2/{}/{rest}", repository.path))
            .map_err(|e| RegistryError::Protocol {
                what: format!("repository {repository}"),
                reason: format!("cannot form an API URL: {e}"),
            })
    }

    /// `https://host/`, or `http://host/` for a host allowed plain HTTP that does not speak TLS.
    async fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        if let Some(url) = self.base_urls().get(registry) {
            return Ok(url.clone());
        }
        let host = api_host(registry);
        let https = parse_base(&format!("https://{host}/"), registry)?;
        let url = if self.allows_plain_http(registry) {
            self.probe_plain_http(registry, host, https).await?
        } else {
            https
        };
        self.base_urls().insert(registry.to_string(), url.clone());
        Ok(url)
    }

    fn base_urls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Url>> {
        self.inner
            .base_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// For a host allowed plain HTTP: does it serve plain HTTP, or TLS (as a loopback test
    /// registry with its own CA does)? A TLS server answers a plain request with 400.
    async fn probe_plain_http(
        &self,
        registry: &str,
        host: &str,
        https: Url,
    ) -> Result<Url, RegistryError> {
        let http = parse_base(&format!("http://{host}/"), registry)?;
        let ping = http.join("v2/").expect("static path");
        let what = format!("connect to {registry}");
        let answer = retrying(
            &self.inner.retry,
            &what,
            |_, _| {},
            || async {
                let response =
                    self.inner
                        .http
                        .get(ping.clone())
                        .send()
                        .await
                        .map_err(|source| RegistryError::Transport {
                            what: what.clone(),
                            source,
                        })?;
                fail_retryable_status(response, &what).await
            },
        )
        .await;
        match answer {
            Ok(response) if response.status() == StatusCode::BAD_REQUEST => Ok(https),
            Ok(_) => Ok(http),
            Err(plain_error) => {
                let tls_ping = https.join("v2/").expect("static path");
                match self.inner.http.get(tls_ping).send().await {
                    Ok(_) => Ok(https),
                    Err(_) => Err(plain_error),
                }
            }
        }
    }

    /// Sends a repeatable request with authentication, retrying per the policy. Returns the
    /// final response whatever its status (other than 429/5xx, which are retried).
    async fn send(&self, call: Call<'_>) -> Result<Response, RegistryError> {
        retrying(
            &self.inner.retry,
            call.what,
            |_, _| {},
            || self.send_once(&call),
        )
        .await
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut authorization = self
            .inner
            .auth
            .authorization(call.registry, call.scopes)
            .await?;
        let mut challenged = false;
        loop {
            let mut request = self
                .inner
                .http
                .request(call.method.clone(), call.url.clone())
                .headers(call.headers.clone());
            if let Some(header) = &authorization {
                request = request.header(AUTHORIZATION, header.clone());
            }
            if let Some(body) = &call.body {
                request = request.body(body.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|source| RegistryError::Transport {
                    what: call.what.to_string(),
                    source,
                })?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                self.answer_challenge(
                    &response,
                    call.registry,
                    call.scopes,
                    authorization.as_ref(),
                )
                .await?;
                let renewed = self
                    .inner
                    .auth
                    .authorization(call.registry, call.scopes)
                    .await?;
                if renewed.is_some() || authorization.is_some() {
                    authorization = renewed;
                    continue;
                }
            }
            return fail_retryable_status(response, call.what).await;
        }
    }

    /// Hands a 401's `WWW-Authenticate` challenges to the authenticator, which forgets what
    /// `refused` carried and learns how to authenticate next time.
    async fn answer_challenge(
        &self,
        response: &Response,
        registry: &str,
        scopes: &[Scope],
        refused: Option<&HeaderValue>,
    ) -> Result<(), RegistryError> {
        let challenges = parse_challenges(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        self.inner
            .auth
            .handle_challenge(registry, scopes, &challenges, refused)
            .await
    }

    /// Sends a request whose body is a one-shot stream: one attempt, authenticated with what is
    /// already known (the upload session was opened with the same scopes). Failures surface as
    /// errors the caller's restart loop understands.
    async fn send_unrepeatable(
        &self,
        method: Method,
        url: Url,
        repository: &Repository,
        headers: HeaderMap,
        body: Body,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let scopes = [Scope::pull_push(&repository.path)];
        let authorization = self
            .inner
            .auth
            .authorization(&repository.registry, &scopes)
            .await?;
        let mut request = self
            .inner
            .http
            .request(method, url)
            .headers(headers)
            .body(body);
        if let Some(header) = &authorization {
            request = request.header(AUTHORIZATION, header.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Transport {
                what: what.to_string(),
                source,
            })?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.answer_challenge(
                &response,
                &repository.registry,
                &scopes,
                authorization.as_ref(),
            )
            .await?;
            return Err(RegistryError::Reauthenticate {
                what: what.to_string(),
            });
        }
        fail_retryable_status(response, what).await
    }

    /// Sends a HEAD request: `None` when the registry answers 404, else the successful response.
    async fn head(&self, call: Call<'_>) -> Result<Option<Response>, RegistryError> {
        let (registry, what) = (call.registry, call.what);
        let response = self.send(call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.expect_success(response, registry, what)
            .await
            .map(Some)
    }

    /// Passes a 2xx response through; turns anything else into an error that says why.
    async fn expect_success(
        &self,
        response: Response,
        registry: &str,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = crate::transport::error_detail(response).await;
            let mut reason = self.inner.auth.describe_rejection(registry, status).await;
            if !detail.is_empty() {
                reason = format!("{reason} ({detail})");
            }
            return Err(RegistryError::Unauthorized {
                what: what.to_string(),
                reason,
            });
        }
        Err(status_error(response, what).await)
    }
}

/// Reads a whole response body into memory, failing with `too_large()` as soon as it passes
/// `limit` bytes (a hostile or broken registry cannot make us buffer more).
async fn read_body_up_to(
    mut response: Response,
    what: &str,
    limit: usize,
    too_large: impl Fn() -> RegistryError,
) -> Result<Bytes, RegistryError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Transport {
            what: what.to_string(),
            source,
        })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn accept_manifests() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCEPT,
        HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
    );
    headers
}

fn parse_base(url: &str, registry: &str) -> Result<Url, RegistryError> {
    Url::parse(url)
        .map_err(|e| RegistryError::Config(format!("invalid registry host {registry:?}: {e}")))
}

fn upload_location(response: &Response, what: &str) -> Result<Url, RegistryError> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Protocol {
            what: what.to_string(),
            reason: "the registry sent no Location for the upload".to_string(),
        })?;
    resolve_location(response.url(), location).map_err(|reason| RegistryError::Protocol {
        what: what.to_string(),
        reason,
    })
}

/// A registry that reports a different digest for what we pushed has not stored our bytes.
fn check_returned_digest(
    response: &Response,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let returned = response
        .headers()
        .get(DOCKER_CONTENT_DIGEST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Digest>().ok());
    match returned {
        Some(actual) if actual.algorithm() == expected.algorithm() && &actual != expected => {
            Err(RegistryError::DigestMismatch {
                what: what.to_string(),
                expected: expected.clone(),
                actual,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        let client = RegistryClient::new(ClientConfig {
            insecure_registries: vec!["registry.lan:5000".into(), "http://plain.lan/".into()],
            ..ClientConfig::default()
        })
        .unwrap();
        assert!(client.allows_plain_http("127.0.0.1:5000"));
        assert!(client.allows_plain_http("localhost"));
        assert!(client.allows_plain_http("registry.lan:5000"));
        assert!(client.allows_plain_http("plain.lan"));
        assert!(client.allows_plain_http("plain.lan:8080"));
        assert!(!client.allows_plain_http("registry.lan:6000"));
        assert!(!client.allows_plain_http("docker.io"));
        assert!(!client.allows_plain_http("quay.io"));
    }

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

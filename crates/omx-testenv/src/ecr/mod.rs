//! An ECR stand-in: Amazon ECR's registry API (`/v2`) and the control-plane calls omx-ecr-helper
//! makes, served on one loopback port from one state, with the bytes stored in a real
//! docker-registry behind it.
//!
//! It emulates where ECR differs from CNCF distribution, each rule citing its public source in
//! the module that implements it (see `../shared/ecr-behaviour.md` for the list):
//! Basic auth with its own `GetAuthorizationToken` tokens that can die before the 12 hours they
//! claim (403 `DENIED`), repository name rules, repositories that must exist before a push unless
//! a `CREATE_ON_PUSH` template covers them, the 4 MiB manifest cap, immutable tags, a PutImage
//! rate limit (429 without `Retry-After`), chunked uploads answered 201 with a `Range` that stops
//! advancing and a 5 MiB minimum part, opt-in blob mounting restricted to blobs a manifest of
//! `from` references, pull-through-cache imports on a pull by tag only (never by digest) with
//! the 24-hour upstream re-check, children of an imported index readable a little later, and
//! creation templates applied to the repositories such pulls and pushes create.
//!
//! Control-plane calls are answered at `POST /` (AWS JSON 1.1, as `api.ecr.<region>.amazonaws.com`);
//! point `AWS_ENDPOINT_URL_ECR` and the registry endpoint at [`EcrStandIn::endpoint`].

mod control;
mod import;
mod registry_api;
mod state;
mod uploads;
pub(crate) mod wire;

use std::fmt;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use state::{Counters, RepositoryOrigin};

use crate::http::http_request;
use crate::registry::Registry;
use crate::server::Acceptor;
use state::EcrState;
use wire::Connection;

/// Behaviour knobs fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) index_children_delay: Duration,
    pub(crate) upstream_check_interval: Duration,
}

/// Options for [`EcrStandIn`]; see [`EcrStandIn::builder`].
#[derive(Debug, Clone)]
pub struct EcrBuilder {
    account: String,
    region: String,
    token_lifetime: Duration,
    put_image_rate: Option<f64>,
    index_children_delay: Duration,
    upstream_check_interval: Duration,
    upstreams: Vec<(String, String)>,
    blob_mounting: bool,
}

impl Default for EcrBuilder {
    fn default() -> EcrBuilder {
        EcrBuilder {
            account: "123456789012".to_string(),
            region: "us-east-1".to_string(),
            token_lifetime: Duration::from_secs(12 * 3600),
            put_image_rate: None,
            index_children_delay: Duration::ZERO,
            upstream_check_interval: Duration::from_secs(24 * 3600),
            upstreams: Vec::new(),
            blob_mounting: false,
        }
    }
}

impl EcrBuilder {
    pub fn account(mut self, account: &str) -> Self {
        self.account = account.to_string();
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    /// How long a token from `GetAuthorizationToken` really works (its `expiresAt` always
    /// claims 12 hours): the life of the temporary credentials it was made from.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Manifest pushes (PutImage) allowed per second; unlimited by default.
    pub fn put_image_rate(mut self, per_second: f64) -> Self {
        self.put_image_rate = Some(per_second);
        self
    }

    /// How long after an index is imported through the cache its children answer 404 by digest.
    pub fn index_children_delay(mut self, delay: Duration) -> Self {
        self.index_children_delay = delay;
        self
    }

    /// How often a cached tag is re-checked upstream (ECR: 24 hours).
    pub fn upstream_check_interval(mut self, interval: Duration) -> Self {
        self.upstream_check_interval = interval;
        self
    }

    /// Serves pull-through-cache rules whose `upstreamRegistryUrl` is `upstream_url` from the
    /// local registry `host` (`127.0.0.1:PORT`).
    pub fn upstream(mut self, upstream_url: &str, host: &str) -> Self {
        self.upstreams
            .push((upstream_url.to_string(), host.to_string()));
        self
    }

    /// Starts with the `BLOB_MOUNTING` account setting `ENABLED`.
    pub fn blob_mounting(mut self, enabled: bool) -> Self {
        self.blob_mounting = enabled;
        self
    }

    /// Starts the stand-in (and its backing docker-registry); panics when it cannot.
    pub fn start(self) -> EcrStandIn {
        self.try_start().expect(
            "docker-registry is missing and OMX_TESTENV_SKIP=1 is set: use try_start to skip",
        )
    }

    /// Like [`EcrBuilder::start`], `None` when docker-registry is missing and
    /// `OMX_TESTENV_SKIP=1` is set.
    pub fn try_start(self) -> Option<EcrStandIn> {
        let backing = Registry::try_start()?;
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the ECR stand-in");
        let port = listener.local_addr().expect("bound address").port();
        let mut state = EcrState::new(&self.account, &self.region, self.put_image_rate);
        state.token_lifetime = self.token_lifetime;
        if self.blob_mounting {
            state
                .account_settings
                .insert("BLOB_MOUNTING".to_string(), "ENABLED".to_string());
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            settings: Settings {
                index_children_delay: self.index_children_delay,
                upstream_check_interval: self.upstream_check_interval,
            },
            backing_host: backing.host(),
            public_host: format!("127.0.0.1:{port}"),
            upstreams: self.upstreams,
            import_lock: Mutex::new(()),
            requests: Mutex::new(Vec::new()),
        });
        let acceptor = Acceptor::start(
            listener,
            "ecr-stand-in",
            Arc::clone(&shared),
            |stream, shared| {
                let _ = serve(&stream, shared);
            },
        );
        Some(EcrStandIn {
            shared,
            port,
            _acceptor: acceptor,
            backing,
        })
    }
}

/// One request the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRequest {
    pub method: String,
    /// Path and query for `/v2` requests; the operation name for control-plane calls.
    pub target: String,
    pub status: u16,
}

pub(crate) struct Shared {
    state: Mutex<EcrState>,
    pub(crate) settings: Settings,
    pub(crate) backing_host: String,
    pub(crate) public_host: String,
    upstreams: Vec<(String, String)>,
    pub(crate) import_lock: Mutex<()>,
    requests: Mutex<Vec<EcrRequest>>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, EcrState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn account(&self) -> String {
        self.state().account.clone()
    }

    pub(crate) fn upstream_host(&self, upstream_url: &str) -> Option<String> {
        self.upstreams
            .iter()
            .find(|(url, _)| url.eq_ignore_ascii_case(upstream_url))
            .map(|(_, host)| host.clone())
    }

    /// A stored manifest's media type and bytes, read from the backing registry.
    pub(crate) fn backing_manifest(&self, name: &str, digest: &str) -> Option<(String, Vec<u8>)> {
        let media_type = self
            .state()
            .repositories
            .get(name)?
            .images
            .get(digest)?
            .media_type
            .clone();
        let response = http_request(
            &self.backing_host,
            "GET",
            &format!("/v2/{name}/manifests/{digest}"),
            &[("Accept", &media_type)],
            &[],
        )
        .ok()?;
        (response.status == 200).then_some((media_type, response.body))
    }

    fn record(&self, method: &str, target: &str, status: u16) {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(EcrRequest {
                method: method.to_string(),
                target: target.to_string(),
                status,
            });
    }
}

/// A running ECR stand-in; dropping it stops it and its backing registry.
pub struct EcrStandIn {
    shared: Arc<Shared>,
    port: u16,
    _acceptor: Acceptor,
    backing: Registry,
}

impl fmt::Debug for EcrStandIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrStandIn")
            .field("endpoint", &self.endpoint())
            .field("backing", &self.backing.host())
            .finish()
    }
}

/// What a test can read of one repository.
#[derive(Debug, Clone)]
pub struct RepositoryView {
    pub origin: RepositoryOrigin,
    pub resource_tags: Vec<(String, String)>,
    pub policy: Option<String>,
    pub tag_mutability: String,
    /// Tag -> digest.
    pub image_tags: Vec<(String, String)>,
    /// Every manifest digest held.
    pub digests: Vec<String>,
}

impl EcrStandIn {
    pub fn builder() -> EcrBuilder {
        EcrBuilder::default()
    }

    /// A stand-in for account `123456789012` in `us-east-1`, with ECR's defaults.
    pub fn start() -> EcrStandIn {
        EcrBuilder::default().start()
    }

    pub fn try_start() -> Option<EcrStandIn> {
        EcrBuilder::default().try_start()
    }

    /// `127.0.0.1:PORT`: the registry endpoint (`--ecr-registry-endpoint`).
    pub fn host(&self) -> String {
        self.shared.public_host.clone()
    }

    /// `http://127.0.0.1:PORT`: the control-plane endpoint (`AWS_ENDPOINT_URL_ECR`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.shared.public_host)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn account(&self) -> String {
        self.shared.account()
    }

    /// `<account>.dkr.ecr.<region>.amazonaws.com`: the host private URIs name.
    pub fn registry_host(&self) -> String {
        self.shared.state().registry_host()
    }

    /// The docker-registry holding the bytes.
    pub fn backing(&self) -> &Registry {
        &self.backing
    }

    /// Calls a control-plane operation as a client would (for test setup and assertions):
    /// `(status, JSON answer)`.
    pub fn call(&self, operation: &str, input: Value) -> (u16, Value) {
        let target = format!("AmazonEC2ContainerRegistry_V20150921.{operation}");
        let response = http_request(
            &self.shared.public_host,
            "POST",
            "/",
            &[
                ("X-Amz-Target", &target),
                ("Content-Type", "application/x-amz-json-1.1"),
            ],
            input.to_string().as_bytes(),
        )
        .expect("the ECR stand-in answers");
        let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status, body)
    }

    /// `(user, password)` for the registry API, from a fresh `GetAuthorizationToken`: what
    /// `aws ecr get-login-password` gives a `docker login`.
    pub fn login(&self) -> (String, String) {
        use base64::Engine as _;
        let (_, answer) = self.call("GetAuthorizationToken", Value::Null);
        let encoded = answer["authorizationData"][0]["authorizationToken"]
            .as_str()
            .unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        let (user, password) = decoded.split_once(':').unwrap_or_default();
        (user.to_string(), password.to_string())
    }

    /// Pushes an image layout with skopeo under `repo_and_tag`, logged in with a fresh token, as
    /// another team's pipeline would; returns its digest.
    pub fn push(
        &self,
        fixture: &crate::ImageFixture,
        repo_and_tag: &str,
    ) -> std::io::Result<String> {
        let target = crate::PushTarget {
            host: self.host(),
            credentials: Some(self.login()),
            cert_dir: None,
            tls_verify: false,
        };
        crate::push_layout(fixture.layout_dir(), &target, repo_and_tag)
    }

    /// Names of every repository, sorted.
    pub fn repository_names(&self) -> Vec<String> {
        self.shared.state().repositories.keys().cloned().collect()
    }

    pub fn repository(&self, name: &str) -> Option<RepositoryView> {
        let state = self.shared.state();
        let repository = state.repositories.get(name)?;
        let mut digests: Vec<String> = repository.images.keys().cloned().collect();
        digests.sort();
        Some(RepositoryView {
            origin: repository.origin,
            resource_tags: repository.resource_tags.clone(),
            policy: repository.policy.clone(),
            tag_mutability: repository.tag_mutability.clone(),
            image_tags: repository
                .image_tags
                .iter()
                .map(|(tag, digest)| (tag.clone(), digest.clone()))
                .collect(),
            digests,
        })
    }

    /// Ends the life of every token issued so far, as when the temporary credentials they came
    /// from expire: requests carrying them get 403 from now on.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for until in self.shared.state().tokens.values_mut() {
            *until = now;
        }
    }

    /// How long tokens issued from now on really work.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.state().token_lifetime = lifetime;
    }

    pub fn tokens_issued(&self) -> u64 {
        self.shared.state().tokens_issued
    }

    /// Changes the PutImage rate limit (`None`: unlimited).
    pub fn set_put_image_rate(&self, per_second: Option<f64>) {
        self.shared.state().put_image_bucket.set_rate(per_second);
    }

    pub fn counters(&self) -> Counters {
        self.shared.state().counters.clone()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<EcrRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

const MAX_CONTROL_BODY: usize = 1024 * 1024;

fn serve(stream: &TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut connection = Connection::new(stream)?;
    while let Some(request) = connection.next_request()? {
        let wants_close = request.head.has_token("connection", "close");
        if request.path.starts_with("/v2") {
            let status = registry_api::handle(shared, &mut connection, &request)?;
            shared.record(&request.method, &request.target, status);
        } else {
            let operation = request
                .head
                .header("x-amz-target")
                .and_then(|target| target.rsplit_once('.'))
                .map(|(_, operation)| operation.to_string())
                .unwrap_or_default();
            let input = connection
                .read_body(&request, MAX_CONTROL_BODY)?
                .and_then(|body| serde_json::from_slice::<Value>(&body).ok())
                .unwrap_or(Value::Null);
            let (status, answer) = control::handle(shared, &operation, &input);
            connection.aws_json(status, &answer)?;
            shared.record("POST", &operation, status);
        }
        if wants_close {
            break;
        }
    }
    Ok(())
}

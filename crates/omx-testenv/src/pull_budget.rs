//! A pull-budget stand-in: Docker Hub's pull limits in front of a local docker-registry.
//!
//! What it emulates, from docker/docs `content/manuals/docker-hub/usage/` (`_index.md`,
//! `pulls.md`, "View pull rate and limit") and the refusals users quote:
//! - a pull is a `GET` of a manifest (`/v2/<name>/manifests/<reference>`); an index and each
//!   platform manifest fetched count one each; a `HEAD` never counts ("Using GET emulates a
//!   real pull and counts towards the limit. Using HEAD won't"); blobs never count;
//! - budgets are per identity: anonymous pulls per IP address (10 an hour since April 2025:
//!   "Unauthenticated users: 10 per IPv4 address or IPv6 /64 subnet"), authenticated Personal
//!   accounts per account (100 an hour); both configurable, as is the window;
//! - manifest GETs and HEADs carry `ratelimit-limit: <limit>;w=<seconds>`,
//!   `ratelimit-remaining: <left>;w=<seconds>` and `docker-ratelimit-source` (the IP address, or
//!   the account);
//! - a GET past the budget answers `429` `TOOMANYREQUESTS` with those headers (remaining `0`), no
//!   `Retry-After`, and Docker Hub's message: "You have reached your unauthenticated pull rate
//!   limit. https://www.docker.com/increase-rate-limit" anonymously (docker/hub-feedback #2464),
//!   "You have reached your pull rate limit as '<user>': dckr_jti_<id>. You may increase the
//!   limit by upgrading. https://www.docker.com/increase-rate-limit" authenticated;
//! - authentication is Docker Hub's token flow (distribution `docs/spec/auth/token.md`, as
//!   `auth.docker.io/token`): `/v2` requests without a token get `401` with a `Bearer` challenge
//!   whose realm is this server's `/token`; `/token` issues an anonymous token, or an account's
//!   token for valid Basic credentials (`401` for wrong ones).
//!
//! Pulls are counted in a sliding window per identity. Not emulated: the redirect of blob
//! downloads to a CDN, abuse rate limits, unlimited (paid or sponsored) images.

use std::collections::HashMap;
use std::fmt;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ecr::wire::{forward, Backing, Connection, Request};
use crate::http::basic_auth_header;
use crate::registry::Registry;
use crate::server::Acceptor;

/// Who a pull is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credentials: counted per IP address.
    Anonymous,
    /// Authenticated as this account.
    User(String),
}

/// One request the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Who the token named (`None`: no token, or the token endpoint itself).
    pub identity: Option<Identity>,
    pub status: u16,
}

impl BudgetRequest {
    /// A `GET` of a manifest: what Docker Hub counts as a pull, whether or not it was served.
    pub fn is_manifest_get(&self) -> bool {
        self.method == "GET" && self.target.contains("/manifests/")
    }
}

/// Options for [`PullBudgetRegistry`]; see [`PullBudgetRegistry::builder`].
#[derive(Debug, Clone)]
pub struct PullBudgetBuilder {
    anonymous_limit: u64,
    authenticated_limit: u64,
    window: Duration,
    users: Vec<(String, String)>,
}

impl Default for PullBudgetBuilder {
    fn default() -> Self {
        PullBudgetBuilder {
            anonymous_limit: 10,
            authenticated_limit: 100,
            window: Duration::from_secs(3600),
            users: Vec::new(),
        }
    }
}

impl PullBudgetBuilder {
    /// Pulls per window without credentials (Docker Hub: 10 an hour).
    pub fn anonymous_limit(mut self, pulls: u64) -> Self {
        self.anonymous_limit = pulls;
        self
    }

    /// Pulls per window for each account (Docker Hub Personal: 100 an hour).
    pub fn authenticated_limit(mut self, pulls: u64) -> Self {
        self.authenticated_limit = pulls;
        self
    }

    /// The window pulls are counted in (published as `w=<seconds>`, whole seconds).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// An account whose Basic credentials `/token` accepts.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Starts in front of `backing` (an anonymous plain-HTTP docker-registry).
    pub fn start(self, backing: &Registry) -> PullBudgetRegistry {
        assert!(
            !backing.is_tls(),
            "the pull-budget stand-in forwards plain HTTP; give it a non-TLS registry"
        );
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("cannot bind the pull-budget stand-in");
        let host = listener.local_addr().expect("bound address").to_string();
        let shared = Arc::new(Shared {
            settings: self,
            backing_host: backing.host(),
            host: host.clone(),
            pulls: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            requests: Mutex::new(Vec::new()),
        });
        let acceptor = Acceptor::start(
            listener,
            "pull-budget",
            Arc::clone(&shared),
            |stream, shared| {
                let _ = serve(&stream, shared);
            },
        );
        PullBudgetRegistry {
            shared,
            _acceptor: acceptor,
        }
    }
}

struct Shared {
    settings: PullBudgetBuilder,
    backing_host: String,
    host: String,
    /// Per identity, when each pull still inside the window was served.
    pulls: Mutex<HashMap<Identity, Vec<Instant>>>,
    /// Tokens issued, and whom they name.
    tokens: Mutex<HashMap<String, Identity>>,
    next_token: AtomicU64,
    requests: Mutex<Vec<BudgetRequest>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Docker Hub's pull limits in front of a docker-registry; stopped when dropped.
pub struct PullBudgetRegistry {
    shared: Arc<Shared>,
    _acceptor: Acceptor,
}

impl fmt::Debug for PullBudgetRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullBudgetRegistry")
            .field("host", &self.shared.host)
            .field("backing", &self.shared.backing_host)
            .finish_non_exhaustive()
    }
}

impl PullBudgetRegistry {
    pub fn builder() -> PullBudgetBuilder {
        PullBudgetBuilder::default()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.shared.host.clone()
    }

    /// Pulls counted against `identity` in the current window.
    pub fn pulls(&self, identity: &Identity) -> u64 {
        self.shared.pulls_in_window(identity)
    }

    /// Every request answered so far, token requests included, in order.
    pub fn requests(&self) -> Vec<BudgetRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Manifest GETs answered so far (served or refused).
    pub fn manifest_gets(&self) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.is_manifest_get())
            .count()
    }

    /// Forgets the recorded requests (the pulls counted stay).
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }
}

impl Shared {
    fn limit(&self, identity: &Identity) -> u64 {
        match identity {
            Identity::Anonymous => self.settings.anonymous_limit,
            Identity::User(_) => self.settings.authenticated_limit,
        }
    }

    fn pulls_in_window(&self, identity: &Identity) -> u64 {
        let mut pulls = lock(&self.pulls);
        let served = pulls.entry(identity.clone()).or_default();
        served.retain(|at| at.elapsed() < self.settings.window);
        served.len() as u64
    }

    /// Counts a pull unless the budget is spent; `false` when it is.
    fn take_pull(&self, identity: &Identity) -> bool {
        let limit = self.limit(identity);
        let mut pulls = lock(&self.pulls);
        let served = pulls.entry(identity.clone()).or_default();
        served.retain(|at| at.elapsed() < self.settings.window);
        if served.len() as u64 >= limit {
            return false;
        }
        served.push(Instant::now());
        true
    }

    /// The three headers Docker Hub sends on manifest GETs and HEADs.
    fn budget_headers(&self, identity: &Identity) -> Vec<(String, String)> {
        let limit = self.limit(identity);
        let left = limit.saturating_sub(self.pulls_in_window(identity));
        let window = self.settings.window.as_secs().max(1);
        let source = match identity {
            Identity::Anonymous => "127.0.0.1".to_string(),
            Identity::User(name) => name.clone(),
        };
        vec![
            ("ratelimit-limit".to_string(), format!("{limit};w={window}")),
            (
                "ratelimit-remaining".to_string(),
                format!("{left};w={window}"),
            ),
            ("docker-ratelimit-source".to_string(), source),
        ]
    }

    fn issue_token(&self, identity: Identity) -> String {
        let token = format!(
            "pull-budget-token-{}",
            self.next_token.fetch_add(1, Ordering::SeqCst)
        );
        lock(&self.tokens).insert(token.clone(), identity);
        token
    }

    /// Whom the request's bearer token names; `None` without a known token.
    fn identity_of(&self, request: &Request) -> Option<Identity> {
        let token = request
            .head
            .header("authorization")?
            .strip_prefix("Bearer ")?
            .trim();
        lock(&self.tokens).get(token).cloned()
    }

    fn record(&self, request: &Request, identity: Option<Identity>, status: u16) {
        lock(&self.requests).push(BudgetRequest {
            method: request.method.clone(),
            target: request.target.clone(),
            identity,
            status,
        });
    }
}

fn serve(stream: &TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut connection = Connection::new(stream)?;
    while let Some(request) = connection.next_request()? {
        let wants_close = request.head.has_token("connection", "close");
        let (identity, status) = if request.path == "/token" {
            connection.discard_body(&request)?;
            (None, answer_token(shared, &mut connection, &request)?)
        } else {
            let identity = shared.identity_of(&request);
            let status = match &identity {
                Some(identity) => answer_api(shared, &mut connection, &request, identity)?,
                None => challenge(shared, &mut connection, &request)?,
            };
            (identity, status)
        };
        shared.record(&request, identity, status);
        if wants_close {
            break;
        }
    }
    Ok(())
}

/// `/token`: an anonymous token, or an account's for its Basic credentials.
fn answer_token(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
) -> std::io::Result<u16> {
    let identity = match request.head.header("authorization") {
        None => Identity::Anonymous,
        Some(sent) => {
            let account = shared
                .settings
                .users
                .iter()
                .find(|(name, password)| basic_auth_header(name, password) == sent.trim());
            match account {
                Some((name, _)) => Identity::User(name.clone()),
                None => {
                    let refusal = json!({"details": "incorrect username or password"});
                    return json_answer(connection, 401, &refusal);
                }
            }
        }
    };
    let token = shared.issue_token(identity);
    json_answer(
        connection,
        200,
        &json!({"token": token, "access_token": token, "expires_in": 300}),
    )
}

/// A token endpoint's JSON answer; returns its status.
fn json_answer(connection: &mut Connection, status: u16, body: &Value) -> std::io::Result<u16> {
    let headers = [("Content-Type", "application/json".to_string())];
    connection.respond(status, &headers, body.to_string().as_bytes(), false)?;
    Ok(status)
}

/// A `/v2` request without a token: Docker Hub's Bearer challenge.
fn challenge(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
) -> std::io::Result<u16> {
    connection.discard_body(request)?;
    let mut challenge = format!(
        "Bearer realm=\"http://{}/token\",service=\"registry.docker.io\"",
        shared.host
    );
    if let Some(repository) = repository_of(&request.path) {
        challenge.push_str(&format!(",scope=\"repository:{repository}:pull\""));
    }
    let body = json!({"errors": [{"code": "UNAUTHORIZED",
        "message": "authentication required", "detail": null}]});
    connection.respond(
        401,
        &[
            ("Content-Type", "application/json".to_string()),
            ("WWW-Authenticate", challenge),
        ],
        body.to_string().as_bytes(),
        request.method == "HEAD",
    )?;
    Ok(401)
}

/// `/v2/<name>/(manifests|blobs)/...` → `<name>`.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/"]
        .iter()
        .find_map(|kind| rest.find(kind).map(|at| &rest[..at]))
}

/// A `/v2` request with a token: manifest GETs spend the budget, manifest answers carry it.
fn answer_api(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    identity: &Identity,
) -> std::io::Result<u16> {
    let is_manifest = request.path.contains("/manifests/");
    let is_pull = is_manifest && request.method == "GET";
    if is_pull && !shared.take_pull(identity) {
        connection.discard_body(request)?;
        return refuse_spent(shared, connection, identity);
    }
    let backing = Backing {
        host: &shared.backing_host,
        public_host: &shared.host,
    };
    let budget = is_manifest.then(|| shared.budget_headers(identity));
    let (status, _) = forward(
        connection,
        &backing,
        request,
        &request.target,
        &mut |response| {
            for (name, value) in budget.iter().flatten() {
                response.set_header(name, value.clone());
            }
        },
    )?;
    Ok(status)
}

/// Docker Hub's answer to a pull past the budget.
fn refuse_spent(
    shared: &Shared,
    connection: &mut Connection,
    identity: &Identity,
) -> std::io::Result<u16> {
    let message = match identity {
        Identity::Anonymous => "You have reached your unauthenticated pull rate limit. \
             https://www.docker.com/increase-rate-limit"
            .to_string(),
        Identity::User(name) => format!(
            "You have reached your pull rate limit as '{name}': dckr_jti_pullbudgetstandin. \
             You may increase the limit by upgrading. https://www.docker.com/increase-rate-limit"
        ),
    };
    let body = json!({"errors": [{"code": "TOOMANYREQUESTS", "message": message}]});
    let mut headers: Vec<(&str, String)> = vec![("Content-Type", "application/json".to_string())];
    let budget = shared.budget_headers(identity);
    headers.extend(
        budget
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone())),
    );
    connection.respond(429, &headers, body.to_string().as_bytes(), false)?;
    Ok(429)
}

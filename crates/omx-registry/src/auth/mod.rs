//! Registry authentication: challenges, credentials and the bearer-token flow.
//!
//! The first request to a registry goes out anonymously; its `401` challenge tells which scheme
//! the registry uses (Basic, or Bearer with a token realm). From then on every request carries
//! an `Authorization` header up front: Basic from the credentials, or a bearer token fetched for
//! the request's scopes (once, however many requests need it at the same time) and cached per
//! (registry, scopes) until shortly before `expires_in`.
//! A `401` on a request that carried a header drops the cached token and credentials and tries
//! once more, which also picks up rotated credentials (ECR tokens).

pub mod challenge;
pub mod credentials;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use crate::error::RegistryError;
use crate::retry::RetryPolicy;
use crate::transport::{error_detail, fail_retryable_status, retrying};
use challenge::Challenge;
use credentials::{Credential, CredentialProvider};
use omx_core::excerpt::quoted;
use omx_core::Secret;

/// A token scope such as `repository:library/ubuntu:pull` or `repository:ns/app:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope(String);

impl Scope {
    pub(crate) fn pull(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull"))
    }

    pub(crate) fn pull_push(repository: &str) -> Scope {
        Scope(format!("repository:{repository}:pull,push"))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tokens are used until this long before they expire, so a request never races expiry.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(15);
/// Registries may omit `expires_in`; the distribution spec says to assume 60 seconds.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Expiring credentials (ECR's 12-hour tokens) are renewed this long before they lapse.
const CREDENTIAL_RENEWAL_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct CachedToken {
    token: Secret,
    renew_at: Instant,
}

struct CachedCredential {
    credential: Option<Credential>,
    renew_at: Option<Instant>,
}

/// A registry and the sorted scopes a token was asked for.
type TokenKey = (String, Vec<Scope>);

/// The cache key of a token for `scopes` at `registry`, whatever order the scopes come in.
fn token_key(registry: &str, scopes: &[Scope]) -> TokenKey {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    (registry.to_string(), sorted)
}

#[derive(Default)]
struct AuthState {
    schemes: HashMap<String, Scheme>,
    tokens: HashMap<TokenKey, CachedToken>,
    /// One token fetch at a time per key: requests that miss the cache together (a copy's
    /// blob transfers start side by side) wait for the first fetch and share its token,
    /// instead of each asking the token server.
    token_fetches: HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>,
    credentials: HashMap<String, CachedCredential>,
    /// `Authorization` values of expiring credentials forgotten after a `403`, newest last (a
    /// few): a request refused with one of them while its renewal is fetched is sent again too.
    expired: Vec<Vec<u8>>,
}

/// How many forgotten expiring credentials are remembered.
const EXPIRED_REMEMBERED: usize = 8;

pub(crate) struct Authenticator {
    http: reqwest::Client,
    provider: Arc<dyn CredentialProvider>,
    retry: RetryPolicy,
    state: Mutex<AuthState>,
}

impl Authenticator {
    pub(crate) fn new(
        http: reqwest::Client,
        provider: Arc<dyn CredentialProvider>,
        retry: RetryPolicy,
    ) -> Authenticator {
        Authenticator {
            http,
            provider,
            retry,
            state: Mutex::new(AuthState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The credentials for `registry`, from the cache or the provider.
    pub(crate) async fn credential(
        &self,
        registry: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        if let Some(cached) = self.state().credentials.get(registry) {
            if cached.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(cached.credential.clone());
            }
        }
        let credential = self.provider.credentials(registry).await?;
        let renew_at = credential
            .as_ref()
            .and_then(|c| c.expires_at)
            .map(|expires| {
                let remaining = expires
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                Instant::now()
                    + remaining.saturating_sub(CREDENTIAL_RENEWAL_MARGIN.min(remaining / 2))
            });
        self.state().credentials.insert(
            registry.to_string(),
            CachedCredential {
                credential: credential.clone(),
                renew_at,
            },
        );
        Ok(credential)
    }

    /// The `Authorization` header for a request needing `scopes`, or `None` while the registry
    /// has not asked for authentication (or is anonymous-bearer and the token says so).
    pub(crate) async fn authorization(
        &self,
        registry: &str,
        scopes: &[Scope],
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let scheme = self.state().schemes.get(registry).cloned();
        let value = match scheme {
            None => return Ok(None),
            Some(Scheme::Basic) => match self.credential(registry).await? {
                Some(credential) => credential.basic_header(),
                None => return Ok(None),
            },
            Some(Scheme::Bearer { realm, service }) => {
                let token = self
                    .token(registry, &realm, service.as_deref(), scopes)
                    .await?;
                format!("Bearer {}", token.expose())
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| RegistryError::Protocol {
            what: format!("authentication to {registry}"),
            reason: "the credential or token contains characters not allowed in a header"
                .to_string(),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Learns from a `401`: records the scheme the registry asks for and forgets what was just
    /// rejected (`rejected`, the `Authorization` the request carried, if any), so the next
    /// [`Authenticator::authorization`] starts afresh.
    pub(crate) async fn handle_challenge(
        &self,
        registry: &str,
        scopes: &[Scope],
        challenges: &[Challenge],
        rejected: Option<&HeaderValue>,
    ) -> Result<(), RegistryError> {
        let bearer = challenges
            .iter()
            .find(|c| c.is("Bearer"))
            .and_then(|c| c.param("realm").map(|realm| (realm, c.param("service"))));
        let scheme = match bearer {
            Some((realm, service)) => Scheme::Bearer {
                realm: realm.to_string(),
                service: service.map(str::to_string),
            },
            None if challenges.iter().any(|c| c.is("Basic")) => Scheme::Basic,
            None => {
                let offered: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
                return Err(RegistryError::Unauthorized {
                    what: format!("authentication to {registry}"),
                    reason: format!(
                        "the registry asks for an unsupported authentication scheme ({})",
                        if offered.is_empty() {
                            "no WWW-Authenticate challenge".to_string()
                        } else {
                            offered.join(", ")
                        }
                    ),
                });
            }
        };
        let Some(forgotten) = self.forget_rejected(registry, scopes, scheme, rejected) else {
            return Ok(());
        };
        self.provider.refused(registry, &forgotten).await;
        Ok(())
    }

    /// Records `scheme` for `registry` and forgets what `rejected` carried; returns the Basic
    /// credential forgotten, for its provider to hear of.
    fn forget_rejected(
        &self,
        registry: &str,
        scopes: &[Scope],
        scheme: Scheme,
        rejected: Option<&HeaderValue>,
    ) -> Option<Credential> {
        let mut state = self.state();
        state.schemes.insert(registry.to_string(), scheme);
        let rejected = rejected?;
        // Only what this request carried is forgotten. Requests sharing a token are refused
        // together when it expires; the first one here renews it, and the others must not
        // throw that renewal away (each would fetch yet another token and re-ask the
        // credential provider).
        let carried = |value: &str| rejected.as_bytes() == value.as_bytes();
        let key = token_key(registry, scopes);
        let token_rejected = state
            .tokens
            .get(&key)
            .is_some_and(|cached| carried(&format!("Bearer {}", cached.token.expose())));
        if token_rejected {
            state.tokens.remove(&key);
        }
        let credential_rejected = token_rejected
            || state
                .credentials
                .get(registry)
                .and_then(|cached| cached.credential.as_ref())
                .is_some_and(|credential| carried(&credential.basic_header()));
        credential_rejected
            .then(|| state.credentials.remove(registry))
            .flatten()
            .and_then(|cached| cached.credential)
    }

    /// Learns from a `403` refusing a request that carried `rejected`: when that was a Basic
    /// credential that expires (a temporary token), it is forgotten here and by its provider, and
    /// the answer is `true`: the request may be sent once more with a new one.
    ///
    /// ECR answers `403 DENIED: Your authorization token has expired` once the credentials a
    /// token came from (SSO, an assumed role) expire, long before the 12 hours the token claims
    /// (amazon-ecr-credential-helper #7, #679); a `HEAD` answer has no body to tell expiry from
    /// a real denial, so every 403 refusing an expiring credential gets this one renewal.
    pub(crate) async fn handle_refusal(
        &self,
        registry: &str,
        rejected: Option<&HeaderValue>,
    ) -> bool {
        let Some(rejected) = rejected else {
            return false;
        };
        let forgotten = {
            let mut state = self.state();
            let cached = state
                .credentials
                .get(registry)
                .and_then(|cached| cached.credential.as_ref())
                .filter(|credential| credential.expires_at.is_some());
            match cached {
                // Renewed meanwhile by another refused request: send again with the new one.
                Some(credential) if rejected.as_bytes() != credential.basic_header().as_bytes() => {
                    return true
                }
                Some(_) => {
                    state.expired.push(rejected.as_bytes().to_vec());
                    let excess = state.expired.len().saturating_sub(EXPIRED_REMEMBERED);
                    state.expired.drain(..excess);
                    state
                        .credentials
                        .remove(registry)
                        .and_then(|cached| cached.credential)
                }
                // Forgotten by another request refused with the same one: its renewal is next.
                None => return state.expired.iter().any(|e| e == rejected.as_bytes()),
            }
        };
        if let Some(credential) = forgotten {
            self.provider.refused(registry, &credential).await;
        }
        true
    }

    /// [`RegistryError::Unauthorized`] for a refused request (or token request) named `what`:
    /// why, in [`Authenticator::describe_rejection`]'s words, and what the registry said.
    pub(crate) async fn rejection(
        &self,
        registry: &str,
        response: Response,
        what: String,
    ) -> RegistryError {
        let status = response.status();
        let detail = error_detail(response).await;
        let mut reason = self.describe_rejection(registry, status).await;
        if !detail.is_empty() {
            reason = format!("{reason} ({detail})");
        }
        RegistryError::Unauthorized { what, reason }
    }

    /// Why `registry` refused a request, phrased for the user.
    async fn describe_rejection(&self, registry: &str, status: StatusCode) -> String {
        let credential = self.credential(registry).await.ok().flatten();
        match (status, credential) {
            (StatusCode::FORBIDDEN, Some(c)) => {
                format!(
                    "access denied for user {:?} (the account lacks permission)",
                    c.username
                )
            }
            (StatusCode::FORBIDDEN, None) => {
                format!("access denied to anonymous users; configure credentials for {registry}")
            }
            (_, Some(c)) => format!(
                "authentication failed: credentials for user {:?} were rejected",
                c.username
            ),
            (_, None) => format!(
                "authentication required: no credentials are configured for {registry} \
                 (docker login, or --src-creds/--dest-creds)"
            ),
        }
    }

    /// The cached token for `key` while it is not due for renewal.
    fn cached_token(&self, key: &TokenKey) -> Option<Secret> {
        self.state()
            .tokens
            .get(key)
            .filter(|cached| Instant::now() < cached.renew_at)
            .map(|cached| cached.token.clone())
    }

    async fn token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<Secret, RegistryError> {
        let key = token_key(registry, scopes);
        if let Some(token) = self.cached_token(&key) {
            return Ok(token);
        }
        let gate = Arc::clone(self.state().token_fetches.entry(key.clone()).or_default());
        let _fetching = gate.lock().await;
        if let Some(token) = self.cached_token(&key) {
            return Ok(token);
        }
        let credential = self.credential(registry).await?;
        let url = token_url(realm, service, &key.1).map_err(|reason| RegistryError::Protocol {
            what: format!("authentication to {registry}"),
            reason,
        })?;
        let what = format!(
            "token for {registry} from {}",
            url.host_str().map_or_else(|| quoted(realm), str::to_string)
        );
        let (http, url, credential, what_ref) = (&self.http, &url, &credential, &what);
        let response = retrying(
            &self.retry,
            &what,
            |_, _| {},
            move || async move {
                let mut request = http.get(url.clone());
                if let Some(credential) = credential {
                    let mut header =
                        HeaderValue::from_str(&credential.basic_header()).map_err(|_| {
                            RegistryError::Protocol {
                                what: what_ref.clone(),
                                reason:
                                    "the credential contains characters not allowed in a header"
                                        .to_string(),
                            }
                        })?;
                    header.set_sensitive(true);
                    request = request.header(AUTHORIZATION, header);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|source| RegistryError::Transport {
                        what: what_ref.clone(),
                        source,
                    })?;
                fail_retryable_status(response, what_ref).await
            },
        )
        .await?;
        if !response.status().is_success() {
            return Err(self.rejection(registry, response, what).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|source| RegistryError::Transport {
                what: what.clone(),
                source,
            })?;
        let parsed = parse_token_response(&body).map_err(|reason| RegistryError::Protocol {
            what: what.clone(),
            reason,
        })?;
        let renew_at = Instant::now()
            + parsed
                .lifetime
                .saturating_sub(TOKEN_EXPIRY_MARGIN.min(parsed.lifetime / 2));
        self.state().tokens.insert(
            key,
            CachedToken {
                token: parsed.token.clone(),
                renew_at,
            },
        );
        Ok(parsed.token)
    }
}

/// The token endpoint URL: the realm with `service` and one `scope` parameter per scope.
fn token_url(realm: &str, service: Option<&str>, scopes: &[Scope]) -> Result<Url, String> {
    let mut url = Url::parse(realm)
        .map_err(|e| format!("token realm {} is not a URL: {e}", quoted(realm)))?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope.as_str());
        }
    }
    Ok(url)
}

struct TokenResponse {
    token: Secret,
    lifetime: Duration,
}

/// Parses a token endpoint answer (`token` or OAuth2 `access_token`, optional `expires_in`).
fn parse_token_response(body: &[u8]) -> Result<TokenResponse, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default, deserialize_with = "credentials::optional_secret")]
        token: Option<Secret>,
        #[serde(default, deserialize_with = "credentials::optional_secret")]
        access_token: Option<Secret>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| format!("token response is not the expected JSON: {e}"))?;
    let token = raw
        .token
        .filter(|t| !t.is_empty())
        .or(raw.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| "token response holds no token".to_string())?;
    let lifetime = raw
        .expires_in
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok(TokenResponse { token, lifetime })
}

#[cfg(test)]
mod tests;

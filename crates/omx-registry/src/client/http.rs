//! Sending requests to a registry. Every request the client makes goes on the wire in
//! [`RegistryClient::dispatch`] (token requests are the authenticator's own); API requests get
//! there in one of two ways:
//! - a [`Call`] (no body, or a small in-memory one) is repeatable: [`RegistryClient::send`]
//!   retries it under the client's policy (429, 5xx, broken connections) and answers one `401`
//!   (or one `403` refusing an expiring credential) per attempt by learning from it and sending
//!   again with fresh authorization;
//! - a one-shot streaming body gets one attempt ([`RegistryClient::send_unrepeatable`]); such a
//!   `401` or `403` is learnt from and surfaces as [`RegistryError::Reauthenticate`], for the
//!   copy engine's restart loop to open a new upload.
//!
//! [`RegistryClient::expect_success`] then judges the final status, with the authenticator's
//! wording for 401/403.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Body, Method, Response, StatusCode, Url};

use super::{lock, RegistryClient, Repository, ToldToWait, WaitScope};
use crate::auth::challenge::parse_challenges;
use crate::auth::Scope;
use crate::error::RegistryError;
use crate::rate_limit::PullBudget;
use crate::transport::{fail_retryable_status, retrying, status_error, ErrorChain};

/// One request that can be sent again as is (no body, or a small in-memory one).
pub(super) struct Call<'a> {
    method: Method,
    url: Url,
    registry: &'a str,
    scopes: &'a [Scope],
    headers: HeaderMap,
    body: Option<Bytes>,
    what: &'a str,
}

impl<'a> Call<'a> {
    /// A request without headers or body to `url` in `repository`'s registry, authorized for
    /// `scopes`; `what` names it in errors.
    pub(super) fn new(
        method: Method,
        url: Url,
        repository: &'a Repository,
        scopes: &'a [Scope],
        what: &'a str,
    ) -> Call<'a> {
        Call {
            method,
            url,
            registry: &repository.registry,
            scopes,
            headers: HeaderMap::new(),
            body: None,
            what,
        }
    }

    pub(super) fn headers(self, headers: HeaderMap) -> Call<'a> {
        Call { headers, ..self }
    }

    pub(super) fn body(self, body: Bytes) -> Call<'a> {
        Call {
            body: Some(body),
            ..self
        }
    }

    /// What a request to wait that answers this call covers.
    fn wait_scope(&self) -> WaitScope {
        if self.method == Method::GET && self.url.path().contains("/manifests/") {
            WaitScope::Pulls
        } else {
            WaitScope::All
        }
    }
}

impl RegistryClient {
    /// Sends a repeatable request with authentication, retrying per the policy. Returns the
    /// final response whatever its status (other than 429/5xx, which are retried).
    /// A registry that asked to wait longer than the run waits (a spent pull limit, a long
    /// `Retry-After`) is not asked again until then: when it refused a pull (a manifest GET) its
    /// other pulls, else all its requests, fail at once with what it said.
    pub(super) async fn send(&self, call: Call<'_>) -> Result<Response, RegistryError> {
        if let Some(refusal) = self.still_told_to_wait(&call) {
            return Err(refusal);
        }
        let result = retrying(
            &self.inner.retry,
            call.what,
            |_, _| {},
            || self.send_once(&call),
        )
        .await;
        match &result {
            Ok(response) => {
                if let Some(budget) = PullBudget::from_headers(response.headers()) {
                    lock(&self.inner.pull_budgets).insert(call.registry.to_string(), budget);
                }
            }
            Err(RegistryError::WaitTooLong {
                wait, until, last, ..
            }) => {
                lock(&self.inner.told_to_wait).insert(
                    (call.registry.to_string(), call.wait_scope()),
                    ToldToWait {
                        until: tokio::time::Instant::now() + *wait,
                        until_clock: *until,
                        // The registry's own answer (Docker Hub's names the limit).
                        said: ErrorChain(last.as_ref()).to_string(),
                    },
                );
            }
            Err(_) => {}
        }
        result
    }

    /// The refusal for `call` while its registry's request to wait (for every request, or for
    /// pulls when `call` is one) lasts.
    fn still_told_to_wait(&self, call: &Call<'_>) -> Option<RegistryError> {
        let (registry, what) = (call.registry, call.what);
        let told = lock(&self.inner.told_to_wait);
        let now = tokio::time::Instant::now();
        let (told, wait) = [WaitScope::All, call.wait_scope()]
            .iter()
            .find_map(|scope| {
                let told = told.get(&(registry.to_string(), *scope))?;
                Some((told, told.until.checked_duration_since(now)?))
            })?;
        Some(RegistryError::WaitTooLong {
            what: what.to_string(),
            wait,
            until: told.until_clock,
            last: Box::new(RegistryError::Protocol {
                what: format!("{registry} answered an earlier request"),
                reason: told.said.clone(),
            }),
        })
    }

    /// One attempt of [`RegistryClient::send`]: with the authorization known for the scopes,
    /// and once more after a `401` has taught the authenticator what the registry wants.
    async fn send_once(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let mut authorization = self
            .inner
            .auth
            .authorization(call.registry, call.scopes)
            .await?;
        let mut challenged = false;
        loop {
            let response = self
                .dispatch(
                    call.method.clone(),
                    call.url.clone(),
                    call.headers.clone(),
                    authorization.as_ref(),
                    call.body.clone().map(Body::from),
                    call.what,
                )
                .await?;
            if response.status() == StatusCode::FORBIDDEN
                && !challenged
                && self
                    .inner
                    .auth
                    .handle_refusal(call.registry, authorization.as_ref())
                    .await
            {
                challenged = true;
                authorization = self
                    .inner
                    .auth
                    .authorization(call.registry, call.scopes)
                    .await?;
                continue;
            }
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

    /// Sends a request whose body is a one-shot stream: one attempt, authenticated with what is
    /// already known (the upload session was opened with the same scopes). Failures surface as
    /// errors the caller's restart loop understands.
    pub(super) async fn send_unrepeatable(
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
        let response = self
            .dispatch(
                method,
                url,
                headers,
                authorization.as_ref(),
                Some(body),
                what,
            )
            .await?;
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
        if response.status() == StatusCode::FORBIDDEN
            && self
                .inner
                .auth
                .handle_refusal(&repository.registry, authorization.as_ref())
                .await
        {
            return Err(RegistryError::Reauthenticate {
                what: what.to_string(),
            });
        }
        fail_retryable_status(response, what).await
    }

    /// Puts one request on the wire, with `authorization` when there is one. No response at
    /// all (connection refused or broken, timeout) is [`RegistryError::Transport`].
    pub(super) async fn dispatch(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        authorization: Option<&HeaderValue>,
        body: Option<Body>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        // A standard method clones without allocating; the string is made only when traced.
        let method_name = method.clone();
        let mut request = self.inner.http.request(method, url).headers(headers);
        if let Some(header) = authorization {
            request = request.header(AUTHORIZATION, header.clone());
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let started = std::time::Instant::now();
        let sent = request.send().await;
        // The request's timeline at -vv, by what it does: the URL is left out, since a blob
        // download's query may hold a presigned credential.
        tracing::trace!(
            method = %method_name,
            what,
            status = sent
                .as_ref()
                .map(|response| response.status().as_u16())
                .unwrap_or(0),
            millis = started.elapsed().as_millis() as u64,
            "request answered"
        );
        sent.map_err(|source| RegistryError::Transport {
            what: what.to_string(),
            source,
        })
    }

    /// Hands a 401's `WWW-Authenticate` challenges to the authenticator, which forgets what
    /// `refused` carried and learns how to authenticate next time.
    pub(super) async fn answer_challenge(
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

    /// Sends a HEAD request: `None` when the registry answers 404, else the successful response.
    pub(super) async fn head(&self, call: Call<'_>) -> Result<Option<Response>, RegistryError> {
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
    pub(super) async fn expect_success(
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
            return Err(self
                .inner
                .auth
                .rejection(registry, response, what.to_string())
                .await);
        }
        Err(status_error(response, what).await)
    }
}

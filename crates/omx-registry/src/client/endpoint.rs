//! Where a registry's API is: its host (Docker Hub's is not `docker.io`), whether it is reached
//! over HTTPS or (for loopback and listed hosts that do not speak TLS) plain HTTP, and the
//! `/v2/<repository>/…` URLs under that base. The scheme is probed once per registry and kept.

use std::collections::HashMap;

use omx_core::RegistryHost;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode, Url};

use super::{RegistryClient, Repository};
use crate::error::RegistryError;
use crate::transport::{fail_retryable_status, retrying};

/// A registry's base URL, found by the first request that needs it.
pub(super) type BaseUrl = std::sync::Arc<tokio::sync::OnceCell<Url>>;

impl RegistryClient {
    /// Whether `registry` may be reached over plain HTTP (loopback or listed as insecure).
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        let registry = RegistryHost::new(registry);
        registry.is_loopback()
            || self
                .inner
                .insecure_registries
                .iter()
                .any(|insecure| RegistryHost::new(insecure).covers(&registry))
    }

    /// `<base>/v2/<repository>/<rest>`.
    pub(super) async fn api_url(
        &self,
        repository: &Repository,
        rest: &str,
    ) -> Result<Url, RegistryError> {
        let base = self.base_url(&repository.registry).await?;
        base.join(&format!("v2/{}/{rest}", repository.path))
            .map_err(|e| RegistryError::Protocol {
                what: format!("repository {repository}"),
                reason: format!("cannot form an API URL: {e}"),
            })
    }

    /// `https://host/`, or `http://host/` for a host allowed plain HTTP that does not speak TLS.
    /// Found once per registry and run, with one ping (`GET /v2/`) whose challenge teaches the
    /// authenticator the registry's scheme: requests that need it together wait for it, and then
    /// carry their authorization up front instead of each meeting a `401` first.
    async fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        let cell = self
            .base_urls()
            .entry(registry.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let host = RegistryHost::new(registry);
            let host = host.api_host();
            let https = parse_base(&format!("https://{host}/"), registry)?;
            let (url, ping) = if self.allows_plain_http(registry) {
                self.probe_plain_http(registry, host, https).await?
            } else {
                let ping = https.join("v2/").expect("static path");
                let answer = self
                    .get_unauthenticated(ping, &format!("connect to {registry}"))
                    .await;
                // A failed ping is no answer: the request that needed it reports its own error.
                (https, answer.ok())
            };
            if let Some(ping) = ping.filter(|r| r.status() == StatusCode::UNAUTHORIZED) {
                // An unsupported scheme is reported by the first request it refuses.
                let _ = self.answer_challenge(&ping, registry, &[], None).await;
            }
            Ok(url)
        })
        .await
        .cloned()
    }

    fn base_urls(&self) -> std::sync::MutexGuard<'_, HashMap<String, BaseUrl>> {
        self.inner
            .base_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// For a host allowed plain HTTP: does it serve plain HTTP, or TLS (as a loopback test
    /// registry with its own CA does)? A TLS server answers a plain request with 400. Returns the
    /// base URL and the ping's answer on it.
    async fn probe_plain_http(
        &self,
        registry: &str,
        host: &str,
        https: Url,
    ) -> Result<(Url, Option<Response>), RegistryError> {
        let http = parse_base(&format!("http://{host}/"), registry)?;
        let ping = http.join("v2/").expect("static path");
        let what = format!("connect to {registry}");
        let answer = retrying(
            &self.inner.retry,
            &what,
            |_, _| {},
            || async {
                let response = self.get_unauthenticated(ping.clone(), &what).await?;
                fail_retryable_status(response, &what).await
            },
        )
        .await;
        match answer {
            Ok(response) if response.status() == StatusCode::BAD_REQUEST => {
                let tls_ping = https.join("v2/").expect("static path");
                let answer = self.get_unauthenticated(tls_ping, &what).await.ok();
                Ok((https, answer))
            }
            Ok(response) => Ok((http, Some(response))),
            Err(plain_error) => {
                let tls_ping = https.join("v2/").expect("static path");
                match self.get_unauthenticated(tls_ping, &what).await {
                    Ok(response) => Ok((https, Some(response))),
                    Err(_) => Err(plain_error),
                }
            }
        }
    }

    /// A bare `GET` for the probe: any answer (a 401 too) tells the scheme, so no
    /// authorization is looked up or sent.
    async fn get_unauthenticated(&self, url: Url, what: &str) -> Result<Response, RegistryError> {
        self.dispatch(Method::GET, url, HeaderMap::new(), None, None, what)
            .await
    }
}

fn parse_base(url: &str, registry: &str) -> Result<Url, RegistryError> {
    Url::parse(url)
        .map_err(|e| RegistryError::Config(format!("invalid registry host {registry:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

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
}

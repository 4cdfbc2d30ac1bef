//! The authenticator's caching, challenge and refusal rules.

use super::*;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Hands out ECR-style expiring credentials and counts how often it is asked, and told of a
/// refusal.
struct Expiring {
    lifetime_from_now: Option<Duration>,
    calls: AtomicUsize,
    refusals: AtomicUsize,
}

impl CredentialProvider for Expiring {
    fn credentials<'a>(
        &'a self,
        _registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, credentials::CredentialError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let expires_at = match self.lifetime_from_now {
            Some(lifetime) => Some(SystemTime::now() + lifetime),
            None => Some(SystemTime::now() - Duration::from_secs(1)),
        };
        Box::pin(async move {
            Ok(Some(Credential {
                username: "AWS".into(),
                password: Secret::new(format!("token-{call}")),
                expires_at,
            }))
        })
    }

    fn refused<'a>(&'a self, _registry: &'a str, _credential: &'a Credential) -> BoxFuture<'a, ()> {
        self.refusals.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
}

fn authenticator(provider: Arc<Expiring>) -> Authenticator {
    Authenticator::new(reqwest::Client::new(), provider, RetryPolicy::default())
}

#[tokio::test]
async fn credentials_are_cached_until_shortly_before_they_expire() {
    let valid = Arc::new(Expiring {
        lifetime_from_now: Some(Duration::from_secs(12 * 3600)),
        calls: AtomicUsize::new(0),
        refusals: AtomicUsize::new(0),
    });
    let auth = authenticator(valid.clone());
    for _ in 0..3 {
        let credential = auth.credential("123.dkr.ecr.us-east-1.amazonaws.com").await;
        assert_eq!(credential.unwrap().unwrap().password.expose(), "token-0");
    }
    assert_eq!(valid.calls.load(Ordering::SeqCst), 1);

    let expired = Arc::new(Expiring {
        lifetime_from_now: None,
        calls: AtomicUsize::new(0),
        refusals: AtomicUsize::new(0),
    });
    let auth = authenticator(expired.clone());
    let first = auth.credential("r").await.unwrap().unwrap();
    let second = auth.credential("r").await.unwrap().unwrap();
    assert_eq!(
        (first.password.expose(), second.password.expose()),
        ("token-0", "token-1")
    );
}

#[tokio::test]
async fn a_rejected_header_forgets_credentials_and_challenges_set_the_scheme() {
    let provider = Arc::new(Expiring {
        lifetime_from_now: Some(Duration::from_secs(3600)),
        calls: AtomicUsize::new(0),
        refusals: AtomicUsize::new(0),
    });
    let auth = authenticator(provider.clone());
    let scopes = [Scope::pull("a/b")];
    assert_eq!(auth.authorization("r", &scopes).await.unwrap(), None);

    let basic = challenge::parse_challenges([r#"Basic realm="registry""#]);
    auth.handle_challenge("r", &scopes, &basic, None)
        .await
        .unwrap();
    let header = auth.authorization("r", &scopes).await.unwrap().unwrap();
    assert!(header.is_sensitive());
    let expected = Credential::new("AWS", "token-0").basic_header();
    assert_eq!(header.to_str().unwrap(), expected);

    auth.handle_challenge("r", &scopes, &basic, Some(&header))
        .await
        .unwrap();
    let renewed = auth.authorization("r", &scopes).await.unwrap().unwrap();
    assert_eq!(
        renewed.to_str().unwrap(),
        Credential::new("AWS", "token-1").basic_header()
    );

    // A request refused with the old header while the renewal happened (it was in flight
    // alongside the first) must not discard the renewed credentials.
    auth.handle_challenge("r", &scopes, &basic, Some(&header))
        .await
        .unwrap();
    let kept = auth.authorization("r", &scopes).await.unwrap().unwrap();
    assert_eq!(kept, renewed);
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2);

    let unknown = challenge::parse_challenges(["Negotiate"]);
    let error = auth
        .handle_challenge("r", &scopes, &unknown, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unsupported authentication scheme (Negotiate)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_403_refusing_an_expiring_credential_renews_it_once_for_every_request_refused() {
    let provider = Arc::new(Expiring {
        lifetime_from_now: Some(Duration::from_secs(12 * 3600)),
        calls: AtomicUsize::new(0),
        refusals: AtomicUsize::new(0),
    });
    let auth = authenticator(provider.clone());
    let scopes = [Scope::pull("a/b")];
    let basic = challenge::parse_challenges([r#"Basic realm="ecr""#]);
    auth.handle_challenge("r", &scopes, &basic, None)
        .await
        .unwrap();
    let old = auth.authorization("r", &scopes).await.unwrap().unwrap();
    // Two requests refused together with the token that died early: both go again.
    assert!(auth.handle_refusal("r", Some(&old)).await);
    assert!(auth.handle_refusal("r", Some(&old)).await);
    let renewed = auth.authorization("r", &scopes).await.unwrap().unwrap();
    assert_ne!(renewed, old);
    assert!(
        auth.handle_refusal("r", Some(&old)).await,
        "renewed meanwhile"
    );
    assert_eq!(provider.calls.load(Ordering::SeqCst), 2, "one renewal");
    assert_eq!(
        provider.refusals.load(Ordering::SeqCst),
        1,
        "the provider heard once"
    );
    // Without a credential, or with a static one, a 403 is final.
    assert!(!auth.handle_refusal("r", None).await);
    let other = HeaderValue::from_static("Basic c29tZW9uZTplbHNl");
    assert!(
        !authenticator(provider)
            .handle_refusal("r", Some(&other))
            .await
    );
}

#[test]
fn token_url_has_service_and_every_scope() {
    let url = token_url(
        "https://auth.example/token?x=1",
        Some("registry.example"),
        &[Scope::pull_push("ns/app"), Scope::pull("library/ubuntu")],
    )
    .unwrap();
    assert_eq!(
        url.as_str(),
        "https://auth.example/token?x=1&service=registry.example\
         &scope=repository%3Ans%2Fapp%3Apull%2Cpush&scope=repository%3Alibrary%2Fubuntu%3Apull"
    );
    assert!(token_url("not a url", None, &[]).is_err());
}

#[test]
fn token_responses() {
    let parsed = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
    assert_eq!(parsed.token.expose(), "abc");
    assert_eq!(parsed.lifetime, Duration::from_secs(300));
    let parsed = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
    assert_eq!(parsed.token.expose(), "xyz");
    assert_eq!(parsed.lifetime, DEFAULT_TOKEN_LIFETIME);
    let parsed = parse_token_response(br#"{"token":"","access_token":"oauth"}"#).unwrap();
    assert_eq!(parsed.token.expose(), "oauth");
    assert!(parse_token_response(br#"{"expires_in":1}"#).is_err());
    assert!(parse_token_response(b"<html>").is_err());
}

//! HTTP plumbing shared by the client, the token fetcher and the copy engine: the retry loop,
//! turning error responses into [`RegistryError`]s, `Location` and upload-URL handling.
//! Crate-private: callers outside see only the client's and the engine's API.

use std::future::Future;
use std::time::SystemTime;

use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use crate::error::RegistryError;
use crate::rate_limit::PullBudget;
use crate::retry::{is_retryable_status, parse_retry_after, RetryPolicy};

/// Runs `attempt` until it succeeds, fails with a non-retryable error, or `policy.max_attempts`
/// are used up (then [`RegistryError::RetriesExhausted`] names `what` and wraps the last cause).
/// `on_retry` hears about every failure that will be retried (attempt number, cause).
pub(crate) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut on_retry: impl FnMut(u32, &RegistryError),
    mut attempt: F,
) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempts = 0;
    let mut throttled_since: Option<tokio::time::Instant> = None;
    loop {
        attempts += 1;
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() => error,
            Err(error) => return Err(error),
        };
        // Throttling is waited out for the policy's window, however many attempts that takes;
        // any other failure has `max_attempts`.
        let waited = if error.is_throttled() {
            throttled_since
                .get_or_insert_with(tokio::time::Instant::now)
                .elapsed()
        } else {
            std::time::Duration::ZERO
        };
        let within_throttle_window = error.is_throttled() && waited < policy.throttle_window;
        // A registry that asks for a longer wait than the run would spend (Docker Hub's spent
        // pull limit, a long Retry-After) is not asked again until then.
        // A Retry-After up to `max_retry_after` is always waited for; a throttled request may
        // wait as long as its window has left.
        let patience = if error.is_throttled() {
            policy
                .max_retry_after
                .max(policy.throttle_window.saturating_sub(waited))
        } else {
            policy.max_retry_after
        };
        if let Some(wait) = error.retry_after().filter(|wait| *wait > patience) {
            return Err(RegistryError::WaitTooLong {
                what: what.to_string(),
                wait,
                until: SystemTime::now() + wait,
                last: Box::new(error),
            });
        }
        if attempts >= max_attempts && !within_throttle_window {
            return Err(RegistryError::RetriesExhausted {
                what: what.to_string(),
                attempts,
                last: Box::new(error),
            });
        }
        let delay = policy.delay(attempts, error.retry_after());
        tracing::debug!(%what, attempt = attempts, ?delay, error = %ErrorChain(&error), "retrying");
        on_retry(attempts, &error);
        tokio::time::sleep(delay).await;
    }
}

/// Displays an error with its causes (`a: b: c`), for log lines.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&omx_core::report::error_chain(self.0))
    }
}

/// Maps a retryable status (429, 5xx) to an error so [`retrying`] tries again; other
/// responses pass through for the caller to judge.
pub(crate) async fn fail_retryable_status(
    response: Response,
    what: &str,
) -> Result<Response, RegistryError> {
    if is_retryable_status(response.status()) {
        Err(status_error(response, what).await)
    } else {
        Ok(response)
    }
}

/// An error for an unexpected response: `NotFound` for 404, else `Status` with the registry's
/// own message and any `Retry-After`. (401/403 get their wording from the client, which knows
/// whether credentials were sent.) A spent pull budget (Docker Hub's 429, which has no
/// `Retry-After`) asks to wait for the budget's window.
pub(crate) async fn status_error(response: Response, what: &str) -> RegistryError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
        .or_else(|| PullBudget::spent_window(status, response.headers()));
    let ErrorBody { detail, codes } = error_body(response).await;
    if status == StatusCode::NOT_FOUND {
        RegistryError::NotFound {
            what: what.to_string(),
            detail,
        }
    } else {
        RegistryError::Status {
            what: what.to_string(),
            status,
            detail,
            codes,
            retry_after,
        }
    }
}

/// What a registry said in an error body: its explanation (`{"errors":[{"code","message"}]}`,
/// or a short excerpt of a non-JSON body) and the error codes, which decide what to do next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub detail: String,
    pub codes: Vec<String>,
}

pub(crate) async fn error_body(response: Response) -> ErrorBody {
    const MAX_BODY: usize = 64 * 1024;
    let mut response = response;
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            break;
        }
    }
    parse_error_body(&body)
}

/// The registry's explanation from an error body.
pub(crate) async fn error_detail(response: Response) -> String {
    error_body(response).await.detail
}

/// Pure part of [`error_body`].
pub(crate) fn parse_error_body(body: &[u8]) -> ErrorBody {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(body) {
        let detail = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let codes = parsed
            .errors
            .into_iter()
            .map(|e| e.code)
            .filter(|code| !code.is_empty())
            .collect();
        return ErrorBody { detail, codes };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut excerpt: String = text.chars().take(200).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    ErrorBody {
        detail: excerpt.replace(['\n', '\r'], " "),
        codes: Vec::new(),
    }
}

/// Resolves a `Location` header against the URL of the request that returned it; registries
/// send both absolute URLs (distribution) and paths (others).
pub(crate) fn resolve_location(request_url: &Url, location: &str) -> Result<Url, String> {
    request_url
        .join(location.trim())
        .map_err(|e| format!("invalid Location header {location:?}: {e}"))
}

/// An upload URL with `name=value` appended, keeping the query the registry put there (upload
/// state tokens live in it).
pub(crate) fn with_query_param(url: &Url, name: &str, value: &str) -> Url {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair(name, value);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_absolute_relative_and_query_preserving() {
        let request = Url::parse("https://r.example/v2/a/b/blobs/uploads/").unwrap();
        let absolute = resolve_location(
            &request,
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1?_state=xyz",
        )
        .unwrap();
        assert_eq!(
            absolute.as_str(),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1?_state=xyz"
        );
        let relative = resolve_location(&request, "/v2/a/b/blobs/uploads/u2?_state=s%2Bt").unwrap();
        assert_eq!(
            relative.as_str(),
            "https://r.example/v2/a/b/blobs/uploads/u2?_state=s%2Bt"
        );
        let sibling = resolve_location(&request, "u3").unwrap();
        assert_eq!(
            sibling.as_str(),
            "https://r.example/v2/a/b/blobs/uploads/u3"
        );

        let digest = "sha256:abcd";
        let finished = with_query_param(&relative, "digest", digest);
        assert_eq!(
            finished.as_str(),
            "https://r.example/v2/a/b/blobs/uploads/u2?_state=s%2Bt&digest=sha256%3Aabcd"
        );
        let pairs: Vec<(String, String)> = finished.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("_state".to_string(), "s+t".to_string()),
                ("digest".to_string(), digest.to_string())
            ]
        );
        let bare = with_query_param(&sibling, "digest", digest);
        assert_eq!(bare.query(), Some("digest=sha256%3Aabcd"));
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            parse_error_body(body),
            ErrorBody {
                detail: "MANIFEST_UNKNOWN: manifest unknown".into(),
                codes: vec!["MANIFEST_UNKNOWN".into()],
            }
        );
        let two = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"},{"message":"no code"}]}"#;
        assert_eq!(
            parse_error_body(two),
            ErrorBody {
                detail: "MANIFEST_BLOB_UNKNOWN: blob unknown to registry; no code".into(),
                codes: vec!["MANIFEST_BLOB_UNKNOWN".into()],
            }
        );
        assert_eq!(
            parse_error_body(b"  plain\ntext  "),
            ErrorBody {
                detail: "plain text".into(),
                codes: vec![],
            }
        );
        assert_eq!(parse_error_body(b""), ErrorBody::default());
        let long = "x".repeat(500);
        assert_eq!(
            parse_error_body(long.as_bytes()).detail.chars().count(),
            201
        );
    }

    fn throttled() -> RegistryError {
        RegistryError::Status {
            what: "PUT manifest".into(),
            status: StatusCode::TOO_MANY_REQUESTS,
            detail: "TOOMANYREQUESTS: Rate exceeded".into(),
            codes: vec!["TOOMANYREQUESTS".into()],
            retry_after: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_window_ends_retries_at_once() {
        let policy = RetryPolicy {
            throttle_window: std::time::Duration::from_secs(90),
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let result: Result<(), _> = retrying(
            &policy,
            "GET manifest",
            |_, _| {},
            || {
                calls += 1;
                async {
                    Err(RegistryError::Status {
                        what: "GET manifest".into(),
                        status: StatusCode::TOO_MANY_REQUESTS,
                        detail: "You have reached your unauthenticated pull rate limit".into(),
                        codes: vec!["TOOMANYREQUESTS".into()],
                        retry_after: Some(std::time::Duration::from_secs(6 * 3600)),
                    })
                }
            },
        )
        .await;
        assert_eq!(calls, 1);
        let error = result.unwrap_err();
        assert!(
            matches!(error, RegistryError::WaitTooLong { .. }),
            "{error:?}"
        );
        let text = omx_core::report::error_chain(&error);
        assert!(
            text.contains("6 h") && text.contains("pull rate limit"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_waited_out_for_the_window_past_max_attempts() {
        let policy = RetryPolicy {
            max_attempts: 3,
            throttle_window: std::time::Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        // Throttled for 40 s, then accepted: far more than 3 attempts.
        let result = retrying(
            &policy,
            "PUT manifest",
            |_, _| {},
            || {
                calls += 1;
                let throttled_now = started.elapsed() < std::time::Duration::from_secs(40);
                async move {
                    if throttled_now {
                        Err(throttled())
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert!(calls > 3, "{calls}");
        // Throttled for ever: given up once the window has passed, not before.
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retrying(
            &policy,
            "PUT manifest",
            |_, _| {},
            || async { Err(throttled()) },
        )
        .await;
        let waited = started.elapsed();
        assert!(matches!(
            result,
            Err(RegistryError::RetriesExhausted { .. })
        ));
        assert!(
            waited >= std::time::Duration::from_secs(60)
                && waited < std::time::Duration::from_secs(90),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_retries_only_retryable_errors_and_names_the_operation() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let mut retries = Vec::new();
        let result: Result<(), _> = retrying(
            &policy,
            "GET thing",
            |n, _| retries.push(n),
            || {
                calls += 1;
                async {
                    Err(RegistryError::Status {
                        what: "GET thing".into(),
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        detail: String::new(),
                        codes: Vec::new(),
                        retry_after: Some(std::time::Duration::from_secs(1)),
                    })
                }
            },
        )
        .await;
        assert_eq!(calls, 3);
        assert_eq!(retries, [1, 2]);
        let error = result.unwrap_err();
        assert!(matches!(
            error,
            RegistryError::RetriesExhausted { attempts: 3, .. }
        ));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "GET thing: gave up after 3 attempts: GET thing: registry answered 503 Service Unavailable"
        );

        let mut calls = 0;
        let result: Result<(), _> = retrying(
            &policy,
            "GET other",
            |_, _| {},
            || {
                calls += 1;
                async {
                    Err(RegistryError::NotFound {
                        what: "GET other".into(),
                        detail: String::new(),
                    })
                }
            },
        )
        .await;
        assert_eq!(calls, 1);
        assert!(result.unwrap_err().is_not_found());

        let mut calls = 0;
        let value = retrying(
            &policy,
            "GET flaky",
            |_, _| {},
            || {
                calls += 1;
                let fail = calls < 2;
                async move {
                    if fail {
                        Err(RegistryError::SizeMismatch {
                            what: "blob".into(),
                            reason: "truncated".into(),
                        })
                    } else {
                        Ok(42)
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!((value, calls), (42, 2));
    }
}

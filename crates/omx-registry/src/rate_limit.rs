//! Pull budgets that registries publish: how many manifest pulls are left, and in what window.
//!
//! Docker Hub sends `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 20;w=21600` and
//! `docker-ratelimit-source: <IP or account>` on manifest GETs and HEADs alike; a HEAD does not
//! count as a pull, so a HEAD reads the budget for free. No header means no limit for that
//! image or account (docker/docs, content/manuals/docker-hub/usage/pulls.md, "View pull rate and
//! limit"). The `<count>;w=<seconds>` form is the IETF RateLimit header fields draft's
//! (draft-ietf-httpapi-ratelimit-headers), so any registry that publishes it is read the same way.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// The window Docker Hub counts pulls in when a header names none (docker/docs, pulls.md: "The
/// pull rate limit is calculated on a 6-hour basis").
const DEFAULT_WINDOW: Duration = Duration::from_secs(21_600);

/// A registry's pull budget, as its last answer stated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullBudget {
    /// Pulls allowed per window.
    pub limit: u64,
    /// Pulls left in the current window.
    pub remaining: u64,
    /// The window the limit applies to.
    pub window: Duration,
    /// What the registry counts the pulls against (`docker-ratelimit-source`: an IP address for
    /// anonymous pulls, an account for authenticated ones), when it says.
    pub source: Option<String>,
}

impl PullBudget {
    /// The budget a response's headers publish, or `None` when they publish none (or it cannot
    /// be read: a budget is then not planned for, and a spent one still answers 429).
    pub fn from_headers(headers: &HeaderMap) -> Option<PullBudget> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let (remaining, remaining_window) = parse_quota(header("ratelimit-remaining")?)?;
        let (limit, limit_window) = header("ratelimit-limit")
            .and_then(parse_quota)
            .unwrap_or((remaining, None));
        Some(PullBudget {
            limit,
            remaining,
            window: remaining_window.or(limit_window).unwrap_or(DEFAULT_WINDOW),
            source: header("docker-ratelimit-source").map(str::to_string),
        })
    }

    /// For a `429` that says no pull is left (`ratelimit-remaining: 0;w=<seconds>`), the window
    /// after which the budget is whole again: Docker Hub's pull-limit refusal carries these
    /// headers and no `Retry-After`.
    pub(crate) fn spent_window(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let remaining = headers.get("ratelimit-remaining")?.to_str().ok()?;
        match parse_quota(remaining)? {
            (0, window) => Some(window.unwrap_or(DEFAULT_WINDOW)),
            _ => None,
        }
    }
}

/// `100;w=21600` → (100, Some(21600 s)); `7` → (7, None).
fn parse_quota(value: &str) -> Option<(u64, Option<Duration>)> {
    let mut parts = value.split(';');
    let count = parts.next()?.trim().parse().ok()?;
    let window = parts
        .find_map(|part| part.trim().strip_prefix("w="))
        .and_then(|seconds| seconds.trim().parse().ok())
        .map(Duration::from_secs);
    Some((count, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn docker_hubs_headers_read_as_a_budget() {
        let budget = PullBudget::from_headers(&headers(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "20;w=21600"),
            ("docker-ratelimit-source", "192.0.2.1"),
        ]))
        .unwrap();
        assert_eq!(
            budget,
            PullBudget {
                limit: 100,
                remaining: 20,
                window: Duration::from_secs(21_600),
                source: Some("192.0.2.1".to_string()),
            }
        );
        assert_eq!(PullBudget::from_headers(&headers(&[])), None);
        assert_eq!(
            PullBudget::from_headers(&headers(&[("ratelimit-remaining", "lots")])),
            None
        );
        let bare = PullBudget::from_headers(&headers(&[("ratelimit-remaining", "3")])).unwrap();
        assert_eq!((bare.limit, bare.remaining), (3, 3));
        assert_eq!(bare.window, DEFAULT_WINDOW);
    }

    #[test]
    fn a_spent_budget_reads_as_a_wait_for_its_window() {
        let spent = headers(&[("ratelimit-remaining", "0;w=3600")]);
        assert_eq!(
            PullBudget::spent_window(StatusCode::TOO_MANY_REQUESTS, &spent),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(PullBudget::spent_window(StatusCode::OK, &spent), None);
        let left = headers(&[("ratelimit-remaining", "17;w=21600")]);
        assert_eq!(
            PullBudget::spent_window(StatusCode::TOO_MANY_REQUESTS, &left),
            None
        );
        let no_window = headers(&[("ratelimit-remaining", "0")]);
        assert_eq!(
            PullBudget::spent_window(StatusCode::TOO_MANY_REQUESTS, &no_window),
            Some(DEFAULT_WINDOW)
        );
    }
}

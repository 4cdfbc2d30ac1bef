//! What the client reads out of a registry's responses: the headers that describe content
//! (`Docker-Content-Digest`, `Content-Type`, read only by [`ContentHeaders::of`]), the
//! `Location` of an upload session, whole bodies up to a limit, and the check that a registry
//! stored what was pushed.

use bytes::{Bytes, BytesMut};
use omx_core::Digest;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Response, Url};

use crate::error::RegistryError;
use crate::transport::resolve_location;

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// The headers a registry describes a manifest or blob with, as sent.
pub(crate) struct ContentHeaders {
    /// `Docker-Content-Digest`, when present and a valid digest.
    pub digest: Option<Digest>,
    /// `Content-Type` verbatim (parameters included), when present and readable.
    pub content_type: Option<String>,
}

impl ContentHeaders {
    pub(crate) fn of(response: &Response) -> ContentHeaders {
        let headers = response.headers();
        ContentHeaders {
            digest: headers
                .get(DOCKER_CONTENT_DIGEST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<Digest>().ok()),
            content_type: headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }
}

/// A registry that reports a different digest for what we pushed has not stored our bytes.
/// `Ok(true)` when the registry confirmed `expected`, `Ok(false)` when it named no digest (of
/// that algorithm).
pub(super) fn check_returned_digest(
    response: &Response,
    expected: &Digest,
    what: &str,
) -> Result<bool, RegistryError> {
    match ContentHeaders::of(response).digest {
        Some(actual) if actual.algorithm() == expected.algorithm() && &actual != expected => {
            Err(RegistryError::DigestMismatch {
                what: what.to_string(),
                expected: expected.clone(),
                actual,
            })
        }
        Some(actual) => Ok(actual.algorithm() == expected.algorithm()),
        None => Ok(false),
    }
}

/// The upload session a response points to with `Location` (absolute, or relative to the
/// request).
pub(super) fn upload_location(response: &Response, what: &str) -> Result<Url, RegistryError> {
    let location = response
        .headers()
        .get(LOCATION)
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

/// Reads a whole response body into memory, failing with `too_large()` as soon as it passes
/// `limit` bytes (a hostile or broken registry cannot make us buffer more).
pub(super) async fn read_body_up_to(
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

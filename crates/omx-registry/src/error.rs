//! Errors of registry operations. Every message names the thing (image, blob, registry) and the
//! reason; none carries a credential (URLs never hold one, headers are never printed).

use omx_core::Digest;

use crate::auth::credentials::CredentialError;
use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The connection failed or broke (refused, reset, TLS, timeout).
    #[error("{what}: connection failed")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{what}: registry answered {status}{}", detail_suffix(detail))]
    Status {
        what: String,
        status: reqwest::StatusCode,
        /// The registry's own error message (`errors[].message`), if any.
        detail: String,
        /// The registry's error codes (`errors[].code`, e.g. `MANIFEST_BLOB_UNKNOWN`).
        codes: Vec<String>,
        /// The server's `Retry-After`, honoured when the request is retried.
        retry_after: Option<std::time::Duration>,
    },
    #[error("{what}: not found{}", detail_suffix(detail))]
    NotFound { what: String, detail: String },
    #[error("{what}: {reason}")]
    Unauthorized { what: String, reason: String },
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("{what}: {source}")]
    Manifest {
        what: String,
        #[source]
        source: ManifestError,
    },
    #[error("{what}: manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge { what: String, limit: usize },
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: {reason}")]
    SizeMismatch { what: String, reason: String },
    /// The source itself describes the content otherwise than the descriptor that names it (a
    /// blob's `Content-Length` or `Docker-Content-Digest`, a manifest served under another
    /// digest): not damage in transit, so asking again gets the same answer.
    #[error("{what}: {reason}")]
    DescriptorMismatch { what: String, reason: String },
    /// The registry broke the protocol (no `Location`, malformed header...).
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
    /// Credentials or a token were rejected in the middle of an operation that cannot be
    /// replayed as is (a streaming upload); the operation restarts with fresh authentication.
    #[error("{what}: the registry rejected our authentication mid-operation")]
    Reauthenticate { what: String },
    #[error("{what}: gave up after {attempts} attempts")]
    RetriesExhausted {
        what: String,
        attempts: u32,
        #[source]
        last: Box<RegistryError>,
    },
    /// The registry asked to wait longer than this run waits (a pull limit spent, a long
    /// `Retry-After`): not retried, and the registry's other requests of the run fail at once.
    #[error(
        "{what}: the registry asks to wait {} (until {}) before trying again, longer than this \
         run waits (--throttle-window)",
        omx_core::report::human_duration(*wait),
        httpdate::fmt_http_date(*until)
    )]
    WaitTooLong {
        what: String,
        wait: std::time::Duration,
        /// When the wait ends (a pull budget's window resets), for people to plan by.
        until: std::time::SystemTime,
        #[source]
        last: Box<RegistryError>,
    },
    #[error("invalid registry client configuration: {0}")]
    Config(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl RegistryError {
    /// Whether trying the same operation again may succeed: broken connections, rate limiting,
    /// server errors and content damaged in transit. Exhausted retries are final.
    ///
    /// The rule for content that does not match its descriptor: a mismatch only the bytes show
    /// (a digest or length that differs while the source's headers agree with the descriptor)
    /// may be a flipped byte or a cut connection on the way, and is retried; a mismatch the
    /// source declares itself ([`RegistryError::DescriptorMismatch`]) is what it serves every
    /// time, and is not. Other answers are final unless the status is 429 or a 5xx: a 4xx says
    /// the request itself is wrong (the 400s a manifest push gets while distribution relinks a
    /// blob are handled, with a bounded re-check, by the copy engine, not here).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Transport { source, .. } => !is_tls_rejection(source),
            RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::Reauthenticate { .. } => true,
            RegistryError::Status { status, .. } => crate::retry::is_retryable_status(*status),
            _ => false,
        }
    }

    /// Whether the registry answered `429 Too Many Requests`: a rate limit, which passes.
    pub fn is_throttled(&self) -> bool {
        matches!(
            self,
            RegistryError::Status { status, .. } if *status == reqwest::StatusCode::TOO_MANY_REQUESTS
        )
    }

    /// How long the server asked us to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether a manifest push was refused because the registry could not find, or could not
    /// read, something the manifest references: `MANIFEST_BLOB_UNKNOWN`, `BLOB_UNKNOWN`, or
    /// `DIGEST_INVALID` (what distribution answers when it reads an empty link file).
    pub fn is_unresolved_manifest_reference(&self) -> bool {
        match self {
            RegistryError::Status { status, codes, .. } => {
                *status == reqwest::StatusCode::BAD_REQUEST
                    && codes.iter().any(|code| {
                        matches!(
                            code.as_str(),
                            "MANIFEST_BLOB_UNKNOWN" | "BLOB_UNKNOWN" | "DIGEST_INVALID"
                        )
                    })
            }
            _ => false,
        }
    }

    /// True for a missing manifest or blob.
    pub fn is_not_found(&self) -> bool {
        match self {
            RegistryError::NotFound { .. } => true,
            RegistryError::RetriesExhausted { last, .. } => last.is_not_found(),
            _ => false,
        }
    }
}

/// A TLS handshake that failed on the certificate or protocol will fail the same way again
/// (rustls reports these as `InvalidData` I/O errors), unlike a reset or refused connection.
fn is_tls_rejection(error: &reqwest::Error) -> bool {
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
        }
        cause = error.source();
    }
    false
}

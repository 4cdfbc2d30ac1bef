//! Checking a blob while it streams from source to target: [`verified_stream`] passes the
//! source's chunks on only while size and digest can still be right, and ends the body stream
//! with an error (so the registry never commits the upload) before the last byte of bad
//! content is handed over.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use omx_core::digest::Hasher;
use omx_core::Digest;

use crate::error::RegistryError;

/// The body-stream error that aborts an upload; the reason is in [`StreamCheck::failure`].
#[derive(Debug)]
pub(super) struct StreamAborted;

impl fmt::Display for StreamAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blob content failed verification or the source connection broke")
    }
}

impl std::error::Error for StreamAborted {}

/// Checks a blob's bytes as they stream from source to target.
pub(super) struct StreamCheck {
    what: String,
    digest: Digest,
    size: u64,
    verifier: Hasher,
    /// Bytes accepted so far, for progress reports while the check is inside the body stream.
    pub(super) transferred: Arc<AtomicU64>,
    /// Why the stream was aborted: the upload request only sees that its body failed.
    pub(super) failure: Arc<Mutex<Option<RegistryError>>>,
    /// Notified when the last declared byte has been verified and is being passed on (a body
    /// of known length is not polled further, so the end of the stream is not the signal). A
    /// notification nobody waits for yet is kept for the first who does.
    pub(super) passed_on: Arc<Notify>,
}

impl StreamCheck {
    /// A check for the `size` bytes of `digest`; `what` names the blob in errors.
    pub(super) fn new(what: String, digest: Digest, size: u64) -> StreamCheck {
        StreamCheck {
            what,
            verifier: digest.hasher(),
            digest,
            size,
            transferred: Arc::new(AtomicU64::new(0)),
            failure: Arc::new(Mutex::new(None)),
            passed_on: Arc::new(Notify::new()),
        }
    }

    /// Accepts a chunk, or says why the content is wrong. The digest is checked when the last
    /// declared byte arrives, *before* that chunk is passed on: a registry that has received
    /// the full `Content-Length` may commit, so it must never receive all of a bad blob.
    fn accept(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.verifier.update(chunk);
        let seen = self.verifier.len();
        if seen > self.size {
            return Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                reason: format!(
                    "the source sent more than the {} bytes the manifest declares",
                    self.size
                ),
            });
        }
        if seen == self.size {
            let actual = self.verifier.clone().finish();
            if actual != self.digest {
                return Err(RegistryError::DigestMismatch {
                    what: self.what.clone(),
                    expected: self.digest.clone(),
                    actual,
                });
            }
            self.passed_on.notify_one();
        }
        self.transferred.store(seen, Ordering::Relaxed);
        Ok(())
    }

    /// The stream ended: all declared bytes must have arrived (and were verified in `accept`).
    fn finish(&self) -> Result<(), RegistryError> {
        let seen = self.verifier.len();
        if seen < self.size {
            return Err(RegistryError::SizeMismatch {
                what: self.what.clone(),
                reason: format!(
                    "the source connection ended after {seen} of {} bytes",
                    self.size
                ),
            });
        }
        Ok(())
    }

    fn abort(self, error: RegistryError) -> StreamAborted {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
        StreamAborted
    }
}

pub(super) type SourceStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Passes the source's chunks through [`StreamCheck`]; the first problem ends the stream with
/// an error (which aborts the upload request) after recording the cause.
pub(super) fn verified_stream(
    source: SourceStream,
    check: StreamCheck,
) -> impl Stream<Item = Result<Bytes, StreamAborted>> + Send + 'static {
    futures_util::stream::unfold(Some((source, check)), |state| async move {
        let (mut source, mut check) = state?;
        match source.next().await {
            Some(Ok(chunk)) => match check.accept(&chunk) {
                Ok(()) => Some((Ok(chunk), Some((source, check)))),
                Err(error) => Some((Err(check.abort(error)), None)),
            },
            Some(Err(source_error)) => {
                let error = RegistryError::Transport {
                    what: format!("read {}", check.what),
                    source: source_error,
                };
                Some((Err(check.abort(error)), None))
            }
            None => match check.finish() {
                Ok(()) => None,
                Err(error) => Some((Err(check.abort(error)), None)),
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_for(content: &[u8]) -> StreamCheck {
        StreamCheck::new(
            "blob".into(),
            Digest::sha256_of(content),
            content.len() as u64,
        )
    }

    async fn run(
        check: StreamCheck,
        chunks: Vec<&'static [u8]>,
    ) -> (Vec<Bytes>, Option<RegistryError>) {
        let failure = check.failure.clone();
        let source: SourceStream = Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ));
        let items: Vec<_> = verified_stream(source, check).collect().await;
        let passed = items.into_iter().map_while(Result::ok).collect();
        let cause = failure.lock().unwrap().take();
        (passed, cause)
    }

    #[tokio::test]
    async fn good_content_streams_through() {
        let (passed, failure) = run(check_for(b"hello world"), vec![b"hello ", b"world"]).await;
        assert_eq!(
            passed,
            [Bytes::from_static(b"hello "), Bytes::from_static(b"world")]
        );
        assert!(failure.is_none());
    }

    #[tokio::test]
    async fn corrupted_last_chunk_is_never_passed_on() {
        let (passed, failure) = run(check_for(b"hello world"), vec![b"hello ", b"wOrld"]).await;
        assert_eq!(passed, [Bytes::from_static(b"hello ")]);
        assert!(
            matches!(failure, Some(RegistryError::DigestMismatch { .. })),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn truncated_and_oversized_streams_fail() {
        let (_, failure) = run(check_for(b"hello world"), vec![b"hello "]).await;
        let message = failure.unwrap().to_string();
        assert!(message.contains("ended after 6 of 11 bytes"), "{message}");
        let (passed, failure) = run(check_for(b"hello"), vec![b"hello world"]).await;
        assert!(passed.is_empty());
        assert!(matches!(failure, Some(RegistryError::SizeMismatch { .. })));
    }
}

//! Progress events the copy engine reports while it works. The engine never touches a
//! terminal; a CLI renders these as bars or log lines, tests record them.

use omx_core::{Digest, Reference};

/// Identifies one `copy` call among many running at once on the same engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(pub u64);

/// Something that happened during a copy. Byte counts are per blob and absolute, so a sink can
/// recompute totals after a blob restarts from scratch.
#[derive(Debug, Clone, Copy)]
pub enum ProgressEvent<'a> {
    /// A copy began (the target has its tag resolved).
    ImageStarted {
        image: ImageId,
        source: &'a Reference,
        target: &'a Reference,
    },
    /// A manifest's blobs were discovered; for an index this is sent once per child manifest.
    BlobsPlanned {
        image: ImageId,
        blobs: usize,
        bytes: u64,
    },
    BlobStarted {
        image: ImageId,
        digest: &'a Digest,
        size: u64,
    },
    /// `transferred` bytes of the blob have been read and verified so far in this attempt.
    BlobProgress {
        image: ImageId,
        digest: &'a Digest,
        transferred: u64,
        size: u64,
    },
    /// The transfer failed and starts again from the first byte.
    BlobRetrying {
        image: ImageId,
        digest: &'a Digest,
        attempt: u32,
        reason: &'a str,
    },
    BlobFinished {
        image: ImageId,
        digest: &'a Digest,
        size: u64,
    },
    /// The target already held the blob.
    BlobSkipped {
        image: ImageId,
        digest: &'a Digest,
        size: u64,
    },
    /// The target registry linked the blob from another of its repositories.
    BlobMounted {
        image: ImageId,
        digest: &'a Digest,
        size: u64,
        from: &'a str,
    },
    ImageDone {
        image: ImageId,
        digest: &'a Digest,
        /// The target already held this image under this name; nothing was transferred.
        up_to_date: bool,
    },
    ImageFailed {
        image: ImageId,
        error: &'a str,
    },
}

/// Receives progress events; called from many tasks at once, so it must be cheap and thread-safe.
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: ProgressEvent<'_>);
}

/// Ignores all events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: ProgressEvent<'_>) {}
}

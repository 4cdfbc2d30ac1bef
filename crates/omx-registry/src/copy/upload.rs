//! Moving one blob's content: a streaming `GET` from the source through the verifying stream
//! (`stream.rs`) into an open upload session on the target, as one streaming `PUT` or (with
//! [`CopyOptions::chunk_size`](super::CopyOptions::chunk_size)) as `PATCH` chunks and a final
//! `PUT`, reporting progress while bytes flow and giving the transfer's place up
//! (`transfer_slot.rs`) once the last byte is handed over. Whether a blob needs uploading at
//! all, and the session it goes into, are decided in `blob.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use omx_core::Digest;
use reqwest::{Body, Url};
use tokio::sync::Notify;

use super::stream::{verified_stream, StreamAborted, StreamCheck};
use super::transfer_slot::TransferSlot;
use super::{CopyEngine, ImageJob};
use crate::client::{ContentHeaders, Repository};
use crate::error::RegistryError;
use crate::manifest::Descriptor;
use crate::progress::ProgressEvent;

/// How often per-blob byte counts are reported while a transfer runs.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// No part of a chunked upload but the last is smaller: ECR refuses smaller ones with
/// `LayerPartTooSmallException: All layer parts except the last part should be at least 5MB`
/// (dotnet/sdk-container-builds #279, #424), and other registries take any size.
const MIN_CHUNK_SIZE: u64 = 5 * 1024 * 1024;

impl CopyEngine {
    /// Streams the blob from the source into the open upload session, verifying as it goes.
    pub(super) async fn upload(
        &self,
        job: &ImageJob<'_>,
        blob: &Descriptor,
        upload: &Url,
        slot: &TransferSlot<'_>,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {} from {}", blob.digest, job.source);
        // What the descriptor and the source's own headers say is the same on every attempt:
        // a contradiction there is a `DescriptorMismatch`, which is not retried. Only what the
        // bytes alone reveal (checked while they stream) may be damage in transit.
        if blob.size == 0 {
            // Nothing will stream past the verifier, so check the empty content's digest now.
            let empty = blob.digest.hasher().finish();
            if empty != blob.digest {
                return Err(RegistryError::DescriptorMismatch {
                    what,
                    reason: format!(
                        "the manifest says 0 bytes, whose digest is {empty}, not {}",
                        blob.digest
                    ),
                });
            }
        }
        let fetched = job
            .fetched_configs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&blob.digest)
            .cloned();
        if let Some(bytes) = fetched.filter(|bytes| bytes.len() as u64 == blob.size) {
            // Read (and its digest checked) to learn the image's platform: sent from memory.
            let size = bytes.len() as u64;
            let passed_on = Arc::new(Notify::new());
            let handing_over = passed_on.clone();
            let body = futures_util::stream::once(async move {
                handing_over.notify_one();
                Ok::<_, std::convert::Infallible>(bytes)
            });
            let send = self.client.put_blob_stream(
                &job.target,
                upload,
                &blob.digest,
                size,
                Body::wrap_stream(body),
            );
            return release_when_handed_over(send, &passed_on, slot).await;
        }
        let response = self.client.get_blob(&job.source, &blob.digest).await?;
        if let Some(length) = response.content_length().filter(|&len| len != blob.size) {
            return Err(RegistryError::DescriptorMismatch {
                what,
                reason: format!(
                    "the source serves {length} bytes but the manifest says {}",
                    blob.size
                ),
            });
        }
        if let Some(served) = ContentHeaders::of(&response).digest.filter(|served| {
            served.algorithm() == blob.digest.algorithm() && *served != blob.digest
        }) {
            return Err(RegistryError::DescriptorMismatch {
                what,
                reason: format!(
                    "the source serves it as {served}, not as the {} the manifest names",
                    blob.digest
                ),
            });
        }
        let check = StreamCheck::new(what, blob.digest.clone(), blob.size);
        let transferred = check.transferred.clone();
        let failure = check.failure.clone();
        let passed_on = check.passed_on.clone();
        let stream = verified_stream(Box::pin(response.bytes_stream()), check);
        let transfer = async {
            match self.options.chunk_size {
                None => {
                    let send = self.client.put_blob_stream(
                        &job.target,
                        upload,
                        &blob.digest,
                        blob.size,
                        Body::wrap_stream(stream),
                    );
                    release_when_handed_over(send, &passed_on, slot).await
                }
                Some(chunk_size) => {
                    self.upload_chunked(&job.target, upload, &blob.digest, stream, chunk_size, slot)
                        .await
                }
            }
        };
        let result = report_progress(transfer, &transferred, |bytes| {
            job.progress.event(ProgressEvent::BlobProgress {
                image: job.id,
                digest: &blob.digest,
                transferred: bytes,
                size: blob.size,
            })
        })
        .await;
        // When the source stream failed, the upload request failed because of it: the stream's
        // own error is the cause worth reporting.
        let stream_failure = failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match (stream_failure, result) {
            (Some(cause), _) => Err(cause),
            (None, result) => result,
        }
    }

    /// Sends the verified stream in `PATCH` chunks of `chunk_size` bytes (one held in memory at
    /// a time), each to the URL the previous answer named, then commits with the final `PUT`.
    async fn upload_chunked(
        &self,
        target: &Repository,
        upload: &Url,
        digest: &Digest,
        stream: impl Stream<Item = Result<Bytes, StreamAborted>>,
        chunk_size: u64,
        slot: &TransferSlot<'_>,
    ) -> Result<(), RegistryError> {
        let chunk_size = usize::try_from(chunk_size.max(MIN_CHUNK_SIZE)).unwrap_or(usize::MAX);
        let mut stream = std::pin::pin!(stream);
        let mut url = upload.clone();
        let mut offset = 0u64;
        let mut buffer = BytesMut::new();
        let aborted = || RegistryError::Protocol {
            what: format!("upload blob {digest} to {target}"),
            reason: "the source stream was aborted".to_string(),
        };
        while let Some(piece) = stream.next().await {
            buffer.extend_from_slice(&piece.map_err(|_| aborted())?);
            while buffer.len() >= chunk_size {
                let chunk = buffer.split_to(chunk_size).freeze();
                let len = chunk.len() as u64;
                url = self.client.patch_chunk(target, &url, offset, chunk).await?;
                offset += len;
            }
        }
        if !buffer.is_empty() {
            url = self
                .client
                .patch_chunk(target, &url, offset, buffer.freeze())
                .await?;
        }
        // The stream ended without error, so every byte was verified: safe to commit. The last
        // chunk has arrived too, so the next transfer may take this one's place.
        slot.release();
        self.client.finish_upload(target, &url, digest).await
    }
}

/// Awaits the upload request `send`, giving the transfer's place up once `passed_on` says its
/// last byte (verified) is being handed over: the rest is the registry committing the upload.
async fn release_when_handed_over<T>(
    send: impl Future<Output = T>,
    passed_on: &Notify,
    slot: &TransferSlot<'_>,
) -> T {
    let mut send = std::pin::pin!(send);
    tokio::select! {
        result = &mut send => return result,
        () = passed_on.notified() => slot.release(),
    }
    send.await
}

/// Runs `transfer`, reporting the byte counter's value every [`PROGRESS_INTERVAL`] while it
/// changes.
async fn report_progress<F: Future>(
    transfer: F,
    counter: &AtomicU64,
    mut report: impl FnMut(u64),
) -> F::Output {
    let mut transfer = std::pin::pin!(transfer);
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = 0;
    loop {
        tokio::select! {
            output = &mut transfer => return output,
            _ = ticker.tick() => {
                let now = counter.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    report(now);
                }
            }
        }
    }
}

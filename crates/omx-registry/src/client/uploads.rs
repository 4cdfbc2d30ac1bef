//! Blob writes through upload sessions: opening one (`POST …/blobs/uploads/`), asking for a
//! cross-repository mount through the same request, completing an upload in one streaming
//! `PUT` or in `PATCH` chunks and a final `PUT`, and abandoning a session.
//!
//! Opening and mounting are repeatable `Call`s; everything that carries blob content is a
//! one-shot send (`send_unrepeatable`): the copy engine restarts the whole blob on failure.

use bytes::Bytes;
use omx_core::Digest;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::header::{LOCATION, RANGE};
use reqwest::{Body, Method, Response, StatusCode, Url};

use super::http::Call;
use super::response::{check_returned_digest, upload_location};
use super::{RegistryClient, Repository};
use crate::auth::Scope;
use crate::error::RegistryError;
use crate::transport::with_query_param;

/// Result of a cross-repository mount request.
#[derive(Debug)]
pub(crate) enum MountOutcome {
    Mounted,
    /// The registry could not mount and opened an upload session instead.
    Upload(Url),
}

impl RegistryClient {
    /// Opens an upload session and returns its URL.
    pub(crate) async fn start_upload(&self, repository: &Repository) -> Result<Url, RegistryError> {
        let what = format!("start blob upload to {repository}");
        let scopes = [Scope::pull_push(&repository.path)];
        let response = self.post_uploads(repository, &[], &scopes, &what).await?;
        upload_location(&response, &what)
    }

    /// `POST /v2/<repository>/blobs/uploads/` with `query`: the request that opens an upload
    /// session, or mounts a blob when the query names one.
    async fn post_uploads(
        &self,
        repository: &Repository,
        query: &[(&str, &str)],
        scopes: &[Scope],
        what: &str,
    ) -> Result<Response, RegistryError> {
        let mut url = self.api_url(repository, "blobs/uploads/").await?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self
            .send(Call::new(Method::POST, url, repository, scopes, what))
            .await?;
        self.expect_success(response, &repository.registry, what)
            .await
    }

    /// Asks the registry to link a blob it holds in `from` (same registry) into `repository`.
    pub(crate) async fn mount_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        from: &str,
    ) -> Result<MountOutcome, RegistryError> {
        let what = format!(
            "mount blob {digest} from {}/{from} into {repository}",
            repository.registry
        );
        let scopes = [Scope::pull_push(&repository.path), Scope::pull(from)];
        let digest = digest.to_string();
        let query = [("mount", digest.as_str()), ("from", from)];
        let response = self
            .post_uploads(repository, &query, &scopes, &what)
            .await?;
        if response.status() == StatusCode::CREATED {
            Ok(MountOutcome::Mounted)
        } else {
            Ok(MountOutcome::Upload(upload_location(&response, &what)?))
        }
    }

    /// Completes an upload in one streaming `PUT` of `size` bytes. The body stream must fail
    /// (rather than end) if the content turns out wrong, so the registry never commits it.
    pub(crate) async fn put_blob_stream(
        &self,
        repository: &Repository,
        upload: &Url,
        digest: &Digest,
        size: u64,
        body: Body,
    ) -> Result<(), RegistryError> {
        let what = format!("upload blob {digest} to {repository}");
        let url = with_query_param(upload, "digest", &digest.to_string());
        let headers = octet_stream(size);
        let response = self
            .send_unrepeatable(Method::PUT, url, repository, headers, body, &what)
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        check_returned_digest(&response, digest, &what).map(drop)
    }

    /// Sends one chunk of a chunked upload and returns the URL for the next request.
    pub(crate) async fn patch_chunk(
        &self,
        repository: &Repository,
        upload: &Url,
        offset: u64,
        chunk: Bytes,
    ) -> Result<Url, RegistryError> {
        let what = format!("upload chunk at byte {offset} to {repository}");
        let len = chunk.len() as u64;
        let mut headers = octet_stream(len);
        let range = format!("{}-{}", offset, offset + len.saturating_sub(1));
        headers.insert(
            CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("a numeric range is a valid header"),
        );
        let response = self
            .send_unrepeatable(
                Method::PATCH,
                upload.clone(),
                repository,
                headers,
                Body::from(chunk),
                &what,
            )
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        // Some registries acknowledge a chunk without storing all of it; the Range header says
        // what they hold, and a shortfall must stop the upload rather than corrupt the blob. A
        // Range that ends before this chunk began is not a shortfall but a stale answer: ECR's
        // stops advancing after the first part although it stores every part (aws/containers-
        // roadmap #2831). The digest the registry checks when the upload is committed still
        // catches any byte it lost.
        if let Some(range) = response.headers().get(RANGE) {
            let held = range
                .to_str()
                .ok()
                .and_then(|r| r.trim().trim_start_matches("bytes=").split_once('-'))
                .and_then(|(_, end)| end.trim().parse::<u64>().ok());
            if let Some(last) = held {
                let ends_inside_this_chunk = last + 1 > offset && last + 1 != offset + len;
                if ends_inside_this_chunk {
                    return Err(RegistryError::SizeMismatch {
                        what,
                        reason: format!(
                            "the registry holds {} bytes after this chunk, expected {}",
                            last + 1,
                            offset + len
                        ),
                    });
                }
            }
        }
        match response.headers().get(LOCATION) {
            Some(_) => upload_location(&response, &what),
            None => Ok(upload.clone()),
        }
    }

    /// Commits a chunked upload whose content has been sent and verified.
    pub(crate) async fn finish_upload(
        &self,
        repository: &Repository,
        upload: &Url,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let what = format!("complete upload of blob {digest} to {repository}");
        let url = with_query_param(upload, "digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
        let response = self
            .send_unrepeatable(
                Method::PUT,
                url,
                repository,
                headers,
                Body::from(Bytes::new()),
                &what,
            )
            .await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        check_returned_digest(&response, digest, &what).map(drop)
    }

    /// Abandons an upload session (best effort: the registry expires it anyway, so neither a
    /// missing authorization nor a failed request matters).
    pub(crate) async fn cancel_upload(&self, repository: &Repository, upload: &Url) {
        let scopes = [Scope::pull_push(&repository.path)];
        let authorization = self
            .inner
            .auth
            .authorization(&repository.registry, &scopes)
            .await
            .ok()
            .flatten();
        let what = format!("cancel upload to {repository}");
        let _ = self
            .dispatch(
                Method::DELETE,
                upload.clone(),
                HeaderMap::new(),
                authorization.as_ref(),
                None,
                &what,
            )
            .await;
    }
}

/// Headers of a request carrying `len` bytes of blob content.
fn octet_stream(len: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    headers
}

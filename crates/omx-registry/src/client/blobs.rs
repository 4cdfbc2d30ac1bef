//! Blob reads: `HEAD` (does a repository hold it, and how big), a streaming `GET` whose body the
//! copy engine reads, and a small verified download into memory (image configs).

use bytes::Bytes;
use omx_core::Digest;
use reqwest::{Method, Response, Url};

use super::http::Call;
use super::response::read_body_up_to;
use super::{RegistryClient, Repository};
use crate::auth::Scope;
use crate::error::RegistryError;
use crate::transport::retrying;

impl RegistryClient {
    /// The size of a blob in `repository`, or `None` when the repository does not hold it.
    pub async fn head_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.head_blob_scoped(repository, digest, &[Scope::pull(&repository.path)])
            .await
    }

    /// [`RegistryClient::head_blob`] authorized for `scopes`: the copy engine asks with the
    /// push scope it needs next, so one token serves the check and the upload.
    pub(crate) async fn head_blob_scoped(
        &self,
        repository: &Repository,
        digest: &Digest,
        scopes: &[Scope],
    ) -> Result<Option<u64>, RegistryError> {
        let what = format!("HEAD blob {digest} in {repository}");
        let url = self.blob_url(repository, digest).await?;
        let response = self
            .head(Call::new(Method::HEAD, url, repository, scopes, &what))
            .await?;
        Ok(response.map(|response| response.content_length().unwrap_or(0)))
    }

    /// Starts downloading a blob; the body is read by the caller (streaming).
    pub(crate) async fn get_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Response, RegistryError> {
        let what = format!("GET blob {digest} from {repository}");
        let scopes = [Scope::pull(&repository.path)];
        let url = self.blob_url(repository, digest).await?;
        let response = self
            .send(Call::new(Method::GET, url, repository, &scopes, &what))
            .await?;
        self.expect_success(response, &repository.registry, &what)
            .await
    }

    /// Downloads a small blob (an image config) into memory, verified, refusing more than `limit`.
    pub async fn get_blob_bytes(
        &self,
        repository: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Bytes, RegistryError> {
        let what = format!("blob {digest} from {repository}");
        retrying(
            &self.inner.retry,
            &what,
            |_, _| {},
            || async {
                let response = self.get_blob(repository, digest).await?;
                let body =
                    read_body_up_to(response, &what, limit, || RegistryError::SizeMismatch {
                        what: what.clone(),
                        reason: format!("larger than the {limit}-byte limit for in-memory blobs"),
                    })
                    .await?;
                let mut verifier = digest.hasher();
                verifier.update(&body);
                let actual = verifier.finish();
                if &actual != digest {
                    return Err(RegistryError::DigestMismatch {
                        what: what.clone(),
                        expected: digest.clone(),
                        actual,
                    });
                }
                Ok(body)
            },
        )
        .await
    }

    /// `<base>/v2/<repository>/blobs/<digest>`.
    async fn blob_url(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Url, RegistryError> {
        self.api_url(repository, &format!("blobs/{digest}")).await
    }
}

//! Manifest operations: `HEAD` (digest, media type and size without downloading), `GET`
//! (bounded, verified against the digest asked for or the one the registry names) and `PUT` of
//! the exact bytes pulled.

use omx_core::{Digest, Reference};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};

use super::http::Call;
use super::response::{check_returned_digest, read_body_up_to, ContentHeaders};
use super::{lock, ManifestDescriptor, ManifestRef, RegistryClient, Repository};
use crate::auth::Scope;
use crate::error::RegistryError;
use crate::manifest::{media_type, Manifest};
use crate::transport::retrying;

impl RegistryClient {
    /// The digest, media type and size of a manifest, or `None` when it does not exist.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<ManifestDescriptor>, RegistryError> {
        self.head_manifest_in(&Repository::of(reference), ManifestRef::of(reference))
            .await
    }

    /// [`RegistryClient::head_manifest`] by repository and tag or digest.
    pub async fn head_manifest_in(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
    ) -> Result<Option<ManifestDescriptor>, RegistryError> {
        let what = format!("HEAD manifest {}", manifest.display_in(repository));
        let scopes = [Scope::pull(&repository.path)];
        let url = self.manifest_url(repository, manifest).await?;
        let call = Call::new(Method::HEAD, url, repository, &scopes, &what);
        let Some(response) = self.head(call.headers(accept_manifests())).await? else {
            return Ok(None);
        };
        let ContentHeaders {
            digest: header_digest,
            content_type,
        } = ContentHeaders::of(&response);
        let media_type = content_type
            .map(|ct| ct.split(';').next().unwrap_or(&ct).trim().to_string())
            .filter(|ct| media_type::is_index(ct) || media_type::is_image(ct));
        let size = response.content_length();
        match (header_digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Some(ManifestDescriptor {
                digest,
                media_type,
                size,
            })),
            // Some registries omit headers on HEAD; the manifest itself answers reliably.
            _ => {
                let manifest = self.get_manifest_in(repository, manifest).await?;
                Ok(Some(ManifestDescriptor {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: manifest.bytes.len() as u64,
                }))
            }
        }
    }

    /// Downloads a manifest, verified against the digest asked for (digest references) or the
    /// registry's `Docker-Content-Digest`. A missing manifest is [`RegistryError::NotFound`].
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        self.get_manifest_in(&Repository::of(reference), ManifestRef::of(reference))
            .await
    }

    /// [`RegistryClient::get_manifest`] by repository and tag or digest.
    pub async fn get_manifest_in(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
    ) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {}", manifest.display_in(repository));
        let url = self.manifest_url(repository, manifest).await?;
        // Reading the body can fail after the request succeeded (a broken connection, a digest
        // that does not match), so the whole download is retried, not only the request.
        let fetch = || {
            retrying(
                &self.inner.retry,
                &what,
                |_, _| {},
                || self.fetch_manifest_once(repository, manifest, url.clone(), &what),
            )
        };
        let ManifestRef::Digest(digest) = manifest else {
            // What a tag named is known by its digest from now on (the body is verified against
            // it or hashed for it), so asking for it by digest later is not another pull.
            let fetched = fetch().await?;
            let cell = lock(&self.inner.manifests_by_digest)
                .entry((repository.clone(), fetched.digest.clone()))
                .or_default()
                .clone();
            let _ = cell.set(fetched.clone());
            return Ok(fetched);
        };
        // A manifest asked for by digest is that content for good, and is verified: fetched
        // once per client however many copies need it at the same time, for a GET is what
        // registries' pull limits count (Docker Hub's: docker/docs,
        // content/manuals/docker-hub/usage/pulls.md). A failed fetch is not kept.
        let cell = lock(&self.inner.manifests_by_digest)
            .entry((repository.clone(), digest.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(fetch).await.cloned()
    }

    async fn fetch_manifest_once(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
        url: Url,
        what: &str,
    ) -> Result<Manifest, RegistryError> {
        let scopes = [Scope::pull(&repository.path)];
        let call = Call::new(Method::GET, url, repository, &scopes, what);
        let response = self.send(call.headers(accept_manifests())).await?;
        let response = self
            .expect_success(response, &repository.registry, what)
            .await?;
        let limit = self.inner.max_manifest_size;
        let too_large = || RegistryError::ManifestTooLarge {
            what: what.to_string(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let ContentHeaders {
            digest: header_digest,
            content_type,
        } = ContentHeaders::of(&response);
        // A registry that names another digest for the manifest asked for by digest (a child
        // whose index entry is wrong) will do so again: final, unlike a body damaged on the
        // way, which the digest check below catches and the caller retries.
        if let (ManifestRef::Digest(asked), Some(served)) = (&manifest, &header_digest) {
            if served.algorithm() == asked.algorithm() && served != *asked {
                return Err(RegistryError::DescriptorMismatch {
                    what: what.to_string(),
                    reason: format!("the registry serves manifest {served} under this digest"),
                });
            }
        }
        let body = read_body_up_to(response, what, limit, too_large).await?;
        let expected = match manifest {
            ManifestRef::Digest(digest) => Some(digest.clone()),
            ManifestRef::Tag(_) => header_digest,
        };
        let digest = match expected {
            Some(expected) => {
                let mut verifier = expected.hasher();
                verifier.update(&body);
                let actual = verifier.finish();
                if actual != expected {
                    return Err(RegistryError::DigestMismatch {
                        what: what.to_string(),
                        expected,
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256_of(&body),
        };
        Manifest::parse(body, content_type.as_deref(), digest).map_err(|source| {
            RegistryError::Manifest {
                what: what.to_string(),
                source,
            }
        })
    }

    /// Pushes `manifest`'s exact bytes and media type under `name` (a tag, or its own digest)
    /// and returns the digest. Its blobs and child manifests must already be in the repository.
    /// Pushes `manifest` as `name`; `true` when the registry confirmed its digest
    /// (`Docker-Content-Digest`), so that nothing needs to read it back.
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        name: ManifestRef<'_>,
        manifest: &Manifest,
    ) -> Result<bool, RegistryError> {
        let what = format!("push manifest {}", name.display_in(repository));
        let scopes = [Scope::pull_push(&repository.path)];
        let url = self.manifest_url(repository, name).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&manifest.media_type).map_err(|_| RegistryError::Protocol {
                what: what.clone(),
                reason: format!("media type {:?} is not a valid header", manifest.media_type),
            })?,
        );
        let call = Call::new(Method::PUT, url, repository, &scopes, &what)
            .headers(headers)
            .body(manifest.bytes.clone());
        let response = self.send(call).await?;
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        check_returned_digest(&response, &manifest.digest, &what)
    }

    /// `<base>/v2/<repository>/manifests/<tag or digest>`.
    async fn manifest_url(
        &self,
        repository: &Repository,
        manifest: ManifestRef<'_>,
    ) -> Result<Url, RegistryError> {
        self.api_url(
            repository,
            &format!("manifests/{}", manifest.path_segment()),
        )
        .await
    }
}

fn accept_manifests() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCEPT,
        HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
    );
    headers
}

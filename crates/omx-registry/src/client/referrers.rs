//! Referrers: the manifests (signatures, attestations, SBOMs) whose `subject` is a given image.
//!
//! OCI distribution-spec 1.1, "Listing Referrers": `GET /v2/<name>/referrers/<digest>` answers an
//! image index of their descriptors. "Unavailable Referrers API": a client that gets 404 there
//! MUST fall back to the *referrers tag schema*, an image index stored under the tag
//! `<alg>-<ref>` (`sha256-<hex>`), which clients that push a referrer keep up to date.

use bytes::Bytes;
use omx_core::Digest;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::http::Call;
use super::response::read_body_up_to;
use super::{ManifestRef, RegistryClient, Repository};
use crate::auth::Scope;
use crate::error::RegistryError;
use crate::manifest::{media_type, Manifest};

/// The referrers of one image, as descriptors kept whole (`artifactType` and `annotations`
/// included: they are written back unchanged into a fallback index).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Referrers {
    pub descriptors: Vec<Value>,
    /// The registry answered the referrers API (else they come from the fallback tag).
    pub from_api: bool,
}

impl Referrers {
    /// The digest of each descriptor that names a valid one.
    pub fn digests(&self) -> Vec<Digest> {
        self.descriptors
            .iter()
            .filter_map(descriptor_digest)
            .collect()
    }
}

/// A descriptor's `digest`, when it is a valid digest.
pub fn descriptor_digest(descriptor: &Value) -> Option<Digest> {
    descriptor.get("digest")?.as_str()?.parse().ok()
}

/// The referrers tag schema's tag for `digest`: `<alg>-<ref>`, the algorithm cut to 32
/// characters and the hex to 64 (so `sha256:<hex>` becomes `sha256-<hex>`; distribution-spec 1.1,
/// "Referrers Tag Schema").
pub fn fallback_tag(digest: &Digest) -> String {
    let algorithm = digest.algorithm().name();
    let hex = digest.hex();
    format!(
        "{}-{}",
        &algorithm[..algorithm.len().min(32)],
        &hex[..hex.len().min(64)]
    )
}

/// An OCI index answered by the referrers API is small; a few thousand referrers at most.
const MAX_REFERRERS_BYTES: usize = 4 * 1024 * 1024;

impl RegistryClient {
    /// The referrers of `digest` in `repository`: from the referrers API, or when the registry
    /// has none (404), from the fallback tag (empty when that tag does not exist either).
    pub async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Referrers, RegistryError> {
        let what = format!("referrers of {digest} in {repository}");
        let scopes = [Scope::pull(&repository.path)];
        let url = self
            .api_url(repository, &format!("referrers/{digest}"))
            .await?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media_type::OCI_INDEX));
        let call = Call::new(Method::GET, url, repository, &scopes, &what).headers(headers);
        let response = self.send(call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            let tag = fallback_tag(digest);
            return match self
                .get_manifest_in(repository, ManifestRef::Tag(&tag))
                .await
            {
                Ok(index) => Ok(Referrers {
                    descriptors: index_descriptors(&index.bytes, &what)?,
                    from_api: false,
                }),
                Err(error) if error.is_not_found() => Ok(Referrers::default()),
                Err(error) => Err(error),
            };
        }
        let response = self
            .expect_success(response, &repository.registry, &what)
            .await?;
        let too_large = || RegistryError::ManifestTooLarge {
            what: what.clone(),
            limit: MAX_REFERRERS_BYTES,
        };
        let body = read_body_up_to(response, &what, MAX_REFERRERS_BYTES, too_large).await?;
        Ok(Referrers {
            descriptors: index_descriptors(&body, &what)?,
            from_api: true,
        })
    }

    /// Writes `descriptors` as the fallback index of `subject` (an OCI image index under the
    /// referrers tag schema's tag).
    pub async fn put_fallback_index(
        &self,
        repository: &Repository,
        subject: &Digest,
        descriptors: &[Value],
    ) -> Result<(), RegistryError> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": descriptors,
        });
        let bytes = Bytes::from(serde_json::to_vec(&index).expect("JSON values serialize"));
        let digest = Digest::sha256_of(&bytes);
        let what = format!("fallback referrers index of {subject}");
        let manifest =
            Manifest::parse(bytes, Some(media_type::OCI_INDEX), digest).map_err(|source| {
                RegistryError::Manifest {
                    what: what.clone(),
                    source,
                }
            })?;
        let tag = fallback_tag(subject);
        self.put_manifest(repository, ManifestRef::Tag(&tag), &manifest)
            .await
            .map(drop)
    }
}

/// The `manifests` of an image index document.
fn index_descriptors(body: &[u8], what: &str) -> Result<Vec<Value>, RegistryError> {
    let protocol = |reason: String| RegistryError::Protocol {
        what: what.to_string(),
        reason,
    };
    let index: Value = serde_json::from_slice(body)
        .map_err(|e| protocol(format!("the referrers index is not JSON: {e}")))?;
    match index.get("manifests") {
        Some(Value::Array(descriptors)) => Ok(descriptors.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(protocol(
            "the referrers index's \"manifests\" is not a list".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_tag_replaces_the_colon() {
        let digest: Digest = format!("sha256:{}", "e".repeat(64)).parse().unwrap();
        assert_eq!(fallback_tag(&digest), format!("sha256-{}", "e".repeat(64)));
    }

    #[test]
    fn descriptors_are_kept_whole() {
        let body = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:x","artifactType":"a"}]}"#;
        let descriptors = index_descriptors(body, "test").unwrap();
        assert_eq!(descriptors[0]["artifactType"], "a");
        assert!(index_descriptors(br#"{"manifests": 3}"#, "test").is_err());
        assert!(index_descriptors(br#"{}"#, "test").unwrap().is_empty());
    }
}

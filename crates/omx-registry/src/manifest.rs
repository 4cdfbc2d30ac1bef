//! Image manifests and indexes as pulled: the exact bytes (whose hash is the digest) plus the
//! parsed fields the copy engine walks.

use bytes::Bytes;
use omx_core::Digest;
use serde::Deserialize;

use omx_core::Platform;

/// Manifest and config media types.
pub mod media_type {
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Layers Docker must not redistribute (Windows base layers); they are fetched from `urls`.
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_NONDISTRIBUTABLE_PREFIX: &str =
        "application/vnd.oci.image.layer.nondistributable.";

    /// The `Accept` header for every manifest request. Registries (distribution 2.8 among them)
    /// answer 404 for OCI content, or convert, when a type is missing here.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";

    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    pub fn is_image(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }

    pub fn is_schema1(media_type: &str) -> bool {
        media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
    }
}

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A layer that registries do not store (its `urls` say where it lives), so it is not copied.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
            && (self.media_type == media_type::DOCKER_FOREIGN_LAYER
                || self
                    .media_type
                    .starts_with(media_type::OCI_NONDISTRIBUTABLE_PREFIX))
    }
}

/// A single-platform image: one config blob and its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ImageManifest {
    /// The config and every layer, each digest once, in manifest order.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut seen = std::collections::HashSet::new();
        std::iter::once(&self.config)
            .chain(&self.layers)
            .filter(|d| seen.insert(&d.digest))
            .collect()
    }
}

/// A multi-platform index (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIndex {
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// Platforms of the children that declare one.
    pub fn platforms(&self) -> Vec<&Platform> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// A manifest exactly as the registry served it.
///
/// `bytes` and `media_type` are pushed unchanged, so the digest at the target is the digest at
/// the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
    pub kind: ManifestKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "Docker image manifest schema 1 ({0}) is not supported: it is deprecated and cannot be \
         copied with its digest; re-push the image with a current Docker or BuildKit"
    )]
    Schema1(String),
    #[error(
        "unsupported manifest media type {0:?} (expected an OCI or Docker v2 manifest or index)"
    )]
    UnsupportedMediaType(String),
    #[error("manifest is not valid JSON for {media_type}: {reason}")]
    Invalid { media_type: String, reason: String },
}

/// Every field any of the four manifest types has, to learn which one a document is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

impl Manifest {
    /// Interprets pulled bytes. The media type comes from the response's `Content-Type` when it
    /// names a manifest type (that is what gets pushed back), else from the document's
    /// `mediaType`, else from its shape (OCI allows omitting `mediaType`).
    pub fn parse(
        bytes: Bytes,
        content_type: Option<&str>,
        digest: Digest,
    ) -> Result<Manifest, ManifestError> {
        let content_type = content_type
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or(ct)
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|ct| !ct.is_empty());
        if let Some(ct) = content_type
            .as_deref()
            .filter(|ct| media_type::is_schema1(ct))
        {
            return Err(ManifestError::Schema1(ct.to_string()));
        }
        let invalid = |media_type: &str, reason: String| ManifestError::Invalid {
            media_type: media_type.to_string(),
            reason,
        };
        let any: AnyManifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(content_type.as_deref().unwrap_or("manifest"), e.to_string()))?;
        if any.schema_version == Some(1) {
            return Err(ManifestError::Schema1(
                content_type.unwrap_or_else(|| media_type::DOCKER_SCHEMA1.to_string()),
            ));
        }
        let is_known = |mt: &str| media_type::is_index(mt) || media_type::is_image(mt);
        let media_type = match (&content_type, &any.media_type) {
            (Some(ct), _) if is_known(ct) => ct.clone(),
            (_, Some(mt)) if is_known(mt) => mt.clone(),
            (_, Some(mt)) => return Err(ManifestError::UnsupportedMediaType(mt.clone())),
            (_, None) if any.manifests.is_some() => media_type::OCI_INDEX.to_string(),
            (_, None) if any.config.is_some() => media_type::OCI_MANIFEST.to_string(),
            (Some(ct), None) => return Err(ManifestError::UnsupportedMediaType(ct.clone())),
            (None, None) => {
                return Err(invalid(
                    "manifest",
                    "no mediaType, config or manifests".to_string(),
                ))
            }
        };
        let kind = if media_type::is_index(&media_type) {
            let manifests = any
                .manifests
                .ok_or_else(|| invalid(&media_type, "missing \"manifests\"".to_string()))?;
            ManifestKind::Index(ImageIndex { manifests })
        } else {
            let config = any
                .config
                .ok_or_else(|| invalid(&media_type, "missing \"config\"".to_string()))?;
            ManifestKind::Image(ImageManifest {
                config,
                layers: any.layers,
            })
        };
        Ok(Manifest {
            media_type,
            digest,
            bytes,
            kind,
        })
    }
}

/// The platform fields of an image config blob.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConfigPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl From<ConfigPlatform> for Platform {
    fn from(config: ConfigPlatform) -> Platform {
        Platform {
            os: config.os,
            architecture: config.architecture,
            variant: config.variant,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn parse(json: &str, content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let bytes = Bytes::from(json.to_string());
        let digest = Digest::sha256_of(&bytes);
        Manifest::parse(bytes, content_type, digest)
    }

    fn image_json(media_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}",
            "config":{{"mediaType":"{}","digest":"{D1}","size":10}},
            "layers":[{{"mediaType":"l","digest":"{D2}","size":20}},{{"mediaType":"l","digest":"{D2}","size":20}}]}}"#,
            media_type::DOCKER_CONFIG
        )
    }

    #[test]
    fn docker_v2_image_keeps_bytes_and_lists_blobs_once() {
        let json = image_json(media_type::DOCKER_MANIFEST);
        let m = parse(&json, Some(media_type::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
        assert_eq!(m.bytes, json.as_bytes());
        let ManifestKind::Image(image) = &m.kind else {
            panic!("{m:?}")
        };
        let blobs: Vec<String> = image.blobs().iter().map(|d| d.digest.to_string()).collect();
        assert_eq!(blobs, [D1, D2]);
    }

    #[test]
    fn media_type_from_header_then_body_then_shape() {
        let json = image_json(media_type::OCI_MANIFEST);
        let m = parse(&json, Some("application/json; charset=utf-8")).unwrap();
        assert_eq!(m.media_type, media_type::OCI_MANIFEST);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D1}","size":5,
                "platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let m = parse(&index, None).unwrap();
        assert_eq!(m.media_type, media_type::OCI_INDEX);
        let ManifestKind::Index(ix) = &m.kind else {
            panic!()
        };
        assert_eq!(
            ix.platforms(),
            [&Platform::new("linux", "arm64", Some("v8"))]
        );
        let m = parse(&index, Some(media_type::DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST_LIST);
    }

    #[test]
    fn schema1_is_a_clear_unsupported_error() {
        let err = parse(r#"{"schemaVersion":1,"name":"x"}"#, None).unwrap_err();
        assert!(matches!(err, ManifestError::Schema1(_)));
        let err = parse("{}", Some(media_type::DOCKER_SCHEMA1_SIGNED)).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn invalid_or_unknown_documents_are_errors() {
        assert!(matches!(
            parse("not json", None),
            Err(ManifestError::Invalid { .. })
        ));
        assert!(matches!(
            parse(
                r#"{"schemaVersion":2,"mediaType":"application/x-helm"}"#,
                None
            ),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse(r#"{"schemaVersion":2}"#, Some(media_type::OCI_INDEX)),
            Err(ManifestError::Invalid { .. })
        ));
    }

    #[test]
    fn foreign_layers_are_recognised() {
        let foreign = Descriptor {
            media_type: media_type::DOCKER_FOREIGN_LAYER.to_string(),
            digest: D1.parse().unwrap(),
            size: 1,
            platform: None,
            urls: vec!["https://example.invalid/layer".into()],
        };
        assert!(foreign.is_foreign());
        let normal = Descriptor {
            urls: vec![],
            ..foreign
        };
        assert!(!normal.is_foreign());
    }
}

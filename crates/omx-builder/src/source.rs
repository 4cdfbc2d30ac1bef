//! Where a bundle comes from: the `source_uri` of a build manifest entry.

use std::fmt;
use std::path::{Path, PathBuf};

/// A Dockerfile bundle's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// Every object under `prefix`, keeping the key below the prefix as the file's path.
    /// `prefix` is empty (the whole bucket) or ends with `/`.
    S3Folder { bucket: String, prefix: String },
    /// One zip object.
    S3Zip { bucket: String, key: String },
    /// A folder on this machine, built in place.
    LocalFolder(PathBuf),
    /// A zip file on this machine.
    LocalZip(PathBuf),
}

impl BundleSource {
    /// Reads a `source_uri`: `s3://bucket/prefix/`, `s3://bucket/key.zip`, a local folder or a
    /// local `.zip`. `s3://bucket/name` that does not end in `.zip` is the folder `name/`.
    /// Relative local paths are taken from `base` (the manifest's folder), so a manifest and its
    /// bundles can move together.
    pub fn parse(uri: &str, base: &Path) -> Result<BundleSource, String> {
        let uri = uri.trim();
        if let Some((scheme, rest)) = uri.split_once("://") {
            if !scheme.eq_ignore_ascii_case("s3") {
                return Err(format!(
                    "unsupported source {uri:?}: give s3://bucket/prefix/, s3://bucket/key.zip, \
                     a local folder or a local .zip"
                ));
            }
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket_name(bucket).map_err(|reason| format!("source {uri:?}: {reason}"))?;
            let bucket = bucket.to_string();
            return Ok(if is_zip_name(key) {
                BundleSource::S3Zip {
                    bucket,
                    key: key.to_string(),
                }
            } else {
                let prefix = if key.is_empty() || key.ends_with('/') {
                    key.to_string()
                } else {
                    format!("{key}/")
                };
                BundleSource::S3Folder { bucket, prefix }
            });
        }
        let path = base.join(uri);
        Ok(if is_zip_name(uri) {
            BundleSource::LocalZip(path)
        } else {
            BundleSource::LocalFolder(path)
        })
    }

    pub fn is_s3(&self) -> bool {
        matches!(
            self,
            BundleSource::S3Folder { .. } | BundleSource::S3Zip { .. }
        )
    }

    /// The location as CodeBuild's S3 source names it (`bucket/key.zip`, `bucket/prefix/`);
    /// `None` for local bundles, which CodeBuild cannot reach.
    pub fn codebuild_location(&self) -> Option<String> {
        match self {
            BundleSource::S3Folder { bucket, prefix } => Some(format!("{bucket}/{prefix}")),
            BundleSource::S3Zip { bucket, key } => Some(format!("{bucket}/{key}")),
            BundleSource::LocalFolder(_) | BundleSource::LocalZip(_) => None,
        }
    }
}

impl fmt::Display for BundleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleSource::S3Folder { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            BundleSource::S3Zip { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            BundleSource::LocalFolder(path) | BundleSource::LocalZip(path) => {
                write!(f, "{}", path.display())
            }
        }
    }
}

fn is_zip_name(name: &str) -> bool {
    name.len() > 4 && name[name.len() - 4..].eq_ignore_ascii_case(".zip")
}

/// S3's bucket naming rules: 3 to 63 lower-case letters, digits, dots and hyphens.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let allowed = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if (3..=63).contains(&bucket.len()) && allowed {
        Ok(())
    } else {
        Err(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Result<BundleSource, String> {
        BundleSource::parse(uri, Path::new("/manifests"))
    }

    #[test]
    fn s3_folders_and_zips() {
        let folder = |bucket: &str, prefix: &str| BundleSource::S3Folder {
            bucket: bucket.into(),
            prefix: prefix.into(),
        };
        assert_eq!(
            parse("s3://my-bucket/dir/"),
            Ok(folder("my-bucket", "dir/"))
        );
        assert_eq!(
            parse("s3://my-bucket/a/dir"),
            Ok(folder("my-bucket", "a/dir/"))
        );
        assert_eq!(parse(" s3://my-bucket "), Ok(folder("my-bucket", "")));
        assert_eq!(parse("S3://my-bucket/"), Ok(folder("my-bucket", "")));
        assert_eq!(
            parse("s3://my-bucket/x/Bundle.ZIP"),
            Ok(BundleSource::S3Zip {
                bucket: "my-bucket".into(),
                key: "x/Bundle.ZIP".into()
            })
        );
        assert_eq!(
            parse("s3://my-bucket/x/bundle.zip")
                .unwrap()
                .codebuild_location(),
            Some("my-bucket/x/bundle.zip".to_string())
        );
        assert_eq!(
            parse("s3://my-bucket/dir").unwrap().to_string(),
            "s3://my-bucket/dir/"
        );
    }

    #[test]
    fn local_paths_are_relative_to_the_base() {
        assert_eq!(
            parse("bundles/tool"),
            Ok(BundleSource::LocalFolder("/manifests/bundles/tool".into()))
        );
        assert_eq!(
            parse("/abs/tool.zip"),
            Ok(BundleSource::LocalZip("/abs/tool.zip".into()))
        );
        assert_eq!(parse("/abs/tool.zip").unwrap().codebuild_location(), None);
        assert!(!parse("tool").unwrap().is_s3());
    }

    #[test]
    fn bad_sources_say_why() {
        for (uri, expected) in [
            ("https://example.com/x.zip", "unsupported source"),
            ("s3://Bad_Bucket/x/", "not an S3 bucket name"),
            ("s3:///x/", "not an S3 bucket name"),
        ] {
            let error = parse(uri).unwrap_err();
            assert!(error.contains(expected), "{uri}: {error}");
        }
    }
}

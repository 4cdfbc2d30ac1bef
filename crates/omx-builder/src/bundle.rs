//! Getting a bundle onto disk: S3 folders downloaded object by object, zips (from S3 or local)
//! extracted safely, local folders used in place.
//!
//! Everything fetched lands in a fresh private folder under the work directory that is removed
//! when the [`Bundle`] is dropped, and right away when fetching fails. Names coming from the
//! outside (zip entries, S3 keys) go through [`safe_relative_path`], so nothing is written
//! outside that folder, and sizes are counted as the bytes arrive, never taken from headers.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use omx_aws::{AwsError, S3};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;

use crate::extract::extract_zip;
use crate::source::BundleSource;

/// How much a bundle may expand to. The defaults fit any reasonable Docker build context and stop
/// archive bombs long before they fill a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of all files together.
    pub max_total_bytes: u64,
    /// Bytes of one file.
    pub max_entry_bytes: u64,
    /// Files and folders.
    pub max_entries: usize,
    /// Largest expansion of one zip entry (bytes out per compressed byte), checked once the entry
    /// has produced more than `ratio_floor_bytes`: small files may compress extremely well.
    pub max_ratio: u64,
    pub ratio_floor_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_total_bytes: 2 << 30,
            max_entry_bytes: 1 << 30,
            max_entries: 20_000,
            max_ratio: 200,
            ratio_floor_bytes: 1 << 20,
        }
    }
}

/// Why a bundle could not be put on disk. Every message names the bundle entry or object.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("entry {entry:?} {reason}: refused, nothing outside the build folder is written")]
    UnsafePath { entry: String, reason: &'static str },
    #[error(
        "entry {entry:?} is a symbolic link: links in zip bundles are refused (they could point \
         outside the build folder); put the file itself in the bundle"
    )]
    Symlink { entry: String },
    #[error("entry {entry:?} is not a regular file or folder (device, pipe or socket)")]
    UnsupportedType { entry: String },
    #[error("entry {entry:?} expands past the {limit}-byte limit for one file")]
    EntryTooLarge { entry: String, limit: u64 },
    #[error("the bundle expands past the {limit}-byte limit (at entry {entry:?})")]
    TooLarge { entry: String, limit: u64 },
    #[error("the bundle has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error(
        "entry {entry:?} expands more than {ratio} times its compressed size: refused as a \
         likely zip bomb"
    )]
    CompressionRatio { entry: String, ratio: u64 },
    #[error("{archive} is not a readable zip archive: {reason}")]
    Zip { archive: String, reason: String },
    #[error("{0} does not exist or is not the expected kind (a folder, or a .zip file)")]
    NotFound(String),
    #[error("{0} holds no files")]
    Empty(String),
    #[error("{source_uri} is in S3, but no S3 client was configured")]
    NoS3 { source_uri: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl BundleError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> BundleError {
        let what = what.into();
        move |source| BundleError::Io { what, source }
    }
}

/// Reads a path from an archive or a bucket as a relative path inside the bundle: `\` counts as
/// a separator (archives made on Windows), `.` and empty components are dropped, and the name
/// is refused when it is absolute, starts with a drive letter, climbs with `..` or holds NUL.
/// An empty result means the bundle root itself.
pub fn safe_relative_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.contains('\0') {
        return Err("contains a NUL character");
    }
    let normalized = name.replace('\\', "/");
    if normalized.starts_with('/') {
        return Err("is an absolute path");
    }
    let mut path = PathBuf::new();
    for (position, component) in normalized.split('/').enumerate() {
        match component {
            "" | "." => {}
            ".." => return Err("climbs out of the bundle with \"..\""),
            _ if position == 0 && is_drive_prefix(component) => {
                return Err("starts with a Windows drive letter")
            }
            _ => path.push(component),
        }
    }
    Ok(path)
}

fn is_drive_prefix(component: &str) -> bool {
    let bytes = component.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Counts entries and bytes against the [`Limits`] as they are written.
pub(crate) struct Budget {
    limits: Limits,
    entries: usize,
    bytes: u64,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn add_entry(&mut self) -> Result<(), BundleError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(BundleError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// `count` more bytes of `entry`, which has now produced `entry_bytes` in all.
    pub(crate) fn add_bytes(
        &mut self,
        entry: &str,
        entry_bytes: u64,
        count: u64,
    ) -> Result<(), BundleError> {
        if entry_bytes > self.limits.max_entry_bytes {
            return Err(BundleError::EntryTooLarge {
                entry: entry.to_string(),
                limit: self.limits.max_entry_bytes,
            });
        }
        self.bytes += count;
        if self.bytes > self.limits.max_total_bytes {
            return Err(BundleError::TooLarge {
                entry: entry.to_string(),
                limit: self.limits.max_total_bytes,
            });
        }
        Ok(())
    }
}

/// Creates a new file (never opening one that exists, so a name given twice is an error) with
/// mode 0644, or 0755 when `executable`, creating its parent folders.
pub(crate) fn create_bundle_file(
    root: &Path,
    relative: &Path,
    executable: bool,
    entry: &str,
) -> Result<File, BundleError> {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(BundleError::io(format!("entry {entry:?}")))?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(&path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => BundleError::Io {
                what: format!("entry {entry:?} appears twice in the bundle"),
                source,
            },
            _ => BundleError::Io {
                what: format!("entry {entry:?}"),
                source,
            },
        })
}

/// A bundle on disk, ready to build. A fetched bundle's private folder is removed on drop.
#[derive(Debug)]
pub struct Bundle {
    root: PathBuf,
    _workspace: Option<TempDir>,
}

impl Bundle {
    /// The build context: the folder holding the bundle's files.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Puts bundles on disk.
#[derive(Debug, Clone)]
pub struct Fetcher {
    s3: Option<S3>,
    work_dir: PathBuf,
    limits: Limits,
}

impl Fetcher {
    /// `s3` reads `s3://` sources (none: they fail); fetched bundles go under `work_dir`.
    pub fn new(s3: Option<S3>, work_dir: PathBuf, limits: Limits) -> Fetcher {
        Fetcher {
            s3,
            work_dir,
            limits,
        }
    }

    /// Puts `source` on disk: a local folder as it is, anything else in a new private folder.
    pub async fn fetch(&self, source: &BundleSource) -> Result<Bundle, BundleError> {
        match source {
            BundleSource::LocalFolder(path) => {
                if !path.is_dir() {
                    return Err(BundleError::NotFound(path.display().to_string()));
                }
                Ok(Bundle {
                    root: path.clone(),
                    _workspace: None,
                })
            }
            BundleSource::LocalZip(path) => {
                if !path.is_file() {
                    return Err(BundleError::NotFound(path.display().to_string()));
                }
                let (workspace, context) = self.workspace()?;
                self.extract(path.clone(), context.clone()).await?;
                Ok(Bundle {
                    root: context,
                    _workspace: Some(workspace),
                })
            }
            BundleSource::S3Zip { bucket, key } => {
                let s3 = self.s3(source)?;
                let (workspace, context) = self.workspace()?;
                let archive = workspace.path().join("bundle.zip");
                let mut budget = Budget::new(self.limits);
                let what = source.to_string();
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&archive)
                    .map_err(BundleError::io(format!("{what}: {}", archive.display())))?;
                download(s3, bucket, key, file, &what, &mut budget).await?;
                self.extract(archive, context.clone()).await?;
                Ok(Bundle {
                    root: context,
                    _workspace: Some(workspace),
                })
            }
            BundleSource::S3Folder { bucket, prefix } => {
                let s3 = self.s3(source)?;
                let (workspace, context) = self.workspace()?;
                let files = download_folder(s3, bucket, prefix, &context, self.limits).await?;
                if files == 0 {
                    return Err(BundleError::Empty(source.to_string()));
                }
                Ok(Bundle {
                    root: context,
                    _workspace: Some(workspace),
                })
            }
        }
    }

    fn s3(&self, source: &BundleSource) -> Result<&S3, BundleError> {
        self.s3.as_ref().ok_or_else(|| BundleError::NoS3 {
            source_uri: source.to_string(),
        })
    }

    /// A new private folder (mode 0700) and the empty `context` folder inside it.
    fn workspace(&self) -> Result<(TempDir, PathBuf), BundleError> {
        let what = format!("work folder {}", self.work_dir.display());
        fs::create_dir_all(&self.work_dir).map_err(BundleError::io(&what))?;
        let workspace = tempfile::Builder::new()
            .prefix("omx-build-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&self.work_dir)
            .map_err(BundleError::io(&what))?;
        let context = workspace.path().join("context");
        fs::create_dir(&context).map_err(BundleError::io(&what))?;
        Ok((workspace, context))
    }

    async fn extract(&self, archive: PathBuf, context: PathBuf) -> Result<(), BundleError> {
        let limits = self.limits;
        tokio::task::spawn_blocking(move || extract_zip(&archive, &context, limits))
            .await
            .map_err(|error| BundleError::Io {
                what: "zip extraction".to_string(),
                source: io::Error::other(error.to_string()),
            })?
    }
}

/// Downloads every object under `prefix` into `context`; returns how many files were written.
async fn download_folder(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    context: &Path,
    limits: Limits,
) -> Result<usize, BundleError> {
    let objects = s3.list_objects(bucket, prefix).await?;
    let mut budget = Budget::new(limits);
    let mut files = 0;
    for object in objects {
        let entry = object.key.as_str();
        let below_prefix = entry.strip_prefix(prefix).unwrap_or(entry);
        let relative =
            safe_relative_path(below_prefix).map_err(|reason| BundleError::UnsafePath {
                entry: entry.to_string(),
                reason,
            })?;
        if relative.as_os_str().is_empty() {
            // The "folder" object of the prefix itself, as the S3 console creates them.
            continue;
        }
        budget.add_entry()?;
        if entry.ends_with('/') {
            fs::create_dir_all(context.join(&relative))
                .map_err(BundleError::io(format!("entry {entry:?}")))?;
            continue;
        }
        if object.size > limits.max_entry_bytes {
            return Err(BundleError::EntryTooLarge {
                entry: entry.to_string(),
                limit: limits.max_entry_bytes,
            });
        }
        let file = create_bundle_file(context, &relative, false, entry)?;
        download(s3, bucket, entry, file, entry, &mut budget).await?;
        files += 1;
    }
    Ok(files)
}

/// Streams one object into `file`, counting its bytes against `budget` as they arrive.
async fn download(
    s3: &S3,
    bucket: &str,
    key: &str,
    file: File,
    entry: &str,
    budget: &mut Budget,
) -> Result<(), BundleError> {
    let mut reader = s3.get_object(bucket, key).await?;
    let mut file = tokio::fs::File::from_std(file);
    let mut written = 0u64;
    while let Some(chunk) = reader.next_chunk().await? {
        let count = chunk.len() as u64;
        written += count;
        budget.add_bytes(entry, written, count)?;
        file.write_all(&chunk)
            .await
            .map_err(BundleError::io(format!("entry {entry:?}")))?;
    }
    file.flush()
        .await
        .map_err(BundleError::io(format!("entry {entry:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_paths() {
        for (name, expected) in [
            ("Dockerfile", "Dockerfile"),
            ("./src//main.py", "src/main.py"),
            ("dir\\file.txt", "dir/file.txt"),
            ("tag:v1/file", "tag:v1/file"),
            ("", ""),
            ("./", ""),
        ] {
            assert_eq!(
                safe_relative_path(name),
                Ok(PathBuf::from(expected)),
                "{name}"
            );
        }
        for (name, reason) in [
            ("../evil", "climbs"),
            ("a/../../evil", "climbs"),
            ("..\\evil", "climbs"),
            ("/etc/passwd", "absolute"),
            ("\\\\server\\share\\x", "absolute"),
            ("C:\\Windows\\x", "drive letter"),
            ("c:evil", "drive letter"),
            ("a\0b", "NUL"),
        ] {
            let error = safe_relative_path(name).unwrap_err();
            assert!(error.contains(reason), "{name:?}: {error}");
        }
    }

    #[test]
    fn the_budget_counts_entries_and_bytes() {
        let mut budget = Budget::new(Limits {
            max_total_bytes: 10,
            max_entry_bytes: 6,
            max_entries: 2,
            ..Limits::default()
        });
        budget.add_entry().unwrap();
        budget.add_bytes("a", 6, 6).unwrap();
        assert!(matches!(
            budget.add_bytes("a", 7, 1),
            Err(BundleError::EntryTooLarge { limit: 6, .. })
        ));
        budget.add_entry().unwrap();
        budget.add_bytes("b", 4, 4).unwrap();
        assert!(matches!(
            budget.add_bytes("b", 5, 1),
            Err(BundleError::TooLarge { limit: 10, .. })
        ));
        assert!(matches!(
            budget.add_entry(),
            Err(BundleError::TooManyEntries { limit: 2 })
        ));
    }
}

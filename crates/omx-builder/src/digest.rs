//! The source digest: one `sha256:` value that changes whenever anything that goes into a build
//! changes, and only then.
//!
//! It covers every file, folder and symbolic link of the bundle (relative path, kind, executable
//! bit, content or link target), the Dockerfile path, the build arguments and the platform. Entries
//! are taken in byte order of their relative paths and every field is length-prefixed, so the
//! value does not depend on the order a folder lists its files in, on timestamps or owners, or
//! on how the bundle was delivered (an S3 folder, a zip, a local folder holding the same files).
//! Files that a `.dockerignore` leaves out still count: a change there rebuilds needlessly, never
//! the other way round.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use omx_core::digest::{Algorithm, Hasher};
use omx_core::Digest;

/// Names the framing, so a future change of what is hashed changes every digest.
const FORMAT: &[u8] = b"omx-ecr-helper source digest v1";

/// Everything besides the files that decides what a build produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInputs<'a> {
    /// The Dockerfile's path inside the bundle, `/`-separated.
    pub dockerfile: &'a str,
    pub build_args: &'a BTreeMap<String, String>,
    /// `os/arch[/variant]`.
    pub platform: &'a str,
}

/// The source digest of the bundle in `root` built with `inputs`. Reads every file once, in
/// fixed-size pieces.
pub fn source_digest(root: &Path, inputs: &BuildInputs<'_>) -> io::Result<Digest> {
    let mut entries = Vec::new();
    collect(root, PathBuf::new(), &mut entries)?;
    entries.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));

    let mut hasher = Hasher::new(Algorithm::Sha256);
    field(&mut hasher, FORMAT);
    let mut buffer = vec![0u8; 64 * 1024];
    for relative in &entries {
        let path = root.join(relative);
        let metadata = fs::symlink_metadata(&path)?;
        let file_type = metadata.file_type();
        let name = relative.as_os_str().as_bytes();
        if file_type.is_dir() {
            field(&mut hasher, b"dir");
            field(&mut hasher, name);
        } else if file_type.is_symlink() {
            field(&mut hasher, b"link");
            field(&mut hasher, name);
            field(&mut hasher, fs::read_link(&path)?.as_os_str().as_bytes());
        } else if file_type.is_file() {
            let executable = metadata.permissions().mode() & 0o111 != 0;
            field(&mut hasher, if executable { b"exec" } else { b"file" });
            field(&mut hasher, name);
            hasher.update(&metadata.len().to_be_bytes());
            let mut file = File::open(&path)?;
            let mut hashed = 0u64;
            loop {
                let count = file.read(&mut buffer)?;
                if count == 0 {
                    break;
                }
                hasher.update(&buffer[..count]);
                hashed += count as u64;
            }
            if hashed != metadata.len() {
                return Err(io::Error::other(format!(
                    "{} changed while its digest was computed",
                    path.display()
                )));
            }
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a file, folder or link (a device, pipe or socket)",
                    path.display()
                ),
            ));
        }
    }
    field(&mut hasher, b"dockerfile");
    field(&mut hasher, inputs.dockerfile.as_bytes());
    for (name, value) in inputs.build_args {
        field(&mut hasher, b"build-arg");
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, value.as_bytes());
    }
    field(&mut hasher, b"platform");
    field(&mut hasher, inputs.platform.as_bytes());
    Ok(hasher.finish())
}

fn field(hasher: &mut Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// Every path below `root`, relative to it; folders are not followed through links.
fn collect(root: &Path, relative: PathBuf, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(root.join(&relative))? {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        out.push(path.clone());
        if is_dir {
            collect(root, path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, content: &str) {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn digest_of(root: &Path, args: &BTreeMap<String, String>, platform: &str) -> Digest {
        source_digest(
            root,
            &BuildInputs {
                dockerfile: "Dockerfile",
                build_args: args,
                platform,
            },
        )
        .unwrap()
    }

    #[test]
    fn same_files_same_digest_any_change_another() {
        let no_args = BTreeMap::new();
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // Written in different orders: listing order must not matter.
        write(a.path(), "Dockerfile", "FROM x\n");
        write(a.path(), "src/app.py", "print(1)\n");
        write(a.path(), "src.txt", "s\n");
        write(b.path(), "src.txt", "s\n");
        write(b.path(), "src/app.py", "print(1)\n");
        write(b.path(), "Dockerfile", "FROM x\n");
        let base = digest_of(a.path(), &no_args, "linux/amd64");
        assert_eq!(base, digest_of(b.path(), &no_args, "linux/amd64"));
        assert_eq!(base.algorithm(), Algorithm::Sha256);

        write(b.path(), "src/app.py", "print(2)\n");
        assert_ne!(base, digest_of(b.path(), &no_args, "linux/amd64"));
        write(b.path(), "src/app.py", "print(1)\n");
        assert_eq!(base, digest_of(b.path(), &no_args, "linux/amd64"));

        // The executable bit counts; other mode bits do not.
        let script = b.path().join("src/app.py");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(base, digest_of(b.path(), &no_args, "linux/amd64"));
        fs::set_permissions(&script, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(base, digest_of(b.path(), &no_args, "linux/amd64"));

        // An empty folder is part of the context.
        fs::create_dir(b.path().join("empty")).unwrap();
        assert_ne!(base, digest_of(b.path(), &no_args, "linux/amd64"));
        fs::remove_dir(b.path().join("empty")).unwrap();

        // A renamed file with the same content is a change.
        fs::rename(b.path().join("src.txt"), b.path().join("src2.txt")).unwrap();
        assert_ne!(base, digest_of(b.path(), &no_args, "linux/amd64"));
    }

    #[test]
    fn build_args_platform_and_dockerfile_path_count() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM x\n");
        let no_args = BTreeMap::new();
        let base = digest_of(dir.path(), &no_args, "linux/amd64");
        let args = BTreeMap::from([("VERSION".to_string(), "1".to_string())]);
        assert_ne!(base, digest_of(dir.path(), &args, "linux/amd64"));
        assert_ne!(base, digest_of(dir.path(), &no_args, "linux/arm64"));
        let other_dockerfile = source_digest(
            dir.path(),
            &BuildInputs {
                dockerfile: "docker/Dockerfile",
                build_args: &no_args,
                platform: "linux/amd64",
            },
        )
        .unwrap();
        assert_ne!(base, other_dockerfile);
        // Field boundaries are unambiguous: moving a character between fields changes the value.
        let split_1 = BTreeMap::from([("AB".to_string(), "C".to_string())]);
        let split_2 = BTreeMap::from([("A".to_string(), "BC".to_string())]);
        assert_ne!(
            digest_of(dir.path(), &split_1, "linux/amd64"),
            digest_of(dir.path(), &split_2, "linux/amd64")
        );
    }

    #[test]
    fn links_count_by_target_and_specials_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM x\n");
        let no_args = BTreeMap::new();
        std::os::unix::fs::symlink("Dockerfile", dir.path().join("link")).unwrap();
        let linked = digest_of(dir.path(), &no_args, "linux/amd64");
        fs::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", dir.path().join("link")).unwrap();
        assert_ne!(linked, digest_of(dir.path(), &no_args, "linux/amd64"));

        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let error = source_digest(
            dir.path(),
            &BuildInputs {
                dockerfile: "Dockerfile",
                build_args: &no_args,
                platform: "linux/amd64",
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("pipe"), "{error}");
    }
}

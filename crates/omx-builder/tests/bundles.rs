//! Putting bundles on disk: zips extracted safely (hostile archives refused with nothing written
//! outside the build folder, which is removed), local folders used in place, and the source
//! digest independent of how the same files were delivered.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use omx_builder::{source_digest, BuildInputs, BundleError, BundleSource, Fetcher, Limits};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A sandbox: `work/` receives bundles; anything escaping would land in `outside/` or beside.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("work/deeper")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The build folder is made inside `work/deeper`, so `../../x` from it is `work/x` or
    /// beside `work`.
    fn fetcher(&self, limits: Limits) -> Fetcher {
        Fetcher::new(None, self.path("work/deeper"), limits)
    }

    /// Every path in the sandbox except the archives given to extract.
    fn files(&self) -> Vec<String> {
        let mut found = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut found);
        found.retain(|path| !path.ends_with(".zip"));
        found.sort();
        found
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(root).unwrap().display().to_string());
        if path.is_dir() && !path.is_symlink() {
            walk(root, &path, out);
        }
    }
}

/// The sandbox as a fresh one looks.
const PRISTINE: [&str; 3] = ["outside", "work", "work/deeper"];

enum Entry<'a> {
    File(&'a str, Vec<u8>, u32),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn write_zip(path: &Path, entries: &[Entry<'_>], method: CompressionMethod) {
    let mut zip = ZipWriter::new(fs::File::create(path).unwrap());
    for entry in entries {
        match entry {
            Entry::File(name, content, mode) => {
                let options = SimpleFileOptions::default()
                    .compression_method(method)
                    .unix_permissions(*mode)
                    .large_file(content.len() > u32::MAX as usize);
                zip.start_file(*name, options).unwrap();
                zip.write_all(content).unwrap();
            }
            Entry::Dir(name) => zip
                .add_directory(*name, SimpleFileOptions::default())
                .unwrap(),
            Entry::Link(name, target) => zip
                .add_symlink(*name, *target, SimpleFileOptions::default())
                .unwrap(),
        }
    }
    zip.finish().unwrap();
}

async fn fetch_zip(
    sandbox: &Sandbox,
    entries: &[Entry<'_>],
    method: CompressionMethod,
    limits: Limits,
) -> Result<PathBuf, BundleError> {
    let archive = sandbox.path("bundle.zip");
    write_zip(&archive, entries, method);
    let bundle = sandbox
        .fetcher(limits)
        .fetch(&BundleSource::LocalZip(archive))
        .await?;
    Ok(bundle.root().to_path_buf())
}

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn dockerfile() -> Entry<'static> {
    Entry::File("Dockerfile", b"FROM scratch\n".to_vec(), 0o644)
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing_behind() {
    let absolute = std::env::temp_dir().join("omx-builder-test-absolute.txt");
    let names: Vec<String> = (0..12).map(|i| format!("file-{i}")).collect();
    let cases: Vec<(&str, Vec<Entry<'_>>, Limits, &str)> = vec![
        (
            "path traversal",
            vec![
                dockerfile(),
                Entry::File("../../evil.txt", b"x".to_vec(), 0o644),
            ],
            Limits::default(),
            "entry \"../../evil.txt\" climbs out of the bundle",
        ),
        (
            "traversal hidden in a folder",
            vec![Entry::File(
                "src/../../../../outside/evil",
                b"x".to_vec(),
                0o644,
            )],
            Limits::default(),
            "climbs out of the bundle",
        ),
        (
            "absolute path",
            vec![Entry::File(
                absolute.to_str().unwrap(),
                b"x".to_vec(),
                0o644,
            )],
            Limits::default(),
            "is an absolute path",
        ),
        (
            "Windows drive",
            vec![Entry::File("C:\\outside\\evil.txt", b"x".to_vec(), 0o644)],
            Limits::default(),
            "starts with a Windows drive letter",
        ),
        (
            "symlink escaping",
            vec![
                Entry::Link("escape", "../../../outside"),
                Entry::File("escape/evil.txt", b"x".to_vec(), 0o644),
            ],
            Limits::default(),
            "entry \"escape\" is a symbolic link",
        ),
        (
            "symlink to an absolute path",
            vec![dockerfile(), Entry::Link("passwd", "/etc/passwd")],
            Limits::default(),
            "entry \"passwd\" is a symbolic link",
        ),
        (
            "bomb by ratio",
            vec![
                dockerfile(),
                Entry::File("zeros.bin", vec![0u8; 8 << 20], 0o644),
            ],
            Limits::default(),
            "entry \"zeros.bin\" expands more than 200 times its compressed size",
        ),
        (
            "bomb by size of one file",
            vec![
                dockerfile(),
                Entry::File("big.bin", random_bytes(300_000, 7), 0o644),
            ],
            Limits {
                max_entry_bytes: 200_000,
                ..Limits::default()
            },
            "entry \"big.bin\" expands past the 200000-byte limit for one file",
        ),
        (
            "bomb by total size",
            vec![
                Entry::File("a.bin", random_bytes(150_000, 1), 0o644),
                Entry::File("b.bin", random_bytes(150_000, 2), 0o644),
                Entry::File("c.bin", random_bytes(150_000, 3), 0o644),
            ],
            Limits {
                max_total_bytes: 400_000,
                ..Limits::default()
            },
            "the bundle expands past the 400000-byte limit (at entry \"c.bin\")",
        ),
        (
            "too many entries",
            names
                .iter()
                .map(|name| Entry::File(name, vec![], 0o644))
                .collect(),
            Limits {
                max_entries: 10,
                ..Limits::default()
            },
            "the bundle has more than 10 entries",
        ),
    ];
    for (name, entries, limits, expected) in cases {
        let sandbox = Sandbox::new();
        let error = fetch_zip(&sandbox, &entries, CompressionMethod::Deflated, limits)
            .await
            .expect_err(name)
            .to_string();
        assert!(error.contains(expected), "{name}: {error}");
        assert_eq!(sandbox.files(), PRISTINE, "{name}: files were left behind");
        assert!(!absolute.exists(), "{name}");
    }
}

/// Rewrites the uncompressed size of every entry, in the local headers and the central
/// directory, to `size`: the archive then lies about how much it expands to.
fn falsify_uncompressed_sizes(archive: &Path, size: u32) {
    let mut bytes = fs::read(archive).unwrap();
    let mut patched = 0;
    for at in 0..bytes.len().saturating_sub(30) {
        let offset = match bytes[at..at + 4] {
            [0x50, 0x4b, 0x03, 0x04] => 22,
            [0x50, 0x4b, 0x01, 0x02] => 24,
            _ => continue,
        };
        bytes[at + offset..at + offset + 4].copy_from_slice(&size.to_le_bytes());
        patched += 1;
    }
    assert_eq!(
        patched, 2,
        "one local header and one central directory record"
    );
    fs::write(archive, bytes).unwrap();
}

#[tokio::test]
async fn an_archive_that_understates_its_sizes_is_refused() {
    let sandbox = Sandbox::new();
    let archive = sandbox.path("bundle.zip");
    write_zip(
        &archive,
        &[Entry::File("big.bin", vec![0u8; 300_000], 0o644)],
        CompressionMethod::Deflated,
    );
    falsify_uncompressed_sizes(&archive, 10);
    let error = sandbox
        .fetcher(Limits {
            max_entry_bytes: 100_000,
            ..Limits::default()
        })
        .fetch(&BundleSource::LocalZip(archive))
        .await
        .unwrap_err();
    // The zip reader stops at the declared size (our own count would stop it at the limit).
    let text = error.to_string();
    assert!(
        text.contains("entry \"big.bin\"") && text.contains("larger than its declared"),
        "{error}"
    );
    assert_eq!(sandbox.files(), PRISTINE);
}

#[tokio::test]
async fn a_good_zip_extracts_with_folders_and_executable_bits() {
    let sandbox = Sandbox::new();
    let entries = [
        dockerfile(),
        Entry::Dir("empty/"),
        Entry::File("./src/run.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755),
        Entry::File("src\\data.txt", b"data\n".to_vec(), 0o600),
    ];
    let archive = sandbox.path("bundle.zip");
    write_zip(&archive, &entries, CompressionMethod::Deflated);
    let fetcher = sandbox.fetcher(Limits::default());
    let bundle = fetcher
        .fetch(&BundleSource::LocalZip(archive.clone()))
        .await
        .unwrap();
    let root = bundle.root().to_path_buf();
    assert!(root.starts_with(sandbox.path("work/deeper")));
    assert_eq!(
        fs::read_to_string(root.join("Dockerfile")).unwrap(),
        "FROM scratch\n"
    );
    assert!(root.join("empty").is_dir());
    let mode = |name: &str| fs::metadata(root.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("src/run.sh"), 0o755);
    assert_eq!(mode("src/data.txt"), 0o644);
    assert_eq!(
        fs::read_to_string(root.join("src/data.txt")).unwrap(),
        "data\n"
    );

    // The same files as a local folder give the same source digest.
    let folder = sandbox.path("outside/bundle");
    fs::create_dir_all(folder.join("src")).unwrap();
    fs::create_dir(folder.join("empty")).unwrap();
    fs::write(folder.join("Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(folder.join("src/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(folder.join("src/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(folder.join("src/data.txt"), "data\n").unwrap();
    let local = fetcher
        .fetch(&BundleSource::LocalFolder(folder.clone()))
        .await
        .unwrap();
    assert_eq!(local.root(), folder, "a local folder is built in place");
    let args = BTreeMap::new();
    let inputs = BuildInputs {
        dockerfile: "Dockerfile",
        build_args: &args,
        platform: "linux/amd64",
    };
    assert_eq!(
        source_digest(bundle.root(), &inputs).unwrap(),
        source_digest(local.root(), &inputs).unwrap()
    );

    // The build folder goes away with the bundle; the local folder stays.
    drop(bundle);
    drop(local);
    assert!(!root.exists());
    assert!(folder.join("Dockerfile").exists());
    assert_eq!(
        fs::read_dir(sandbox.path("work/deeper")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn missing_sources_and_s3_without_a_client_say_so() {
    let sandbox = Sandbox::new();
    let fetcher = sandbox.fetcher(Limits::default());
    let error = fetcher
        .fetch(&BundleSource::LocalFolder(sandbox.path("nope")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nope does not exist"), "{error}");
    let error = fetcher
        .fetch(&BundleSource::LocalZip(sandbox.path("nope.zip")))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("nope.zip does not exist"),
        "{error}"
    );
    fs::write(sandbox.path("outside/not-a.zip"), "plain text").unwrap();
    let error = fetcher
        .fetch(&BundleSource::LocalZip(sandbox.path("outside/not-a.zip")))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("is not a readable zip archive"),
        "{error}"
    );
    let error = fetcher
        .fetch(&BundleSource::S3Folder {
            bucket: "b".into(),
            prefix: "p/".into(),
        })
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no S3 client was configured"),
        "{error}"
    );
    assert_eq!(sandbox.files(), PRISTINE);
}

//! Property tests as fuzzing for the zip extractor: archives built from arbitrary (often
//! hostile) entry names and contents, then damaged (bytes flipped, cut short) or replaced by
//! arbitrary bytes. Whatever the archive, extraction never panics, never writes outside the
//! build folder, and a refused archive leaves nothing behind.
//!
//! 48 cases by default (each writes files); `PROPTEST_CASES` sets more for a fuzzing session.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use omx_builder::{BundleSource, Fetcher, Limits};
use proptest::prelude::*;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(48)
}

/// Entry names as careless and hostile archives have them.
fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(/[a-z]{1,8}){0,2}",
        Just("Dockerfile".to_string()),
        Just("../escape".to_string()),
        Just("a/../../escape".to_string()),
        Just("/etc/absolute".to_string()),
        Just("C:\\windows\\x".to_string()),
        Just("a/./b".to_string()),
        Just("dir/".to_string()),
        Just("".to_string()),
        "\\PC{1,12}",
        "[a-z]{1,4}[\u{0}-\u{1f}\u{7f}][a-z]{0,4}",
    ]
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    Flip(Vec<(usize, u8)>),
    Truncate(usize),
    Arbitrary(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        3 => prop::collection::vec((any::<usize>(), 1..=255u8), 1..6).prop_map(Damage::Flip),
        2 => any::<usize>().prop_map(Damage::Truncate),
        1 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Damage::Arbitrary),
    ]
}

fn build_zip(entries: &[(String, Vec<u8>, bool)], deflate: bool) -> Vec<u8> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        CompressionMethod::Deflated
    } else {
        CompressionMethod::Stored
    };
    for (name, content, executable) in entries {
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(if *executable { 0o755 } else { 0o644 });
        // The writer refuses some names itself (a duplicate); such an entry is left out.
        if zip.start_file(name.as_str(), options).is_ok() {
            zip.write_all(content).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

fn apply(damage: &Damage, mut bytes: Vec<u8>) -> Vec<u8> {
    match damage {
        Damage::None => bytes,
        Damage::Flip(flips) => {
            if !bytes.is_empty() {
                for (at, mask) in flips {
                    let len = bytes.len();
                    bytes[at % len] ^= mask;
                }
            }
            bytes
        }
        Damage::Truncate(at) => {
            let len = bytes.len();
            bytes.truncate(at % (len + 1));
            bytes
        }
        Damage::Arbitrary(other) => other.clone(),
    }
}

fn all_paths(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_dir = fs::symlink_metadata(&path).unwrap().is_dir();
        out.push(path.clone());
        if is_dir {
            all_paths(&path, out);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_archive_extracts_inside_the_build_folder_or_leaves_nothing(
        entries in prop::collection::vec(
            (entry_name(), prop::collection::vec(any::<u8>(), 0..300), any::<bool>()),
            0..8,
        ),
        deflate in any::<bool>(),
        damage in damage(),
    ) {
        let sandbox = tempfile::tempdir().unwrap();
        let work = sandbox.path().join("work/deeper");
        fs::create_dir_all(&work).unwrap();
        let archive = sandbox.path().join("bundle.zip");
        fs::write(&archive, apply(&damage, build_zip(&entries, deflate))).unwrap();
        let small = Limits {
            max_total_bytes: 64 * 1024,
            max_entry_bytes: 16 * 1024,
            max_entries: 64,
            ..Limits::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let fetched = runtime.block_on(
            Fetcher::new(None, work.clone(), small).fetch(&BundleSource::LocalZip(archive.clone())),
        );
        let mut everything = Vec::new();
        all_paths(sandbox.path(), &mut everything);
        match fetched {
            Ok(bundle) => {
                let root = bundle.root().to_path_buf();
                for path in everything.iter().filter(|path| **path != archive) {
                    prop_assert!(
                        path.starts_with(&root) || root.starts_with(path),
                        "{} is outside {}", path.display(), root.display()
                    );
                    prop_assert!(!fs::symlink_metadata(path).unwrap().file_type().is_symlink());
                }
            }
            Err(error) => {
                // A panic in the extraction thread would surface as this join error.
                let message = error.to_string();
                prop_assert!(!message.starts_with("zip extraction"), "{message}");
                let left: Vec<_> = everything
                    .iter()
                    .filter(|path| **path != archive && !work.starts_with(path))
                    .collect();
                prop_assert!(left.is_empty(), "{message}: left behind {left:?}");
            }
        }
    }
}

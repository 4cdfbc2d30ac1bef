//! The blob-location cache on disk: what earlier runs learned about where a target registry
//! holds each blob (`blob_locations.rs`), read when a run starts and saved as it goes (the
//! caller says when: `pull` as images finish, every few seconds at most) and when it ends.
//! The file holds registry hosts, repository names and digests only, never credentials. A file
//! that cannot be read, is corrupt or was written by a newer version is ignored (one debug log
//! line): the cache only saves requests, so it never fails a run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use omx_core::Digest;

use super::blob_locations::{BlobLocations, Change, FormatError, Location};

/// The file's name in the cache directory.
const FILE_NAME: &str = "locations.json";

/// A run's view of the cache: what was on disk when it started, plus what it learned since.
#[derive(Debug)]
pub struct BlobCache {
    file: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    known: BlobLocations,
    /// Everything this run learned, in order: replayed onto the file as it is when saving, so a
    /// concurrent run's saved findings are kept.
    changes: Vec<Change>,
}

impl BlobCache {
    /// The cache kept in `dir`, read now (empty when there is nothing usable).
    pub fn open(dir: &Path) -> BlobCache {
        let file = dir.join(FILE_NAME);
        let known = read(&file).unwrap_or_default();
        BlobCache {
            file,
            state: Mutex::new(State {
                known,
                changes: Vec::new(),
            }),
        }
    }

    /// The file this cache is read from and saved to.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Repositories of `registry` other than `except` that earlier runs (or this one) saw
    /// holding `digest`, most recent first: only where a manifest references it when
    /// `referenced_only`.
    pub(super) fn candidates(
        &self,
        registry: &str,
        digest: &Digest,
        except: &str,
        referenced_only: bool,
    ) -> Vec<String> {
        self.state()
            .known
            .candidates(registry, &digest.to_string(), except, referenced_only)
    }

    /// Records that `repository` of `registry` holds `digest` (`referenced`: a pushed manifest
    /// there references it).
    pub(super) fn record(
        &self,
        registry: &str,
        digest: &Digest,
        repository: &str,
        referenced: bool,
    ) {
        self.change(Change::Seen {
            registry: registry.to_string(),
            digest: digest.to_string(),
            location: Location {
                repository: repository.to_string(),
                referenced,
                seen: now(),
            },
        });
    }

    /// Drops `repository` as a home of `digest`: a mount from it was refused.
    pub(super) fn forget(&self, registry: &str, digest: &Digest, repository: &str) {
        self.change(Change::Forgotten {
            registry: registry.to_string(),
            digest: digest.to_string(),
            repository: repository.to_string(),
        });
    }

    fn change(&self, change: Change) {
        let mut state = self.state();
        state.known.apply(&change);
        state.changes.push(change);
    }

    /// Writes what this run learned into the file: onto its current contents (another run may
    /// have saved since this one read it), bounded, through a temporary file renamed over it,
    /// so a reader never sees half a file. A file of a newer format is left alone.
    pub fn save(&self) -> std::io::Result<()> {
        // The engine keeps recording while a save is written: it holds the lock only to copy.
        let changes = self.state().changes.clone();
        if changes.is_empty() {
            return Ok(());
        }
        let mut merged = match read_file(&self.file) {
            Ok(saved) => saved,
            Err(Unreadable::Format(FormatError::TooNew { .. })) => return Ok(()),
            Err(_) => BlobLocations::default(),
        };
        for change in &changes {
            merged.apply(change);
        }
        merged.bound();
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut temporary, merged.to_json().as_bytes())?;
        temporary.as_file().sync_all()?;
        temporary.persist(&self.file).map_err(|error| error.error)?;
        Ok(())
    }
}

enum Unreadable {
    Io(std::io::Error),
    Format(FormatError),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Io(error) => error.fmt(f),
            Unreadable::Format(error) => error.fmt(f),
        }
    }
}

fn read_file(file: &Path) -> Result<BlobLocations, Unreadable> {
    let text = std::fs::read_to_string(file).map_err(Unreadable::Io)?;
    BlobLocations::from_json(&text).map_err(Unreadable::Format)
}

/// The saved locations; nothing (with one debug line saying why) when there is no usable file.
fn read(file: &Path) -> Option<BlobLocations> {
    match read_file(file) {
        Ok(locations) => Some(locations),
        Err(Unreadable::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::debug!(
                "blob-location cache {} ignored: {error}",
                omx_core::excerpt::escape(&file.display().to_string())
            );
            None
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::sha256_of(b"layer")
    }

    #[test]
    fn what_a_run_learns_is_there_for_the_next_and_merged_with_a_concurrent_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = BlobCache::open(dir.path());
        let second = BlobCache::open(dir.path());
        first.record("r.example", &digest(), "x/a", true);
        second.record("r.example", &digest(), "x/b", false);
        first.save().unwrap();
        second.save().unwrap();
        let next = BlobCache::open(dir.path());
        let mut homes = next.candidates("r.example", &digest(), "x/z", false);
        homes.sort();
        assert_eq!(homes, ["x/a", "x/b"]);
        assert_eq!(
            next.candidates("r.example", &digest(), "x/z", true),
            ["x/a"]
        );
    }

    #[test]
    fn a_forgotten_home_is_gone_for_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let first = BlobCache::open(dir.path());
        first.record("r.example", &digest(), "x/a", true);
        first.save().unwrap();
        let second = BlobCache::open(dir.path());
        assert_eq!(
            second.candidates("r.example", &digest(), "", false),
            ["x/a"]
        );
        second.forget("r.example", &digest(), "x/a");
        assert!(second
            .candidates("r.example", &digest(), "", false)
            .is_empty());
        second.save().unwrap();
        assert!(BlobCache::open(dir.path())
            .candidates("r.example", &digest(), "", false)
            .is_empty());
    }

    #[test]
    fn corrupt_and_newer_files_are_ignored_and_only_a_corrupt_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        std::fs::write(&file, "{\"version\":1,\"regis").unwrap();
        let cache = BlobCache::open(dir.path());
        assert!(cache
            .candidates("r.example", &digest(), "", false)
            .is_empty());
        cache.record("r.example", &digest(), "x/a", false);
        cache.save().unwrap();
        assert_eq!(
            BlobCache::open(dir.path()).candidates("r.example", &digest(), "", false),
            ["x/a"]
        );

        let newer = "{\"version\":99,\"whatever\":true}";
        std::fs::write(&file, newer).unwrap();
        let cache = BlobCache::open(dir.path());
        assert!(cache
            .candidates("r.example", &digest(), "", false)
            .is_empty());
        cache.record("r.example", &digest(), "x/b", false);
        cache.save().unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), newer);
    }

    #[test]
    fn a_run_that_learned_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        BlobCache::open(&dir.path().join("missing")).save().unwrap();
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn the_file_holds_hosts_repositories_and_digests_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path());
        cache.record("r.example:5000", &digest(), "team/tool", true);
        cache.save().unwrap();
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cache.file()).unwrap()).unwrap();
        let digest = digest().to_string();
        assert_eq!(
            saved["registries"]["r.example:5000"][&digest][0]["repository"],
            "team/tool"
        );
        assert_eq!(saved.as_object().unwrap().len(), 2, "{saved}");
    }
}

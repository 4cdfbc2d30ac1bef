//! Where earlier runs saw each blob: per target registry host, per digest, the few repositories
//! most recently known to hold it, and whether a pushed manifest there references it. Pure: the
//! model, its bounds, the replay of one run's changes onto what another run saved, and the file
//! format. Reading and writing the file is `blob_cache.rs`.
//!
//! Modelled on containers/image's blob-info cache (`pkg/blobinfocache`): `RecordKnownLocation`
//! stores a last-seen time per (transport, scope, digest, location), and `CandidateLocations`
//! returns them most recent first, at most five (`replacementAttempts` in
//! `pkg/blobinfocache/internal/prioritize/prioritize.go`). As there, an entry is a candidate to
//! try, never proof: the registry may have deleted the repository since.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The file format this code writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Repositories remembered per blob, most recent kept (containers/image returns five candidates).
pub const REPOSITORIES_PER_BLOB: usize = 5;
/// Blobs remembered per registry, the least recently seen evicted first: with a few
/// repositories each, a registry's entries stay around a megabyte.
pub const BLOBS_PER_REGISTRY: usize = 10_000;
/// Registries remembered, the least recently used evicted first.
pub const REGISTRIES: usize = 32;

/// One repository known to hold a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub repository: String,
    /// A manifest pushed to this repository references the blob: the only mount source ECR
    /// accepts (aws/containers-roadmap #2860).
    pub referenced: bool,
    /// When it was last known to hold it, in seconds since the Unix epoch.
    pub seen: u64,
}

/// What one run learned, replayed in order onto the file's contents when it saves, so that
/// runs saving one after the other keep what each learned and what each found to be stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Seen {
        registry: String,
        digest: String,
        location: Location,
    },
    Forgotten {
        registry: String,
        digest: String,
        repository: String,
    },
}

/// Why a saved file is not used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a blob-location cache file: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("written in format {found}, newer than the {FORMAT_VERSION} this version reads")]
    TooNew { found: u32 },
}

/// The whole cache: registry host → digest → locations, most recent first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobLocations {
    registries: BTreeMap<String, HashMap<String, Vec<Location>>>,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(flatten)]
    locations: BlobLocations,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl BlobLocations {
    /// Repositories of `registry` other than `except` recorded as holding `digest`, most
    /// recently seen first; with `referenced_only`, only those where a manifest references it.
    pub fn candidates(
        &self,
        registry: &str,
        digest: &str,
        except: &str,
        referenced_only: bool,
    ) -> Vec<String> {
        self.registries
            .get(registry)
            .and_then(|blobs| blobs.get(digest))
            .into_iter()
            .flatten()
            .filter(|location| location.repository != except)
            .filter(|location| location.referenced || !referenced_only)
            .map(|location| location.repository.clone())
            .collect()
    }

    /// Applies one change: a sighting refreshes (or adds) its repository, keeping it
    /// `referenced` once it was; a forgotten repository is dropped.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Seen {
                registry,
                digest,
                location,
            } => {
                let locations = self
                    .registries
                    .entry(registry.clone())
                    .or_default()
                    .entry(digest.clone())
                    .or_default();
                let mut location = location.clone();
                if let Some(at) = locations
                    .iter()
                    .position(|known| known.repository == location.repository)
                {
                    let known = locations.remove(at);
                    location.referenced |= known.referenced;
                    location.seen = location.seen.max(known.seen);
                }
                let at = locations
                    .iter()
                    .position(|known| known.seen <= location.seen)
                    .unwrap_or(locations.len());
                locations.insert(at, location);
                locations.truncate(REPOSITORIES_PER_BLOB);
            }
            Change::Forgotten {
                registry,
                digest,
                repository,
            } => {
                let Some(blobs) = self.registries.get_mut(registry) else {
                    return;
                };
                if let Some(locations) = blobs.get_mut(digest) {
                    locations.retain(|known| known.repository != *repository);
                    if locations.is_empty() {
                        blobs.remove(digest);
                    }
                }
                if blobs.is_empty() {
                    self.registries.remove(registry);
                }
            }
        }
    }

    /// Evicts the least recently seen blobs of each registry past [`BLOBS_PER_REGISTRY`], and
    /// the least recently used registries past [`REGISTRIES`].
    pub fn bound(&mut self) {
        let last_seen =
            |locations: &Vec<Location>| locations.iter().map(|l| l.seen).max().unwrap_or(0);
        for blobs in self.registries.values_mut() {
            if blobs.len() > BLOBS_PER_REGISTRY {
                let mut by_age: Vec<(u64, String)> = blobs
                    .iter()
                    .map(|(digest, locations)| (last_seen(locations), digest.clone()))
                    .collect();
                by_age.sort_unstable();
                for (_, digest) in &by_age[..blobs.len() - BLOBS_PER_REGISTRY] {
                    blobs.remove(digest);
                }
            }
        }
        if self.registries.len() > REGISTRIES {
            let mut by_age: Vec<(u64, String)> = self
                .registries
                .iter()
                .map(|(host, blobs)| {
                    (
                        blobs.values().map(last_seen).max().unwrap_or(0),
                        host.clone(),
                    )
                })
                .collect();
            by_age.sort_unstable();
            for (_, host) in &by_age[..self.registries.len() - REGISTRIES] {
                self.registries.remove(host);
            }
        }
    }

    /// The file's text: `{"version":1,"registries":{host:{digest:[location...]}}}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&File {
            version: FORMAT_VERSION,
            locations: self.clone(),
        })
        .expect("strings, booleans and integers always serialize")
    }

    /// Reads a file's text; one written by a newer format is refused rather than misread.
    pub fn from_json(text: &str) -> Result<BlobLocations, FormatError> {
        let VersionOnly { version } = serde_json::from_str(text)?;
        if version > FORMAT_VERSION {
            return Err(FormatError::TooNew { found: version });
        }
        let file: File = serde_json::from_str(text)?;
        Ok(file.locations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "123.dkr.ecr.us-east-1.amazonaws.com";
    const DIGEST: &str = "sha256:aaaa";

    fn seen(repository: &str, referenced: bool, seen: u64) -> Change {
        seen_in(REGISTRY, DIGEST, repository, referenced, seen)
    }

    fn seen_in(
        registry: &str,
        digest: &str,
        repository: &str,
        referenced: bool,
        seen: u64,
    ) -> Change {
        Change::Seen {
            registry: registry.into(),
            digest: digest.into(),
            location: Location {
                repository: repository.into(),
                referenced,
                seen,
            },
        }
    }

    fn forgotten(repository: &str) -> Change {
        Change::Forgotten {
            registry: REGISTRY.into(),
            digest: DIGEST.into(),
            repository: repository.into(),
        }
    }

    fn with(changes: &[Change]) -> BlobLocations {
        let mut locations = BlobLocations::default();
        changes.iter().for_each(|change| locations.apply(change));
        locations
    }

    #[test]
    fn candidates_are_most_recent_first_without_the_target_itself() {
        let locations = with(&[
            seen("x/a", false, 10),
            seen("x/c", false, 30),
            seen("x/b", false, 20),
        ]);
        assert_eq!(
            locations.candidates(REGISTRY, DIGEST, "x/z", false),
            ["x/c", "x/b", "x/a"]
        );
        assert_eq!(
            locations.candidates(REGISTRY, DIGEST, "x/c", false),
            ["x/b", "x/a"]
        );
        assert!(locations
            .candidates("other.example", DIGEST, "x/z", false)
            .is_empty());
        assert!(locations
            .candidates(REGISTRY, "sha256:bbbb", "x/z", false)
            .is_empty());
    }

    #[test]
    fn only_referenced_homes_count_where_the_registry_needs_a_manifest() {
        let locations = with(&[seen("x/a", true, 10), seen("x/b", false, 20)]);
        assert_eq!(locations.candidates(REGISTRY, DIGEST, "x/z", true), ["x/a"]);
        // Seen again without a manifest push: a manifest there still references it.
        let locations = with(&[seen("x/a", true, 10), seen("x/a", false, 40)]);
        assert_eq!(locations.candidates(REGISTRY, DIGEST, "x/z", true), ["x/a"]);
    }

    #[test]
    fn a_blob_keeps_its_few_most_recent_repositories() {
        let changes: Vec<Change> = (0..REPOSITORIES_PER_BLOB as u64 + 3)
            .map(|n| seen(&format!("r/{n}"), false, 100 + n))
            .collect();
        let locations = with(&changes);
        let kept = locations.candidates(REGISTRY, DIGEST, "", false);
        assert_eq!(kept.len(), REPOSITORIES_PER_BLOB);
        assert_eq!(kept[0], format!("r/{}", REPOSITORIES_PER_BLOB + 2));
        assert!(!kept.contains(&"r/0".to_string()));
        // A repository seen again moves to the front instead of appearing twice.
        let mut locations = locations;
        locations.apply(&seen("r/3", false, 1000));
        assert_eq!(locations.candidates(REGISTRY, DIGEST, "", false)[0], "r/3");
        assert_eq!(
            locations.candidates(REGISTRY, DIGEST, "", false).len(),
            REPOSITORIES_PER_BLOB
        );
    }

    #[test]
    fn a_registry_keeps_its_most_recently_seen_blobs() {
        let mut locations = with(
            &(0..BLOBS_PER_REGISTRY as u64 + 2)
                .map(|n| seen_in(REGISTRY, &format!("sha256:{n:04x}"), "x/a", false, n))
                .collect::<Vec<_>>(),
        );
        locations.bound();
        assert!(locations
            .candidates(REGISTRY, "sha256:0000", "", false)
            .is_empty());
        assert!(locations
            .candidates(REGISTRY, "sha256:0001", "", false)
            .is_empty());
        assert_eq!(
            locations.candidates(REGISTRY, "sha256:0002", "", false),
            ["x/a"]
        );
        assert_eq!(locations.registries[REGISTRY].len(), BLOBS_PER_REGISTRY);
    }

    #[test]
    fn the_least_recently_used_registries_are_evicted() {
        let mut locations = with(
            &(0..REGISTRIES as u64 + 1)
                .map(|n| seen_in(&format!("r{n}.example"), DIGEST, "x/a", false, n))
                .collect::<Vec<_>>(),
        );
        locations.bound();
        assert_eq!(locations.registries.len(), REGISTRIES);
        assert!(locations
            .candidates("r0.example", DIGEST, "", false)
            .is_empty());
        assert_eq!(
            locations.candidates("r1.example", DIGEST, "", false),
            ["x/a"]
        );
    }

    #[test]
    fn a_forgotten_repository_stays_forgotten_when_replayed_onto_another_runs_file() {
        // Run 1 saved x/a and x/b; run 2 found x/a stale and saw x/c.
        let mut saved = with(&[seen("x/a", true, 10), seen("x/b", true, 11)]);
        for change in [forgotten("x/a"), seen("x/c", false, 20)] {
            saved.apply(&change);
        }
        assert_eq!(
            saved.candidates(REGISTRY, DIGEST, "", false),
            ["x/c", "x/b"]
        );
        saved.apply(&forgotten("x/b"));
        saved.apply(&forgotten("x/c"));
        assert_eq!(saved, BlobLocations::default(), "empty entries are dropped");
    }

    #[test]
    fn the_file_round_trips_and_refuses_newer_or_broken_formats() {
        let locations = with(&[
            seen("x/a", true, 10),
            seen_in("r.example", "sha256:bb", "y", false, 5),
        ]);
        let text = locations.to_json();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
        assert_eq!(BlobLocations::from_json(&text).unwrap(), locations);
        let newer = text.replacen("\"version\":1", "\"version\":2", 1);
        assert!(matches!(
            BlobLocations::from_json(&newer),
            Err(FormatError::TooNew { found: 2 })
        ));
        for broken in [
            "",
            "{",
            "[]",
            "{\"version\":1,\"registries\":{\"r\":[1]}}",
            &text[..text.len() / 2],
        ] {
            assert!(
                matches!(
                    BlobLocations::from_json(broken),
                    Err(FormatError::Corrupt(_))
                ),
                "{broken}"
            );
        }
    }
}

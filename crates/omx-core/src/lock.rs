//! Lock files: a pull manifest whose every entry pins the digest its tag resolved to.
//!
//! HealthOmics recommends pinning images not served by a pull-through cache by digest or version
//! (HealthOmics user guide, "Container best practices"): a tag can be moved upstream between two
//! runs of a workflow, a digest cannot. A locked entry keeps the user's spelling of `name:tag`
//! and appends `@sha256:…`, so the tag still says what it is and the digest says which bytes.

use serde::Serialize;

use crate::manifest_file::EntryError;
use crate::Digest;

/// What became of one manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockStatus {
    /// The tag was resolved upstream and its digest appended.
    Locked,
    /// The entry already pinned a digest, which exists upstream: kept as written.
    Kept,
    /// `--check`: the tag still points at the pinned digest.
    Unchanged,
    /// `--check`: the tag now points at another digest.
    Moved,
    Failed,
}

impl LockStatus {
    pub fn word(self) -> &'static str {
        match self {
            LockStatus::Locked => "locked",
            LockStatus::Kept => "kept",
            LockStatus::Unchanged => "unchanged",
            LockStatus::Moved => "MOVED",
            LockStatus::Failed => "FAILED",
        }
    }
}

/// One entry of a lock report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedEntry {
    /// Position in the `manifest` array.
    pub index: usize,
    /// The entry as written.
    pub input: String,
    /// The fully-qualified source it was resolved at (empty for an entry that could not be read).
    pub source: String,
    pub tag: Option<String>,
    /// The digest the entry pins now (the new one, for a tag that moved).
    pub digest: Option<Digest>,
    /// `--check`: the digest the locked manifest pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Digest>,
    #[serde(rename = "mediaType")]
    pub media_type: Option<String>,
    /// The platforms the image offers (`os/arch[/variant]`).
    pub platforms: Vec<String>,
    pub status: LockStatus,
    /// Why it failed or moved; what was done otherwise.
    pub reason: String,
    /// The entry as the locked manifest writes it.
    pub locked: String,
}

impl LockedEntry {
    /// An entry the plan refused (bad reference, collision): failed, written back as it was.
    pub fn invalid(error: &EntryError, input: &str) -> LockedEntry {
        LockedEntry {
            index: error.index,
            input: error.input.clone(),
            source: String::new(),
            tag: None,
            digest: None,
            pinned: None,
            media_type: None,
            platforms: Vec::new(),
            status: LockStatus::Failed,
            reason: error.error.clone(),
            locked: input.to_string(),
        }
    }
}

/// A lock run: every entry, in manifest order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockReport {
    pub entries: Vec<LockedEntry>,
}

impl LockReport {
    pub fn count(&self, status: LockStatus) -> usize {
        self.entries.iter().filter(|e| e.status == status).count()
    }

    /// No entry failed and no tag moved.
    pub fn all_ok(&self) -> bool {
        self.count(LockStatus::Failed) == 0 && self.count(LockStatus::Moved) == 0
    }

    /// The locked manifest: the pull manifest format, one entry per input entry, same order.
    pub fn locked_manifest(&self) -> String {
        let entries: Vec<&str> = self.entries.iter().map(|e| e.locked.as_str()).collect();
        serde_json::to_string_pretty(&serde_json::json!({ "manifest": entries }))
            .expect("a list of strings serializes")
            + "\n"
    }
}

/// The user's spelling with `digest` appended: `ubuntu:20.04` → `ubuntu:20.04@sha256:…`. A
/// spelling without a tag gets the `latest` it was resolved as, so that `lock --check` knows
/// which tag to follow. `had_tag` says whether the user wrote one.
pub fn pinned_spelling(input: &str, had_tag: bool, digest: &Digest) -> String {
    let input = input.trim();
    match had_tag {
        true => format!("{input}@{digest}"),
        false => format!("{input}:latest@{digest}"),
    }
}

/// The `name:tag` of a `name:tag@digest` spelling (what a workflow that was written before the
/// lock names); `None` when the spelling does not pin a digest after a tag.
pub fn unpinned_spelling(spelling: &str) -> Option<&str> {
    let (name_tag, digest) = spelling.trim().rsplit_once('@')?;
    digest.parse::<Digest>().ok()?;
    let last_component = name_tag.rsplit('/').next().unwrap_or(name_tag);
    last_component.contains(':').then_some(name_tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        format!("sha256:{}", "ab".repeat(32)).parse().unwrap()
    }

    #[test]
    fn a_pin_keeps_the_spelling_and_names_latest_when_implied() {
        let d = digest();
        assert_eq!(
            pinned_spelling(" ubuntu:20.04 ", true, &d),
            format!("ubuntu:20.04@{d}")
        );
        assert_eq!(
            pinned_spelling("quay.io/x/y", false, &d),
            format!("quay.io/x/y:latest@{d}")
        );
    }

    #[test]
    fn the_unpinned_spelling_is_name_and_tag() {
        let d = digest();
        assert_eq!(
            unpinned_spelling(&format!("127.0.0.1:5000/a/b:1@{d}")),
            Some("127.0.0.1:5000/a/b:1")
        );
        // No tag (the colon is the port's), no digest, or not a digest: nothing to unpin.
        assert_eq!(unpinned_spelling(&format!("127.0.0.1:5000/a/b@{d}")), None);
        assert_eq!(unpinned_spelling("ubuntu:20.04"), None);
        assert_eq!(unpinned_spelling("user:pw@host/a:1"), None);
    }

    #[test]
    fn the_locked_manifest_is_a_pull_manifest_in_order() {
        let entry = |index, locked: &str, status| LockedEntry {
            status,
            ..LockedEntry::invalid(&EntryError::new(index, locked, ""), locked)
        };
        let report = LockReport {
            entries: vec![
                entry(0, "b:1@sha256:x", LockStatus::Locked),
                entry(1, "a:1", LockStatus::Failed),
            ],
        };
        let parsed = crate::manifest_file::parse_pull_manifest(&report.locked_manifest()).unwrap();
        let inputs: Vec<_> = parsed.entries.iter().map(|e| e.input.as_str()).collect();
        assert_eq!(inputs, vec!["b:1@sha256:x", "a:1"]);
        assert!(!report.all_ok());
    }
}

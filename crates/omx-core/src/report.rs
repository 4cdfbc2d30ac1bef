//! What happened to each image, in the shape the original tool's outputs used.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::EntryError;

/// The end state of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageStatus {
    /// The target already held the image; nothing was transferred.
    Skipped,
    Succeeded,
    Failed,
    /// A dry run found work to do and did none of it.
    Planned,
}

/// One image's line of a run report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReport {
    pub input: String,
    pub source: String,
    pub target: String,
    /// The manifest digest in the target registry, once known.
    pub digest: Option<Digest>,
    pub status: ImageStatus,
    pub message: String,
}

/// A whole run: every planned image, and the entries that could not be planned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub images: Vec<ImageReport>,
    pub errors: Vec<EntryError>,
}

impl RunReport {
    pub fn count(&self, status: ImageStatus) -> usize {
        self.images.iter().filter(|i| i.status == status).count()
    }

    /// True when every image succeeded or was skipped and every entry was valid.
    pub fn all_ok(&self) -> bool {
        self.errors.is_empty() && self.count(ImageStatus::Failed) == 0
    }
}

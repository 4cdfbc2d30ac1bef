//! What happened to each image, in the shape the original tool's outputs used.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest_file::EntryError;

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
    /// Left for HealthOmics to fetch on first use (strategy `native`): nothing was copied.
    Native,
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
    /// A person's summary; sizes in it are rounded (`68.0 MiB`).
    pub message: String,
    /// Exact blob bytes uploaded by this run, when it copied (JSON readers get the number the
    /// message rounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<u64>,
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

/// An error and its causes on one line (`outer: cause: root cause`), as reports show them; a
/// cause whose text its parent already repeats is not said twice. Reports are shared and shown
/// on terminals: credentials in the chain (a URL's query, a userinfo) are redacted and control
/// characters escaped, whichever layer let them in.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    crate::excerpt::escape(&crate::secret::redact(&message)).into_owned()
}

/// Binary units, as registries and Docker count layer sizes.
const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// `value` in the largest unit it reaches, and that unit.
fn scaled(value: f64) -> (f64, &'static str) {
    let mut value = value.max(0.0);
    let mut unit = 0;
    // 1023.96 KiB would print as "1024.0 KiB": move up before rounding reaches the next unit.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    (value, UNITS[unit])
}

/// A size for people: `512 B`, `68.0 MiB`, `1.2 GiB`. Exact counts belong in JSON.
pub fn human_bytes(bytes: u64) -> String {
    match scaled(bytes as f64) {
        (_, "B") => format!("{bytes} B"),
        (value, unit) => format!("{value:.1} {unit}"),
    }
}

/// A wait or window for people: `45 s`, `12 min`, `6 h` (rounded up: never shorter than it is).
pub fn human_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h", seconds.div_ceil(3600)),
    }
}

/// A transfer rate for people: `9.5 MiB/s`, `112 MiB/s` (three digits are plenty for a rate).
pub fn human_rate(bytes_per_second: f64) -> String {
    match scaled(bytes_per_second) {
        (value, unit) if value < 9.95 && unit != "B" => format!("{value:.1} {unit}/s"),
        (value, unit) => format!("{value:.0} {unit}/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("copy failed: inner cause")]
    struct Repeating(#[source] Inner);

    #[test]
    fn error_chains_read_as_one_line_without_saying_a_cause_twice() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner cause");
        assert_eq!(error_chain(&Repeating(Inner)), "copy failed: inner cause");
    }

    #[test]
    fn sizes_and_rates_read_like_a_person_would_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(71_303_168), "68.0 MiB");
        assert_eq!(human_bytes(1_048_575), "1.0 MiB");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB");
        assert_eq!(human_rate(112.0 * 1_048_576.0), "112 MiB/s");
        assert_eq!(human_rate(9.5 * 1_048_576.0), "9.5 MiB/s");
        assert_eq!(human_rate(999.0), "999 B/s");
        assert_eq!(human_rate(f64::NAN.max(0.0)), "0 B/s");
        let duration = std::time::Duration::from_secs;
        assert_eq!(human_duration(duration(45)), "45 s");
        assert_eq!(human_duration(duration(3600)), "60 min");
        assert_eq!(human_duration(duration(3601)), "61 min");
        assert_eq!(human_duration(duration(21_600)), "6 h");
    }

    #[test]
    fn bytes_copied_is_in_json_only_when_known() {
        let mut report = ImageReport {
            input: "a".into(),
            source: "a".into(),
            target: "b".into(),
            digest: None,
            status: ImageStatus::Succeeded,
            message: "copied 1 blob (68.0 MiB)".into(),
            bytes_copied: None,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("bytes_copied").is_none());
        report.bytes_copied = Some(71_303_168);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["bytes_copied"], 71_303_168);
        let back: ImageReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}

//! Platforms (`linux/amd64`, `linux/arm64/v8`) and choosing one child of a multi-arch index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OS/architecture pair with optional CPU variant, as in OCI image index `platform` fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// HealthOmics runs x86_64 Linux only.
pub const LINUX_AMD64: (&str, &str) = ("linux", "amd64");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected OS/ARCH or OS/ARCH/VARIANT, such as linux/amd64")]
pub struct PlatformParseError(String);

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    pub fn linux_amd64() -> Platform {
        Platform::new(LINUX_AMD64.0, LINUX_AMD64.1, None)
    }

    pub fn is_linux_amd64(&self) -> bool {
        self.os == LINUX_AMD64.0 && self.architecture == LINUX_AMD64.1
    }

    /// The variant, with the architecture's implied default filled in (`arm64` means `v8`), so
    /// that `linux/arm64` and `linux/arm64/v8` compare equal.
    fn effective_variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .filter(|v| !v.is_empty())
            .or(match self.architecture.as_str() {
                "arm64" => Some("v8"),
                "arm" => Some("v7"),
                _ => None,
            })
    }

    /// Whether an image for `candidate` satisfies this platform as a filter: OS and
    /// architecture equal, and the variant equal when the filter names one.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || self.effective_variant() == candidate.effective_variant())
    }

    /// Picks the best match for this filter among `candidates` and returns its index: an exact
    /// variant match first, then the architecture's default variant, then the first match.
    pub fn select<'a>(&self, candidates: impl IntoIterator<Item = &'a Platform>) -> Option<usize> {
        let matching: Vec<(usize, &Platform)> = candidates
            .into_iter()
            .enumerate()
            .filter(|(_, candidate)| self.matches(candidate))
            .collect();
        let exact = matching.iter().find(|(_, c)| {
            c.variant.as_deref().filter(|v| !v.is_empty()) == self.variant.as_deref()
        });
        let default_variant = matching
            .iter()
            .find(|(_, c)| c.effective_variant() == self.effective_variant());
        exact
            .or(default_variant)
            .or(matching.first())
            .map(|(index, _)| *index)
    }
}

impl FromStr for Platform {
    type Err = PlatformParseError;

    fn from_str(s: &str) -> Result<Platform, PlatformParseError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |part: &&str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(PlatformParseError(s.to_string()));
        }
        Ok(Platform::new(
            &parts[0].to_ascii_lowercase(),
            &parts[1].to_ascii_lowercase(),
            parts.get(2).map(|v| v.to_ascii_lowercase()).as_deref(),
        ))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(p("linux/amd64"), Platform::linux_amd64());
        assert_eq!(
            p("Linux/ARM64/v8"),
            Platform::new("linux", "arm64", Some("v8"))
        );
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_rules() {
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(p("linux/amd64").matches(&p("linux/amd64/v3")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm")));
    }

    #[test]
    fn selection_prefers_exact_then_default_variant() {
        let candidates = [
            p("linux/arm/v6"),
            p("linux/arm/v7"),
            p("linux/amd64"),
            p("linux/arm64"),
        ];
        assert_eq!(p("linux/amd64").select(&candidates), Some(2));
        assert_eq!(p("linux/arm").select(&candidates), Some(1));
        assert_eq!(p("linux/arm/v6").select(&candidates), Some(0));
        assert_eq!(p("linux/arm64/v8").select(&candidates), Some(3));
        assert_eq!(p("linux/s390x").select(&candidates), None);
        let with_unknown = [Platform::new("unknown", "unknown", None), p("linux/amd64")];
        assert_eq!(p("linux/amd64").select(&with_unknown), Some(1));
    }
}

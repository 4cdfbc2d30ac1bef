//! Container image references, read the way Docker's reference grammar reads them.
//!
//! [`Reference::parse`] follows `ParseNormalizedNamed` from `github.com/distribution/reference`:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [ domain "/" ] path
//! domain           := host [ ":" port ]
//! host             := domain-name | "[" IPv6 "]"
//! domain-name      := domain-component ( "." domain-component )*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path             := path-component ( "/" path-component )*
//! path-component   := [a-z0-9]+ ( separator [a-z0-9]+ )*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [\w][\w.-]{0,127}
//! ```
//!
//! The first `/`-separated component is a registry host only when it contains `.` or `:`, is
//! `localhost`, or has an upper-case letter; otherwise the name lives on Docker Hub, and a
//! single-component Docker Hub name gains the `library/` prefix of official images.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::excerpt::quoted;
use crate::secret::redact_userinfo;

/// Docker Hub's domain and its other spellings in references live with the registry host rules.
pub use crate::registry_host::{DOCKER_HUB, DOCKER_HUB_ALIASES};

/// The Docker Hub namespace of official images (`ubuntu` is `docker.io/library/ubuntu`).
pub const OFFICIAL_NAMESPACE: &str = "library";

/// Longest `domain/path` a reference may name, in characters.
pub const NAME_MAX_LEN: usize = 255;

/// Longest tag, in characters.
pub const TAG_MAX_LEN: usize = 128;

/// A fully-qualified, normalized image reference.
///
/// `ubuntu:20.04` is held as domain `docker.io`, path `library/ubuntu`, tag `20.04`.
/// A reference with neither tag nor digest keeps `tag == None`; [`Reference::tag_or_latest`]
/// applies Docker's `latest` default where a caller needs one.
///
/// Every `Reference` reads back from its [`Display`](fmt::Display) string and from
/// [`Reference::familiar`] as the same value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference. Each message names the broken rule and quotes the
/// input, except that credentials found in the input are replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid reference format: {} contains whitespace or control characters", quoted(.input))]
    Whitespace { input: String },
    #[error(
        "invalid reference format: {} appears to carry credentials before the registry \
         host; log in to the registry instead of putting user:password in the reference"
    , quoted(.redacted))]
    Credentials {
        /// The input with everything before the host's `@` replaced by `***`.
        redacted: String,
    },
    #[error(
        "invalid reference format: {} is a URL; an image reference has no scheme \
         (drop {scheme:?})"
    , quoted(.input))]
    UrlScheme { input: String, scheme: String },
    #[error(
        "invalid reference format: {} is a 64-character hexadecimal identifier, \
         not a repository name"
    , quoted(.input))]
    HexIdentifier { input: String },
    #[error("invalid reference format: {} has no repository name", quoted(.input))]
    MissingName { input: String },
    #[error("invalid reference format: registry host {} in {} {reason}", quoted(.domain), quoted(.input))]
    InvalidDomain {
        input: String,
        domain: String,
        reason: &'static str,
    },
    #[error("invalid reference format: repository name must be lowercase: {}", quoted(.input))]
    NotLowercase { input: String },
    #[error(
        "invalid reference format: repository name in {} has an empty path component \
         (a leading, trailing or doubled '/')"
    , quoted(.input))]
    EmptyPathComponent { input: String },
    #[error(
        "invalid reference format: {character:?} is not allowed in the repository name of \
         {} (lower-case letters, digits, '.', '_', '-' and '/' are)"
    , quoted(.input))]
    InvalidCharacter { input: String, character: char },
    #[error(
        "invalid reference format: path component {} in {} must start and end \
         with a letter or digit, and separate them with one '.', one or two '_', or '-'s"
    , quoted(.component), quoted(.input))]
    BadSeparator { input: String, component: String },
    #[error(
        "invalid reference format: repository name in {} is {length} characters long; \
         the limit is {NAME_MAX_LEN}"
    , quoted(.input))]
    NameTooLong { input: String, length: usize },
    #[error(
        "invalid reference format: tag {} in {} must start with a letter, digit or \
         '_' and continue with letters, digits, '_', '.' or '-'"
    , quoted(.tag), quoted(.input))]
    InvalidTag { input: String, tag: String },
    #[error(
        "invalid reference format: tag in {} is {length} characters long; the limit is \
         {TAG_MAX_LEN}"
    , quoted(.input))]
    TagTooLong { input: String, length: usize },
    #[error("invalid reference format: invalid digest in {}: {source}", quoted(.input))]
    InvalidDigest { input: String, source: DigestError },
}

impl Reference {
    /// Parses and normalizes a reference (Docker's `ParseNormalizedNamed`).
    ///
    /// Surrounding whitespace is ignored. `ubuntu` becomes `docker.io/library/ubuntu`,
    /// `index.docker.io/x/y` becomes `docker.io/x/y`, and a fully-qualified reference is taken
    /// as it is. A reference may carry both a tag and a digest (`x:1@sha256:...`).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // Before anything else can quote the input back.
        if let Some(redacted) = redact_userinfo(input) {
            return Err(ReferenceError::Credentials { redacted });
        }
        let owned = || input.to_string();
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::Whitespace { input: owned() });
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(ReferenceError::UrlScheme {
                input: owned(),
                scheme: format!("{scheme}://"),
            });
        }
        // Docker refuses these so that a bare image ID is never mistaken for a repository.
        if is_hex_identifier(input) {
            return Err(ReferenceError::HexIdentifier { input: owned() });
        }

        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
            None => (input, None),
        };
        // A `:` is a tag separator unless a `/` follows it, in which case it introduced a port.
        let (name, tag) = match name_and_tag.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::MissingName { input: owned() });
        }
        let (domain, path) = split_docker_domain(name);
        let digest = digest
            .map(|d| {
                d.parse::<Digest>()
                    .map_err(|source| ReferenceError::InvalidDigest {
                        input: owned(),
                        source,
                    })
            })
            .transpose()?;
        Reference::validated(input, domain, path, tag, digest)
    }

    /// Builds a reference from its parts, validating each and normalizing Docker Hub's domain
    /// aliases and its `library/` prefix as [`Reference::parse`] does.
    ///
    /// `domain` must read as a registry host (contain `.` or `:`, be `localhost`, or have an
    /// upper-case letter), since anything else would read back as a Docker Hub namespace.
    pub fn new(
        domain: &str,
        path: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut input = format!("{domain}/{path}");
        if let Some(tag) = tag {
            input.push(':');
            input.push_str(tag);
        }
        if let Some(digest) = &digest {
            input.push('@');
            input.push_str(&digest.to_string());
        }
        if !reads_as_domain(domain) {
            return Err(ReferenceError::InvalidDomain {
                input,
                domain: domain.to_string(),
                reason: "would be read as a Docker Hub namespace: a registry host contains '.' \
                         or ':port', is localhost, or has an upper-case letter",
            });
        }
        let (domain, path) = normalize_docker_hub(domain, path.to_string());
        Reference::validated(&input, domain, path, tag, digest)
    }

    /// Checks every part of a reference; `input` is what error messages quote.
    fn validated(
        input: &str,
        domain: &str,
        path: String,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        validate_domain(input, domain)?;
        validate_path(input, &path)?;
        let length = domain.chars().count() + 1 + path.chars().count();
        if length > NAME_MAX_LEN {
            return Err(ReferenceError::NameTooLong {
                input: input.to_string(),
                length,
            });
        }
        if let Some(tag) = tag {
            validate_tag(input, tag)?;
        }
        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host, with a port when one was given (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/ubuntu`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag as written, if any (no `latest` default; see [`Reference::tag_or_latest`]).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag, or `latest` when the reference names neither tag nor digest.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// True when the reference names neither a tag nor a digest (so `latest` is implied).
    pub fn is_implicit_latest(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// `domain/path` without tag or digest (`docker.io/library/ubuntu`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as Docker shows it: Docker Hub's domain and `library/` dropped
    /// (`ubuntu`, `biocontainers/samtools`, `quay.io/biocontainers/samtools`).
    ///
    /// Unlike Docker, the domain is kept where dropping it would change the meaning, so the
    /// result always parses back to this name: `docker.io/foo.bar/x` stays as it is, because
    /// `foo.bar/x` names the registry `foo.bar`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DOCKER_HUB {
            return self.name();
        }
        let short = match self.path.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(image) if !image.contains('/') && !is_hex_identifier(image) => image,
                _ => &self.path,
            },
            None => &self.path,
        };
        match short.split_once('/') {
            Some((first, _)) if reads_as_domain(first) => self.name(),
            _ => short.to_string(),
        }
    }

    /// Docker's familiar string: [`Reference::familiar_name`] with the tag and digest
    /// (`ubuntu:20.04`, `biocontainers/samtools:1.17`, `ghcr.io/x/y@sha256:...`).
    pub fn familiar(&self) -> String {
        let mut familiar = self.familiar_name();
        self.push_tag_and_digest(&mut familiar);
        familiar
    }

    /// This reference with `tag` in place of its tag (any digest is kept).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(&format!("{}:{tag}", self.name()), tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }

    /// This reference without its tag.
    pub fn without_tag(&self) -> Reference {
        Reference {
            tag: None,
            ..self.clone()
        }
    }

    /// This reference pinned to `digest` (any tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// This reference without its digest.
    pub fn without_digest(&self) -> Reference {
        Reference {
            digest: None,
            ..self.clone()
        }
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The fully-qualified form: `docker.io/library/ubuntu:20.04`, `quay.io/x/y:1@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut full = self.name();
        self.push_tag_and_digest(&mut full);
        f.write_str(&full)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Docker's `splitDockerDomain`: the registry host and the repository path of `name`.
fn split_docker_domain(name: &str) -> (&str, String) {
    match name.split_once('/') {
        Some((first, rest)) if reads_as_domain(first) => normalize_docker_hub(first, rest.into()),
        _ => normalize_docker_hub(DOCKER_HUB, name.to_string()),
    }
}

/// Maps Docker Hub's aliases to [`DOCKER_HUB`] and puts single-component Docker Hub names in the
/// official-images namespace.
fn normalize_docker_hub(domain: &str, path: String) -> (&str, String) {
    let domain = if DOCKER_HUB_ALIASES.contains(&domain) {
        DOCKER_HUB
    } else {
        domain
    };
    if domain == DOCKER_HUB && !path.contains('/') {
        (domain, format!("{OFFICIAL_NAMESPACE}/{path}"))
    } else {
        (domain, path)
    }
}

/// Whether a leading name component is a registry host rather than a Docker Hub namespace.
/// Upper case counts because namespaces cannot have it, so it can only be a host.
fn reads_as_domain(component: &str) -> bool {
    component == "localhost"
        || component.contains(['.', ':'])
        || component.chars().any(|c| c.is_ascii_uppercase())
}

/// `[a-f0-9]{64}`: the form of a bare image ID.
fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn validate_domain(input: &str, domain: &str) -> Result<(), ReferenceError> {
    let invalid = |reason: &'static str| ReferenceError::InvalidDomain {
        input: input.to_string(),
        domain: domain.to_string(),
        reason,
    };
    let port = if let Some(bracketed) = domain.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("opens '[' for an IPv6 address but never closes it"))?;
        // Zone identifiers and IPv4-mapped forms are excluded, as Docker excludes them.
        let hex_and_colons = address.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        if !hex_and_colons || address.parse::<Ipv6Addr>().is_err() {
            return Err(invalid(
                "is not a valid IPv6 address (hex digits and ':' only, no zone)",
            ));
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                invalid("must follow the ']' of an IPv6 address with ':port' or nothing")
            })?),
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        };
        let labels_valid = host.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                }
                _ => false,
            }
        });
        if !labels_valid {
            return Err(invalid(
                "is not a host name: dot-separated labels of letters, digits and inner '-'",
            ));
        }
        port
    };
    if let Some(port) = port {
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().is_err() {
            return Err(invalid("has a port that is not a number from 0 to 65535"));
        }
    }
    Ok(())
}

fn validate_path(input: &str, path: &str) -> Result<(), ReferenceError> {
    if path.chars().any(char::is_uppercase) {
        return Err(ReferenceError::NotLowercase {
            input: input.to_string(),
        });
    }
    if let Some(character) = path
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/'))
    {
        return Err(ReferenceError::InvalidCharacter {
            input: input.to_string(),
            character,
        });
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(ReferenceError::EmptyPathComponent {
                input: input.to_string(),
            });
        }
        if !path_component_well_separated(component) {
            return Err(ReferenceError::BadSeparator {
                input: input.to_string(),
                component: component.to_string(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` for a component already known to hold only those
/// characters and separator characters.
fn path_component_well_separated(component: &str) -> bool {
    let is_alphanumeric = |c: char| c.is_ascii_alphanumeric();
    if !component.starts_with(is_alphanumeric) || !component.ends_with(is_alphanumeric) {
        return false;
    }
    component
        .split(is_alphanumeric)
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
        })
}

fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let well_formed =
        tag.starts_with(word) && tag.chars().all(|c| word(c) || matches!(c, '.' | '-'));
    if !well_formed {
        return Err(ReferenceError::InvalidTag {
            input: input.to_string(),
            tag: tag.to_string(),
        });
    }
    if tag.len() > TAG_MAX_LEN {
        return Err(ReferenceError::TagTooLong {
            input: input.to_string(),
            length: tag.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_follow_dockers_path_component_rule() {
        for good in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a.b_c__d-e"] {
            assert!(path_component_well_separated(good), "{good}");
        }
        for bad in [
            "_a", "a_", ".a", "a.", "-a", "a-", "a..b", "a___b", "a_.b", "a-.b",
        ] {
            assert!(!path_component_well_separated(bad), "{bad}");
        }
    }
}

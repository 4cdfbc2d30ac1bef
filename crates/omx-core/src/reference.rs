//! Container image references, read the way Docker's reference grammar reads them.
//!
//! PARSER TO BE WRITTEN (see issue 2): only the type and its accessors exist so far.

use std::fmt;

use crate::digest::Digest;

/// Docker Hub's canonical domain; `index.docker.io` and `registry-1.docker.io` normalize to it.
pub const DOCKER_HUB: &str = "docker.io";

/// A fully-qualified, normalized image reference.
///
/// `ubuntu:20.04` is held as domain `docker.io`, path `library/ubuntu`, tag `20.04`.
/// A reference with neither tag nor digest keeps `tag == None`; [`Reference::tag_or_latest`]
/// applies Docker's `latest` default where a caller needs one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
}

impl Reference {
    /// Parses and normalizes a reference (Docker's `ParseNormalizedNamed`).
    pub fn parse(_input: &str) -> Result<Reference, ReferenceError> {
        unimplemented!("reference parser")
    }

    /// The registry host, with a port when one was given (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry (`library/ubuntu`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

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
}

impl fmt::Display for Reference {
    /// The fully-qualified form: `docker.io/library/ubuntu:20.04`, `quay.io/x/y:1@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

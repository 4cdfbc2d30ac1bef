//! A repository inside a registry: `127.0.0.1:5000` + `library/ubuntu`, the unit registries
//! authorize and store manifests and blobs in.

use std::fmt;

use crate::Reference;

/// A repository inside a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// The registry as references name it (`docker.io`, not its API host).
    pub registry: String,
    pub path: String,
}

impl Repository {
    pub fn new(registry: impl Into<String>, path: impl Into<String>) -> Repository {
        Repository {
            registry: registry.into(),
            path: path.into(),
        }
    }

    pub fn of(reference: &Reference) -> Repository {
        Repository::new(reference.domain(), reference.path())
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_its_repository_as_references_spell_the_registry() {
        let ubuntu = Repository::of(&Reference::parse("ubuntu:22.04").unwrap());
        assert_eq!(ubuntu, Repository::new("docker.io", "library/ubuntu"));
        assert_eq!(ubuntu.to_string(), "docker.io/library/ubuntu");
        let local = Repository::of(&Reference::parse("127.0.0.1:5000/ns/tool:1").unwrap());
        assert_eq!(local.to_string(), "127.0.0.1:5000/ns/tool");
    }
}

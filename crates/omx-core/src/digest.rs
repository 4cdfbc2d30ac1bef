//! Content digests (`sha256:<hex>`), the identity of every blob and manifest.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A validated content digest such as `sha256:6c3c624b58db...`.
///
/// Only the algorithms registries actually use are accepted, so that every digest we hold can also
/// be *verified*: a digest we could not recompute would let unverified content through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<64 hex digits>)")]
    MissingAlgorithm(String),
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error("digest {digest:?} must have {expected} lower-case hex digits after {algorithm}:")]
    BadHex {
        digest: String,
        algorithm: &'static str,
        expected: usize,
    },
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// `sha256:` and the first 12 hex digits, as tables and messages show a digest.
    pub fn short(&self) -> String {
        format!(
            "{}:{}",
            self.algorithm.name(),
            &self.hex[..12.min(self.hex.len())]
        )
    }

    /// Starts an incremental hash with this digest's algorithm, for verifying streamed content.
    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.algorithm)
    }
}

/// Hashes content as it streams past and tells whether it matched the expected digest.
#[derive(Clone)]
pub struct Hasher {
    state: HasherState,
    len: u64,
}

#[derive(Clone)]
enum HasherState {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(Sha256::new()),
            Algorithm::Sha512 => HasherState::Sha512(Sha512::new()),
        };
        Hasher { state, len: 0 }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        match &mut self.state {
            HasherState::Sha256(h) => h.update(chunk),
            HasherState::Sha512(h) => h.update(chunk),
        }
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.state {
            HasherState::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            HasherState::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_string()))?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        };
        let well_formed = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(DigestError::BadHex {
                digest: s.to_string(),
                algorithm: algorithm.name(),
                expected: algorithm.hex_len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_and_round_trips() {
        let d = Digest::sha256_of(b"");
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(EMPTY_SHA256.parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn streaming_verifier_matches_one_shot_hash() {
        let mut v = Hasher::new(Algorithm::Sha256);
        v.update(b"hello ");
        v.update(b"world");
        assert_eq!(v.len(), 11);
        assert_eq!(v.finish(), Digest::sha256_of(b"hello world"));
    }

    #[test]
    fn rejects_malformed_digests() {
        assert!(matches!(
            "e3b0c442".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            "sha256:abc".parse::<Digest>(),
            Err(DigestError::BadHex { .. })
        ));
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
    }
}

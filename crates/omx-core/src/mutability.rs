//! ECR image tag mutability: which tags of a repository can never be pushed again.
//!
//! `IMMUTABLE` refuses any push to an existing tag, even of the same digest
//! (aws/containers-roadmap #2380, #2179; moby/buildkit #3776); `IMMUTABLE_WITH_EXCLUSION` does so
//! except for tags matching an exclusion filter, `MUTABLE_WITH_EXCLUSION` only for those (ECR user
//! guide, "Preventing image tags from being overwritten"). Filters use `*` wildcards.

/// A repository's tag mutability setting, as `DescribeRepositories` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagMutability {
    /// `MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION` or `MUTABLE_WITH_EXCLUSION`.
    pub setting: String,
    /// The exclusion filters' patterns.
    pub exclusions: Vec<String>,
}

impl TagMutability {
    /// Whether an existing `tag` can never be overwritten.
    pub fn is_immutable(&self, tag: &str) -> bool {
        let excluded = self
            .exclusions
            .iter()
            .any(|filter| wildcard_match(filter, tag));
        match self.setting.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded,
            "MUTABLE_WITH_EXCLUSION" => excluded,
            _ => false,
        }
    }
}

/// `*` matches any run of characters; every other character matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => text.strip_prefix(head).is_some_and(|remaining| {
            (0..=remaining.len())
                .filter(|at| remaining.is_char_boundary(*at))
                .any(|at| wildcard_match(rest, &remaining[at..]))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(setting: &str, exclusions: &[&str]) -> TagMutability {
        TagMutability {
            setting: setting.to_string(),
            exclusions: exclusions.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn immutability_follows_the_setting_and_its_exclusions() {
        assert!(!setting("MUTABLE", &[]).is_immutable("1"));
        assert!(setting("IMMUTABLE", &["1"]).is_immutable("1"));
        let with_exclusion = setting("IMMUTABLE_WITH_EXCLUSION", &["latest", "dev-*"]);
        assert!(with_exclusion.is_immutable("1.0"));
        assert!(!with_exclusion.is_immutable("latest"));
        assert!(!with_exclusion.is_immutable("dev-42"));
        let mutable_except = setting("MUTABLE_WITH_EXCLUSION", &["v*"]);
        assert!(mutable_except.is_immutable("v1"));
        assert!(!mutable_except.is_immutable("latest"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*-rc*", "1.0-rc2"));
        assert!(!wildcard_match("1.0", "1.0.1"));
        assert!(wildcard_match("*", ""));
    }
}

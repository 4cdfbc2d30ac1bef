//! Which private repository an image lands in, and how it gets there.
//!
//! (Over 600 lines with its tests, which are a table of the documented namespace rules; the
//! code is about 400.)
//!
//! Every source registry gets a namespace (`quay.io/biocontainers/x` → `quay/biocontainers/x`), so
//! images from different registries never collide and a user can tell at a glance where a private
//! image came from. The table is data: [`NamespaceTable::builtin`] holds the documented defaults
//! and a user file ([`NamespaceTable::with_user_rules`]) extends or overrides them, e.g. to map
//! `community.wave.seqera.io` or to make Docker Hub a pull-through-cache source.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::ecr_host::{
    ecr_registry_host, is_ecr_private_host, parse_ecr_private_host, parse_ecr_registry_host,
    EcrEndpoint, EcrRegistryHost,
};
use crate::reference::{Reference, ReferenceError, DOCKER_HUB};
use crate::registry_host::{split_port, RegistryHost, DOCKER_HUB_API_HOST};

/// How an image reaches the private registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// ECR fetches it from upstream itself on first pull through `<namespace>/<upstream path>`.
    PullThroughCache,
    /// omx-ecr-helper copies it registry to registry.
    Copy,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::PullThroughCache => "pull-through-cache",
            Method::Copy => "copy",
        })
    }
}

/// Which registry hosts a rule applies to. Matching ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (with its port, if any).
    Exact(String),
    /// Any sub-domain of this suffix: `*.gcr.io` matches `us.gcr.io`, not `gcr.io`.
    SubdomainOf(String),
    /// A host that is one label, a dash, then this suffix: `*-docker.pkg.dev` matches
    /// `us-central1-docker.pkg.dev` (Artifact Registry's regional hosts), not `docker.pkg.dev`.
    DashPrefixed(String),
}

impl HostPattern {
    fn parse(text: &str) -> HostPattern {
        let text = text.trim().to_ascii_lowercase();
        if let Some(suffix) = text.strip_prefix("*.") {
            return HostPattern::SubdomainOf(suffix.to_string());
        }
        match text.strip_prefix("*-") {
            Some(suffix) => HostPattern::DashPrefixed(suffix.to_string()),
            None => HostPattern::Exact(text),
        }
    }

    fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self {
            HostPattern::Exact(exact) => host == *exact,
            HostPattern::SubdomainOf(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::DashPrefixed(suffix) => {
                host.strip_suffix(suffix.as_str()).is_some_and(|head| {
                    head.strip_suffix('-').is_some_and(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                })
            }
        }
    }
}

/// One line of the namespace table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRule {
    pub hosts: Vec<HostPattern>,
    pub namespace: String,
    pub method: Method,
    /// The first path component that users may write instead of the host (`quay/x` for
    /// `quay.io/x`). A shorthand always means its registry, never a Docker Hub user of that name.
    pub shorthand: Option<String>,
    /// The host ECR's pull-through-cache rule fetches from, when it differs from the image host
    /// (Docker Hub images live on `registry-1.docker.io`).
    pub upstream_registry: Option<String>,
}

/// Where a reference lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The private repository name (`dockerhub/ubuntu`, `quay/biocontainers/bcftools`).
    pub repository: String,
    pub method: Method,
    /// The namespace the repository lives under; `None` for ECR sources, whose path is kept.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "no namespace can be derived from registry host {host:?}; map it with a rule in --namespaces"
    )]
    UnmappableHost { host: String },
    #[error("namespace file: {0}")]
    File(String),
}

/// The ordered namespace rules; the first rule whose host pattern matches wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceTable {
    rules: Vec<NamespaceRule>,
}

impl NamespaceTable {
    /// The table the original HealthOmics ECR helper documents, made consistent: every registry gets
    /// one namespace and Docker Hub images keep their familiar path.
    pub fn builtin() -> NamespaceTable {
        let rule =
            |hosts: &[&str], namespace: &str, method, shorthand: Option<&str>| NamespaceRule {
                hosts: hosts.iter().map(|h| HostPattern::parse(h)).collect(),
                namespace: namespace.to_string(),
                method,
                shorthand: shorthand.map(str::to_string),
                upstream_registry: None,
            };
        let mut docker_hub = rule(&[DOCKER_HUB], "dockerhub", Method::Copy, Some("dockerhub"));
        docker_hub.upstream_registry = Some(DOCKER_HUB_API_HOST.to_string());
        NamespaceTable {
            rules: vec![
                rule(&["quay.io"], "quay", Method::PullThroughCache, Some("quay")),
                rule(
                    &["public.ecr.aws"],
                    "ecr-public",
                    Method::PullThroughCache,
                    Some("ecr-public"),
                ),
                docker_hub,
                rule(&["gcr.io", "*.gcr.io"], "gcr", Method::Copy, None),
                rule(&["*.pkg.dev"], "gar", Method::Copy, None),
                rule(&["ghcr.io"], "ghcr", Method::Copy, None),
                rule(&["mcr.microsoft.com"], "mcr", Method::Copy, None),
                rule(&["nvcr.io"], "nvcr", Method::Copy, None),
            ],
        }
    }

    /// Puts the rules of a user's namespace file (JSON) in front of this table's, so they override
    /// a built-in rule for the same host and add new hosts.
    ///
    /// ```json
    /// {"rules": [
    ///   {"hosts": ["community.wave.seqera.io"], "namespace": "wave", "shorthand": "wave"},
    ///   {"hosts": ["docker.io"], "namespace": "dockerhub", "method": "pull-through-cache"}
    /// ]}
    /// ```
    pub fn with_user_rules(mut self, json: &str) -> Result<NamespaceTable, NamespaceError> {
        let file: UserFile = serde_json::from_str(json).map_err(|e| {
            NamespaceError::File(format!("line {}, column {}: {e}", e.line(), e.column()))
        })?;
        let mut user_rules = Vec::with_capacity(file.rules.len());
        for (index, user) in file.rules.into_iter().enumerate() {
            user_rules.push(
                user.validate()
                    .map_err(|reason| NamespaceError::File(format!("rules[{index}]: {reason}")))?,
            );
        }
        user_rules.append(&mut self.rules);
        Ok(NamespaceTable { rules: user_rules })
    }

    pub fn rules(&self) -> &[NamespaceRule] {
        &self.rules
    }

    /// Reads a user's image reference, honouring namespace shorthands (`quay/x:1` means
    /// `quay.io/x:1`) before Docker's own normalization.
    pub fn parse_source(&self, input: &str) -> Result<Reference, NamespaceError> {
        let trimmed = input.trim();
        if let Some((first, rest)) = trimmed.split_once('/') {
            if let Some(rule) = self.shorthand_rule(first) {
                let host = rule.canonical_host().ok_or_else(|| {
                    NamespaceError::File(format!(
                        "shorthand {first:?} belongs to a rule without an exact host"
                    ))
                })?;
                return Ok(Reference::parse(&format!("{host}/{rest}"))?);
            }
        }
        Ok(Reference::parse(trimmed)?)
    }

    fn shorthand_rule(&self, first_component: &str) -> Option<&NamespaceRule> {
        self.rules
            .iter()
            .find(|rule| rule.shorthand.as_deref() == Some(first_component))
    }

    /// The rule for a registry host, if any.
    pub fn rule_for(&self, host: &str) -> Option<&NamespaceRule> {
        self.rules
            .iter()
            .find(|rule| rule.hosts.iter().any(|pattern| pattern.matches(host)))
    }

    /// The private repository for `source` and how the image gets there.
    pub fn map(&self, source: &Reference) -> Result<Mapping, NamespaceError> {
        let host = source.domain();
        if is_ecr_private_host(host) {
            return Ok(Mapping {
                repository: source.path().to_string(),
                method: Method::Copy,
                namespace: None,
            });
        }
        let (namespace, method) = match self.rule_for(host) {
            Some(rule) => (rule.namespace.clone(), rule.method),
            None => (namespace_from_host(host)?, Method::Copy),
        };
        // A pull-through-cache repository must mirror the upstream path exactly, since ECR
        // derives the upstream image from it; a copy may use Docker Hub's familiar short form.
        let path = match method {
            Method::PullThroughCache => source.path(),
            Method::Copy if RegistryHost::new(host).is_docker_hub() => {
                familiar_docker_hub_path(source.path())
            }
            Method::Copy => source.path(),
        };
        Ok(Mapping {
            repository: format!("{namespace}/{path}"),
            method,
            namespace: Some(namespace),
        })
    }
}

impl NamespaceRule {
    /// The host a shorthand stands for: the rule's first exact host.
    pub fn canonical_host(&self) -> Option<&str> {
        self.hosts.iter().find_map(|pattern| match pattern {
            HostPattern::Exact(host) => Some(host.as_str()),
            HostPattern::SubdomainOf(_) | HostPattern::DashPrefixed(_) => None,
        })
    }

    /// The registry ECR pulls from for this rule (for pull-through-cache rules and registry maps).
    pub fn upstream_registry(&self) -> Option<&str> {
        self.upstream_registry
            .as_deref()
            .or_else(|| self.canonical_host())
    }
}

/// `library/ubuntu` → `ubuntu`; any other Docker Hub path is kept.
fn familiar_docker_hub_path(path: &str) -> &str {
    match path.strip_prefix("library/") {
        Some(name) if !name.contains('/') => name,
        _ => path,
    }
}

/// A namespace for a registry the table does not know: the host itself, lower-cased, with a port
/// folded in as `-PORT` so that the result stays a valid repository name component.
fn namespace_from_host(host: &str) -> Result<String, NamespaceError> {
    let unmappable = || NamespaceError::UnmappableHost {
        host: host.to_string(),
    };
    let lowered = host.to_ascii_lowercase();
    let (name, port) = split_port(&lowered);
    if name.contains(':') {
        // An IPv6 address: no valid repository name component.
        return Err(unmappable());
    }
    let valid_component = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid_component {
        return Err(unmappable());
    }
    Ok(match port {
        Some(port) => format!("{name}-{port}"),
        None => name.to_string(),
    })
}

/// The upstream registries that ECR's pull-through cache does not serve but HealthOmics copies
/// from itself, on a task's first use, when the workflow's registry mapping for the host carries
/// a `credentialArn`: Seqera Containers (`community.wave.seqera.io`, `wave.seqera.io`), NVIDIA NGC
/// (`nvcr.io`), Google Container Registry (`gcr.io`) and Google Artifact Registry by its full
/// regional host (`us-central1-docker.pkg.dev`). Source: AWS HealthOmics User Guide, "Using
/// third-party registries not supported by pull through cache"
/// (docs.aws.amazon.com/omics/latest/dev/containers-non-ptc-registries.html, October 2026).
/// Only these exact hosts are listed there: `us.gcr.io` or `docker.pkg.dev` are not.
pub const HEALTHOMICS_COPIED_UPSTREAMS: [&str; 5] = [
    "community.wave.seqera.io",
    "wave.seqera.io",
    "nvcr.io",
    "gcr.io",
    "*-docker.pkg.dev",
];

/// Whether HealthOmics copies images of this registry host itself (see
/// [`HEALTHOMICS_COPIED_UPSTREAMS`]).
pub fn healthomics_copies_from(host: &str) -> bool {
    HEALTHOMICS_COPIED_UPSTREAMS
        .iter()
        .any(|pattern| HostPattern::parse(pattern).matches(host))
}

/// Checks a repository name against ECR's rules (lower-case components joined by `/`, each
/// `[a-z0-9]+` with single `.`, `_` or `-` separators, 2 to 256 characters), which are stricter
/// than Docker's (no `__` or `--`).
pub fn check_ecr_repository_name(name: &str) -> Result<(), String> {
    if !(2..=256).contains(&name.len()) {
        return Err(format!(
            "{name:?} is {} characters long; ECR repository names have 2 to 256",
            name.len()
        ));
    }
    for component in name.split('/') {
        let mut previous_was_separator = true;
        for b in component.bytes() {
            let separator = matches!(b, b'.' | b'_' | b'-');
            let allowed = b.is_ascii_lowercase() || b.is_ascii_digit() || separator;
            if !allowed || (separator && previous_was_separator) {
                return Err(format!(
                    "{name:?} is not a valid ECR repository name: component {component:?} must be \
                     lower-case letters and digits with single '.', '_' or '-' between them"
                ));
            }
            previous_was_separator = separator;
        }
        if previous_was_separator {
            return Err(format!(
                "{name:?} is not a valid ECR repository name: component {component:?} is empty or \
                 ends with a separator"
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    rules: Vec<UserRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRule {
    hosts: Vec<String>,
    namespace: String,
    #[serde(default = "default_method")]
    method: Method,
    #[serde(default)]
    shorthand: Option<String>,
    #[serde(default)]
    upstream_registry: Option<String>,
}

fn default_method() -> Method {
    Method::Copy
}

impl UserRule {
    fn validate(self) -> Result<NamespaceRule, String> {
        if self.hosts.is_empty() {
            return Err("\"hosts\" must name at least one registry host".to_string());
        }
        check_ecr_repository_name(&format!("{}/x", self.namespace)).map_err(|_| {
            format!(
                "namespace {:?} is not a valid repository prefix",
                self.namespace
            )
        })?;
        if let Some(shorthand) = &self.shorthand {
            if shorthand.contains(['.', ':', '/']) || shorthand == "localhost" {
                return Err(format!(
                    "shorthand {shorthand:?} would be read as a registry host; use a plain word"
                ));
            }
        }
        Ok(NamespaceRule {
            hosts: self.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
            namespace: self.namespace,
            method: self.method,
            shorthand: self.shorthand,
            upstream_registry: self.upstream_registry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(input: &str) -> (String, Method) {
        let table = NamespaceTable::builtin();
        let source = table.parse_source(input).unwrap();
        let mapping = table.map(&source).unwrap();
        (mapping.repository, mapping.method)
    }

    #[test]
    fn the_documented_table() {
        use Method::*;
        let cases = [
            ("ubuntu:20.04", "dockerhub/ubuntu", Copy),
            ("library/ubuntu:20.04", "dockerhub/ubuntu", Copy),
            ("docker.io/library/ubuntu:20.04", "dockerhub/ubuntu", Copy),
            ("index.docker.io/library/ubuntu", "dockerhub/ubuntu", Copy),
            (
                "biocontainers/samtools:1.17",
                "dockerhub/biocontainers/samtools",
                Copy,
            ),
            ("dockerhub/ubuntu:20.04", "dockerhub/ubuntu", Copy),
            (
                "dockerhub/biocontainers/samtools:1.17",
                "dockerhub/biocontainers/samtools",
                Copy,
            ),
            (
                "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1",
                "quay/biocontainers/bcftools",
                PullThroughCache,
            ),
            (
                "quay/biocontainers/bcftools:1.16--hfe4b78e_1",
                "quay/biocontainers/bcftools",
                PullThroughCache,
            ),
            (
                "QUAY.IO/biocontainers/bcftools:1",
                "quay/biocontainers/bcftools",
                PullThroughCache,
            ),
            (
                "public.ecr.aws/lts/ubuntu:22.04",
                "ecr-public/lts/ubuntu",
                PullThroughCache,
            ),
            (
                "ecr-public/lts/ubuntu:22.04",
                "ecr-public/lts/ubuntu",
                PullThroughCache,
            ),
            (
                "gcr.io/google-containers/busybox:1.27",
                "gcr/google-containers/busybox",
                Copy,
            ),
            ("us.gcr.io/proj/tool:1", "gcr/proj/tool", Copy),
            (
                "us-central1-docker.pkg.dev/proj/repo/tool:2",
                "gar/proj/repo/tool",
                Copy,
            ),
            ("ghcr.io/owner/tool:3", "ghcr/owner/tool", Copy),
            (
                "mcr.microsoft.com/dotnet/runtime:8.0",
                "mcr/dotnet/runtime",
                Copy,
            ),
            (
                "nvcr.io/nvidia/clara/parabricks:4.2",
                "nvcr/nvidia/clara/parabricks",
                Copy,
            ),
            (
                "community.wave.seqera.io/library/samtools:1.20",
                "community.wave.seqera.io/library/samtools",
                Copy,
            ),
            (
                "Registry.Example.com:5000/team/tool:1",
                "registry.example.com-5000/team/tool",
                Copy,
            ),
            (
                "123456789012.dkr.ecr.us-west-2.amazonaws.com/team/tool:1",
                "team/tool",
                Copy,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/tool:1",
                "tool",
                Copy,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/tool:1",
                "tool",
                Copy,
            ),
        ];
        for (input, repository, method) in cases {
            assert_eq!(
                target(input),
                (repository.to_string(), method),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn ecr_host_match_is_end_anchored() {
        assert!(is_ecr_private_host(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        ));
        assert!(!is_ecr_private_host(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io"
        ));
        assert!(!is_ecr_private_host(
            "12345678901.dkr.ecr.us-east-1.amazonaws.com"
        ));
        assert!(!is_ecr_private_host("public.ecr.aws"));
        assert_eq!(
            parse_ecr_private_host("123456789012.DKR.ECR.eu-west-1.amazonaws.com"),
            Some(("123456789012".into(), "eu-west-1".into()))
        );
        assert_eq!(
            ecr_registry_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn subdomain_patterns_need_a_real_subdomain() {
        let pattern = HostPattern::parse("*.gcr.io");
        assert!(pattern.matches("eu.gcr.io"));
        assert!(pattern.matches("EU.GCR.IO"));
        assert!(!pattern.matches("gcr.io"));
        assert!(!pattern.matches("notgcr.io"));
        let regional = HostPattern::parse("*-docker.pkg.dev");
        assert!(regional.matches("us-central1-docker.pkg.dev"));
        assert!(regional.matches("EUROPE-WEST4-docker.pkg.dev"));
        assert!(!regional.matches("docker.pkg.dev"));
        assert!(!regional.matches("-docker.pkg.dev"));
        assert!(!regional.matches("evil.io/x-docker.pkg.dev"));
        assert!(!regional.matches("a.b-docker.pkg.dev"));
    }

    #[test]
    fn healthomics_copies_only_the_documented_hosts() {
        for host in [
            "community.wave.seqera.io",
            "wave.seqera.io",
            "nvcr.io",
            "gcr.io",
            "us-central1-docker.pkg.dev",
        ] {
            assert!(healthomics_copies_from(host), "{host}");
        }
        for host in [
            "us.gcr.io",
            "docker.pkg.dev",
            "quay.io",
            "docker.io",
            "mcr.microsoft.com",
            "seqera.io",
        ] {
            assert!(!healthomics_copies_from(host), "{host}");
        }
    }

    #[test]
    fn user_rules_override_and_extend() {
        let table = NamespaceTable::builtin()
            .with_user_rules(
                r#"{"rules": [
                    {"hosts": ["community.wave.seqera.io"], "namespace": "wave", "shorthand": "wave"},
                    {"hosts": ["docker.io"], "namespace": "dockerhub", "method": "pull-through-cache",
                     "upstream_registry": "registry-1.docker.io"}
                ]}"#,
            )
            .unwrap();
        let map = |input: &str| table.map(&table.parse_source(input).unwrap()).unwrap();
        assert_eq!(
            map("community.wave.seqera.io/library/x:1").repository,
            "wave/library/x"
        );
        assert_eq!(map("wave/library/x:1").repository, "wave/library/x");
        // Docker Hub as a pull-through source keeps `library/`, which ECR needs upstream.
        let hub = map("ubuntu:20.04");
        assert_eq!(hub.repository, "dockerhub/library/ubuntu");
        assert_eq!(hub.method, Method::PullThroughCache);
    }

    #[test]
    fn user_rule_errors_name_the_rule() {
        let table = NamespaceTable::builtin();
        let err = table
            .clone()
            .with_user_rules(r#"{"rules": [{"hosts": [], "namespace": "x"}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("rules[0]"), "{err}");
        let err = table
            .clone()
            .with_user_rules(r#"{"rules": [{"hosts": ["a.io"], "namespace": "Bad NS"}]}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("not a valid repository prefix"),
            "{err}"
        );
        let err = table
            .clone()
            .with_user_rules(r#"{"rules": [{"hosts": ["a.io"], "namespace": "a", "colour": 1}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = table.with_user_rules("{\n  \"rules\": [,]}").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn ecr_repository_names() {
        assert!(check_ecr_repository_name("dockerhub/ubuntu").is_ok());
        assert!(check_ecr_repository_name("quay/biocontainers/bcftools").is_ok());
        assert!(check_ecr_repository_name("registry.example.com-5000/a_b").is_ok());
        assert!(check_ecr_repository_name("dockerhub/a__b").is_err());
        assert!(check_ecr_repository_name("dockerhub/a--b").is_err());
        assert!(check_ecr_repository_name("x").is_err());
        assert!(check_ecr_repository_name("Upper/case").is_err());
        assert!(check_ecr_repository_name("a//b").is_err());
    }

    #[test]
    fn unmappable_hosts_say_what_to_do() {
        let err = namespace_from_host("[::1]:5000").unwrap_err();
        assert!(err.to_string().contains("--namespaces"), "{err}");
        assert_eq!(
            namespace_from_host("localhost:5000").unwrap(),
            "localhost-5000"
        );
    }
}

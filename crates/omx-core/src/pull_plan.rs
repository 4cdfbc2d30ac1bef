//! What `pull` will do for each entry of a manifest, decided before any network call.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::excerpt::quoted;
use crate::manifest_file::{EntryError, PullEntry};
use crate::namespace::{
    check_ecr_repository_name, ecr_registry_host, parse_ecr_private_host, parse_ecr_registry_host,
    EcrEndpoint, Method, NamespaceTable,
};
use crate::reference::Reference;
use crate::strategy::Strategy;

/// The registry images are copied into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRegistry {
    /// ECR private. Account and region come from the AWS credential chain when not given; until
    /// then the plan shows `<account>` and `<region>` placeholders.
    Ecr {
        account: Option<String>,
        region: Option<String>,
        /// Which of ECR's registry endpoints private URIs name (FIPS, dual-stack).
        endpoint: EcrEndpoint,
    },
    /// Any other OCI registry, as `host[:port]`; the ECR-only steps do not apply.
    Oci { host: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --registry {}: {reason}", quoted(.input))]
pub struct TargetRegistryError {
    input: String,
    reason: String,
}

impl FromStr for TargetRegistry {
    type Err = TargetRegistryError;

    /// `ecr`, `ecr://ACCOUNT/REGION`, an ECR registry host, or the `host[:port]` of any registry.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| TargetRegistryError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let text = input.trim();
        if text.eq_ignore_ascii_case("ecr") {
            return Ok(TargetRegistry::Ecr {
                account: None,
                region: None,
                endpoint: EcrEndpoint::Standard,
            });
        }
        if let Some(rest) = text.strip_prefix("ecr://") {
            let (account, region) = rest
                .trim_end_matches('/')
                .split_once('/')
                .ok_or_else(|| fail("expected ecr://ACCOUNT/REGION"))?;
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail("the account must be 12 digits"));
            }
            // Reuse the host check so that one definition says what a region looks like.
            parse_ecr_private_host(&ecr_registry_host(account, region))
                .ok_or_else(|| fail("the region must look like us-east-1"))?;
            return Ok(TargetRegistry::Ecr {
                account: Some(account.to_string()),
                region: Some(region.to_string()),
                endpoint: EcrEndpoint::Standard,
            });
        }
        if let Some(host) = parse_ecr_registry_host(text) {
            return Ok(TargetRegistry::Ecr {
                account: Some(host.account),
                region: Some(host.region),
                endpoint: host.endpoint,
            });
        }
        if text.contains("://") || text.contains('/') {
            return Err(fail(
                "give ecr, ecr://ACCOUNT/REGION or a registry host[:port] without scheme or path",
            ));
        }
        check_registry_host(text).map_err(fail)?;
        Ok(TargetRegistry::Oci {
            host: text.to_string(),
        })
    }
}

/// Whether `text` is a registry `host[:port]` (what every argument naming a registry takes),
/// and if not, why.
pub fn check_registry_host(text: &str) -> Result<(), &'static str> {
    if text.contains('@') {
        return Err(
            "a registry host carries no credentials; give them with --src-creds or \
                    --dest-creds, or log in (Docker config)",
        );
    }
    // A registry host must be a valid reference domain: test it the way references are read.
    Reference::parse(&format!("{text}/probe"))
        .ok()
        .filter(|probe| probe.domain() == text)
        .map(|_| ())
        .ok_or("not a valid registry host[:port]")
}

impl TargetRegistry {
    /// The registry host, with `<account>`/`<region>` placeholders where ECR is not yet resolved.
    pub fn host(&self) -> String {
        match self {
            TargetRegistry::Ecr {
                account,
                region,
                endpoint,
            } => endpoint.host(
                account.as_deref().unwrap_or("<account>"),
                region.as_deref().unwrap_or("<region>"),
            ),
            TargetRegistry::Oci { host } => host.clone(),
        }
    }

    pub fn is_ecr(&self) -> bool {
        matches!(self, TargetRegistry::Ecr { .. })
    }
}

impl fmt::Display for TargetRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host())
    }
}

/// One image to bring into the private registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedImage {
    /// The entry as the user wrote it (the first one, when duplicates were merged).
    pub input: String,
    /// Fully-qualified normalized source, with Docker's `latest` applied when no tag or digest was
    /// given (`docker.io/library/ubuntu:20.04`).
    #[serde(serialize_with = "serialize_display")]
    pub source: Reference,
    pub target_repository: String,
    /// The full private URI (`<registry>/<repository>:<tag>`, `@<digest>` for digest references).
    pub target: String,
    pub method: Method,
    /// What happens to it: primed, copied, or left for HealthOmics to fetch (see
    /// [`crate::strategy::choose_strategies`]; until then, what `method` does).
    pub strategy: Strategy,
    /// Tag to push or look up; `None` for a digest-only reference.
    #[serde(skip)]
    pub target_tag: Option<String>,
    /// Positions in the manifest of this entry and the duplicates merged into it.
    #[serde(skip)]
    pub indexes: Vec<usize>,
    /// Every distinct spelling of this image in the manifest (trimmed), first one first: a
    /// workflow may name one image several ways, and each needs its mapping.
    #[serde(skip)]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The plan of a pull manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullPlan {
    pub images: Vec<PlannedImage>,
    pub errors: Vec<EntryError>,
}

impl PullPlan {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Plans every entry, collecting all entry errors rather than stopping at the first.
pub fn plan_pull(
    entries: &[PullEntry],
    table: &NamespaceTable,
    registry: &TargetRegistry,
) -> PullPlan {
    let mut images: Vec<PlannedImage> = Vec::new();
    let mut errors = Vec::new();
    let mut by_source: HashMap<String, usize> = HashMap::new();
    let mut by_target: HashMap<String, usize> = HashMap::new();

    for entry in entries {
        let planned = match plan_entry(entry, table, registry) {
            Ok(planned) => planned,
            Err(error) => {
                errors.push(EntryError::new(entry.index, &entry.input, error));
                continue;
            }
        };
        let source_key = planned.source.to_string();
        if let Some(&first) = by_source.get(&source_key) {
            let merged = &mut images[first];
            merged.indexes.push(entry.index);
            let alias = entry.input.trim();
            if !merged.aliases.iter().any(|a| a == alias) {
                merged.aliases.push(alias.to_string());
            }
            continue;
        }
        if let Some(&other) = by_target.get(&planned.target) {
            let other = &images[other];
            errors.push(EntryError::new(
                entry.index,
                &entry.input,
                format!(
                    "{} and {} (manifest[{}]) would both become {}",
                    planned.source, other.source, other.indexes[0], planned.target
                ),
            ));
            continue;
        }
        by_source.insert(source_key, images.len());
        by_target.insert(planned.target.clone(), images.len());
        images.push(planned);
    }
    errors.sort_by_key(|e| e.index);
    PullPlan { images, errors }
}

fn plan_entry(
    entry: &PullEntry,
    table: &NamespaceTable,
    registry: &TargetRegistry,
) -> Result<PlannedImage, String> {
    let parsed = table
        .parse_source(&entry.input)
        .map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    let source = if parsed.is_implicit_latest() {
        warnings.push(format!(
            "{:?} names no tag: using \"latest\", which can change under you; pin a tag or digest \
             for reproducible workflows",
            entry.input.trim()
        ));
        parsed.with_tag("latest").map_err(|e| e.to_string())?
    } else {
        parsed
    };
    let mapping = table.map(&source).map_err(|e| e.to_string())?;
    if registry.is_ecr() {
        check_ecr_repository_name(&mapping.repository)?;
    }
    let target_tag = source.tag().map(str::to_string);
    let mut target = format!("{}/{}", registry.host(), mapping.repository);
    if let Some(tag) = &target_tag {
        target.push(':');
        target.push_str(tag);
    }
    if let Some(digest) = source.digest() {
        target.push('@');
        target.push_str(&digest.to_string());
    }
    if let TargetRegistry::Oci { .. } = registry {
        Reference::parse(&target)
            .map_err(|e| format!("the target {target:?} is not a valid image reference: {e}"))?;
    }
    Ok(PlannedImage {
        input: entry.input.clone(),
        source,
        target_repository: mapping.repository,
        target,
        method: mapping.method,
        strategy: Strategy::of_method(mapping.method),
        target_tag,
        indexes: vec![entry.index],
        aliases: vec![entry.input.trim().to_string()],
        warnings,
    })
}

fn serialize_display<S: serde::Serializer>(
    value: &impl fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest_file::parse_pull_manifest;

    const ECR: &str = "ecr://123456789012/us-east-1";
    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn plan(json: &str, registry: &str) -> PullPlan {
        let entries = parse_pull_manifest(json).unwrap();
        assert!(entries.errors.is_empty());
        plan_pull(
            &entries.entries,
            &NamespaceTable::builtin(),
            &registry.parse().unwrap(),
        )
    }

    #[test]
    fn plans_the_readme_example() {
        let plan = plan(
            r#"{"manifest": ["ubuntu:20.04", "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1"]}"#,
            ECR,
        );
        assert!(plan.errors.is_empty());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "images": [
                    {
                        "input": "ubuntu:20.04",
                        "source": "docker.io/library/ubuntu:20.04",
                        "target_repository": "dockerhub/ubuntu",
                        "target": format!("{HOST}/dockerhub/ubuntu:20.04"),
                        "method": "copy",
                        "strategy": "copy"
                    },
                    {
                        "input": "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1",
                        "source": "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1",
                        "target_repository": "quay/biocontainers/bcftools",
                        "target": format!("{HOST}/quay/biocontainers/bcftools:1.16--hfe4b78e_1"),
                        "method": "pull-through-cache",
                        "strategy": "prime"
                    }
                ],
                "errors": []
            })
        );
    }

    #[test]
    fn digests_are_kept_and_latest_is_warned_about() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let plan = plan(
            &format!(r#"{{"manifest": ["busybox@{digest}", "busybox:1.36@{digest}", "alpine"]}}"#),
            "localhost:5000",
        );
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let targets: Vec<_> = plan.images.iter().map(|i| i.target.as_str()).collect();
        assert_eq!(
            targets,
            vec![
                format!("localhost:5000/dockerhub/busybox@{digest}"),
                format!("localhost:5000/dockerhub/busybox:1.36@{digest}"),
                "localhost:5000/dockerhub/alpine:latest".to_string(),
            ]
        );
        assert_eq!(plan.images[0].target_tag, None);
        assert_eq!(
            plan.images[2].source.to_string(),
            "docker.io/library/alpine:latest"
        );
        assert!(plan.images[2].warnings[0].contains("latest"));
        assert!(plan.images[0].warnings.is_empty());
    }

    #[test]
    fn duplicates_merge_and_collisions_are_errors() {
        let plan = plan(
            r#"{"manifest": [
                "ubuntu:20.04", "docker.io/library/ubuntu:20.04", "dockerhub/ubuntu:20.04",
                "gcr.io/p/tool:1", "us.gcr.io/p/tool:1", "alpine", "alpine:latest"
            ]}"#,
            ECR,
        );
        assert_eq!(plan.images.len(), 3);
        assert_eq!(plan.images[0].indexes, vec![0, 1, 2]);
        assert_eq!(
            plan.images[0].aliases,
            vec![
                "ubuntu:20.04",
                "docker.io/library/ubuntu:20.04",
                "dockerhub/ubuntu:20.04"
            ]
        );
        assert_eq!(plan.images[2].indexes, vec![5, 6]);
        assert_eq!(plan.errors.len(), 1);
        assert_eq!(plan.errors[0].index, 4);
        assert!(
            plan.errors[0]
                .error
                .contains("gcr.io/p/tool:1 (manifest[3]) would both become"),
            "{}",
            plan.errors[0].error
        );
    }

    #[test]
    fn bad_references_are_entry_errors() {
        let plan = plan(
            r#"{"manifest": ["ubuntu:20.04", "Ubuntu:1", "a/b__c:1"]}"#,
            ECR,
        );
        assert_eq!(plan.images.len(), 1);
        let indexes: Vec<_> = plan.errors.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![1, 2]);
        assert!(
            plan.errors[1].error.contains("ECR repository name"),
            "{:?}",
            plan.errors
        );
    }

    #[test]
    fn credentials_in_a_reference_are_never_echoed() {
        let plan = plan(
            r#"{"manifest": ["alice:hunter2@registry.io/team/tool:1"]}"#,
            ECR,
        );
        let json = serde_json::to_string(&plan).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(plan.errors[0].error.contains("credentials"), "{json}");
    }

    #[test]
    fn fips_and_dual_stack_targets_keep_their_host() {
        for host in [
            "123456789012.dkr-ecr.eu-west-1.on.aws",
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr-fips.us-east-2.on.aws",
        ] {
            let registry: TargetRegistry = host.parse().unwrap();
            assert!(registry.is_ecr(), "{host}");
            assert_eq!(registry.host(), host);
        }
    }

    #[test]
    fn target_registry_forms() {
        assert_eq!(
            "ecr".parse::<TargetRegistry>().unwrap().host(),
            "<account>.dkr.ecr.<region>.amazonaws.com"
        );
        assert_eq!(ECR.parse::<TargetRegistry>().unwrap().host(), HOST);
        assert_eq!(
            HOST.parse::<TargetRegistry>().unwrap(),
            TargetRegistry::Ecr {
                account: Some("123456789012".into()),
                region: Some("us-east-1".into()),
                endpoint: EcrEndpoint::Standard,
            }
        );
        assert_eq!(
            "127.0.0.1:5000".parse::<TargetRegistry>().unwrap(),
            TargetRegistry::Oci {
                host: "127.0.0.1:5000".into()
            }
        );
        for bad in [
            "ecr://1/us-east-1",
            "ecr://123456789012",
            "https://x.io",
            "x.io/path",
            "bad host",
        ] {
            let err = bad.parse::<TargetRegistry>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}

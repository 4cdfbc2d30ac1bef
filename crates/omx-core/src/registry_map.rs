//! How a workflow reaches the private images: HealthOmics' `containerRegistryMap`.
//!
//! Pull-through-cache namespaces become registry mappings (HealthOmics rewrites every image of
//! that upstream registry to the prefix); so do the registries HealthOmics copies from itself
//! (strategy `native`), whose mapping carries the `credentialArn` of the registry's secret (HealthOmics
//! User Guide, "Adding private or third-party containers during workflow creation": one registry
//! map holds both kinds). Images this tool copied become one image mapping per spelling the
//! manifest used, since HealthOmics matches the image string the workflow names.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::lock::unpinned_spelling;
use crate::namespace::{Method, NamespaceTable};
use crate::pull_plan::{PlannedImage, PullPlan};
use crate::registry_host::RegistryHost;
use crate::report::{ImageReport, ImageStatus, RunReport};
use crate::strategy::{NativeAccess, Strategy};

/// What `--output-map FILE` holds: every image that is in place, with its private URI, and the
/// map to pass to `CreateWorkflow --container-registry-map`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputMap {
    pub images: Vec<MappedImage>,
    pub container_registry_map: ContainerRegistryMap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedImage {
    pub input: String,
    pub source: String,
    pub target: String,
    pub digest: Option<Digest>,
}

impl OutputMap {
    /// The images of `plan` whose report (same order) says they are in place, or, in a dry run,
    /// would be (`PLANNED`), or that HealthOmics fetches itself (`NATIVE`): a dry run writes the
    /// map the real run would.
    pub fn from_run(
        plan: &PullPlan,
        report: &RunReport,
        table: &NamespaceTable,
        access: &NativeAccess,
    ) -> OutputMap {
        let in_place: Vec<(&PlannedImage, &ImageReport)> = plan
            .images
            .iter()
            .zip(&report.images)
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    ImageStatus::Succeeded
                        | ImageStatus::Skipped
                        | ImageStatus::Planned
                        | ImageStatus::Native
                )
            })
            .collect();
        let planned: Vec<&PlannedImage> = in_place.iter().map(|(image, _)| *image).collect();
        OutputMap {
            images: in_place
                .iter()
                .map(|(image, report)| MappedImage {
                    input: image.input.trim().to_string(),
                    source: image.source.to_string(),
                    target: image.target.clone(),
                    digest: report.digest.clone(),
                })
                .collect(),
            container_registry_map: container_registry_map(&planned, table, access),
        }
    }

    /// Every image of `plan` with its private URI (no digest: nothing was looked up) and the map
    /// for all of them: what a workflow needs once the plan is carried out (`map`, offline).
    pub fn planned(plan: &PullPlan, table: &NamespaceTable, access: &NativeAccess) -> OutputMap {
        let images: Vec<&PlannedImage> = plan.images.iter().collect();
        OutputMap {
            images: plan
                .images
                .iter()
                .map(|image| MappedImage {
                    input: image.input.trim().to_string(),
                    source: image.source.to_string(),
                    target: image.target.clone(),
                    digest: None,
                })
                .collect(),
            container_registry_map: container_registry_map(&images, table, access),
        }
    }

    /// The images a build put in place (built or unchanged), each mapped from the name the build
    /// manifest gave it to its private URI. A built image has no upstream registry, so the map
    /// holds image mappings only.
    pub fn from_build_report(report: &RunReport) -> OutputMap {
        let in_place: Vec<&ImageReport> = report
            .images
            .iter()
            .filter(|image| matches!(image.status, ImageStatus::Succeeded | ImageStatus::Skipped))
            .collect();
        OutputMap {
            images: in_place
                .iter()
                .map(|image| MappedImage {
                    input: image.input.trim().to_string(),
                    source: image.source.clone(),
                    target: image.target.clone(),
                    digest: image.digest.clone(),
                })
                .collect(),
            container_registry_map: ContainerRegistryMap {
                registry_mappings: Vec::new(),
                image_mappings: in_place
                    .iter()
                    .map(|image| ImageMapping {
                        source_image: image.input.trim().to_string(),
                        destination_image: image.target.clone(),
                    })
                    .collect(),
            },
        }
    }
}

/// The exact shape `CreateWorkflow --container-registry-map` accepts (read back strictly: an
/// unknown member is an error, as it is to the service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerRegistryMap {
    #[serde(default)]
    pub registry_mappings: Vec<RegistryMapping>,
    #[serde(default)]
    pub image_mappings: Vec<ImageMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryMapping {
    pub upstream_registry_url: String,
    pub ecr_repository_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_repository_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecr_account_id: Option<String>,
    /// The Secrets Manager secret HealthOmics signs in to the upstream with, for a registry it
    /// copies from (absent for pull-through cache mappings, whose rule holds any credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageMapping {
    pub source_image: String,
    pub destination_image: String,
}

/// Builds the map for the planned images (only those given: pass the ones that ended well).
/// A pull-through cache prefix is the region's own rule's, when `access` knows it, else the
/// namespace table's.
pub fn container_registry_map(
    images: &[&PlannedImage],
    table: &NamespaceTable,
    access: &NativeAccess,
) -> ContainerRegistryMap {
    let mut map = ContainerRegistryMap::default();
    for image in images {
        match (image.strategy, image.method) {
            (Strategy::Prime | Strategy::Native, Method::PullThroughCache) => {
                let Some(rule) = table.rule_for(image.source.domain()) else {
                    continue;
                };
                let Some(upstream) = rule.upstream_registry() else {
                    continue;
                };
                let prefix = access.cache_prefix(upstream).unwrap_or(&rule.namespace);
                add_registry_mapping(&mut map, upstream, prefix, None);
            }
            (Strategy::Native, Method::Copy) => {
                let Ok(mapping) = table.map(&image.source) else {
                    continue;
                };
                let Some(prefix) = mapping.namespace else {
                    continue;
                };
                let host = image.source.domain().to_ascii_lowercase();
                let credential = access.credential(&host).map(|arn| arn.to_string());
                add_registry_mapping(&mut map, &host, &prefix, credential);
            }
            (Strategy::Copy | Strategy::Prime, _) => {
                let fully_qualified = image.source.to_string();
                // A locked manifest pins `name:tag@digest` while the workflow may still name
                // `name:tag`: both spellings lead to the pinned private image.
                let spellings = image
                    .aliases
                    .iter()
                    .chain(std::iter::once(&fully_qualified))
                    .flat_map(|spelling| {
                        std::iter::once(spelling.as_str()).chain(unpinned_spelling(spelling))
                    });
                for source_image in spellings {
                    let mapping = ImageMapping {
                        source_image: source_image.to_string(),
                        destination_image: image.target.clone(),
                    };
                    if !map.image_mappings.contains(&mapping) {
                        map.image_mappings.push(mapping);
                    }
                }
            }
        }
    }
    map
}

impl ContainerRegistryMap {
    /// How the map reaches `image`: an image mapping of one of its spellings, or the registry
    /// mapping of its registry (by its host, or the host a pull-through cache fetches it from,
    /// `registry-1.docker.io` for Docker Hub). `None`: a workflow naming it would not reach ECR.
    pub fn route_to(&self, image: &PlannedImage, table: &NamespaceTable) -> Option<String> {
        let fully_qualified = image.source.to_string();
        let spellings: Vec<&str> = image
            .aliases
            .iter()
            .map(String::as_str)
            .chain([fully_qualified.as_str()])
            .collect();
        if let Some(mapping) = self
            .image_mappings
            .iter()
            .find(|m| spellings.contains(&m.source_image.as_str()))
        {
            return Some(format!("image mapping to {}", mapping.destination_image));
        }
        let host = image.source.domain();
        let upstream = table
            .rule_for(host)
            .and_then(|rule| rule.upstream_registry());
        let named = [Some(host), upstream].map(|spelling| spelling.map(RegistryHost::new));
        self.registry_mappings
            .iter()
            .find(|m| named.contains(&Some(RegistryHost::new(&m.upstream_registry_url))))
            .map(|m| {
                format!(
                    "registry mapping {} -> {}/",
                    m.upstream_registry_url, m.ecr_repository_prefix
                )
            })
    }
}

fn add_registry_mapping(
    map: &mut ContainerRegistryMap,
    upstream: &str,
    prefix: &str,
    credential_arn: Option<String>,
) {
    let mapping = RegistryMapping {
        upstream_registry_url: upstream.to_string(),
        ecr_repository_prefix: prefix.to_string(),
        upstream_repository_prefix: None,
        ecr_account_id: None,
        credential_arn,
    };
    if !map.registry_mappings.contains(&mapping) {
        map.registry_mappings.push(mapping);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ImageReport;

    #[test]
    fn the_output_map_holds_only_images_in_place() {
        let table = NamespaceTable::builtin();
        let entries =
            parse_pull_manifest(r#"{"manifest": ["ubuntu:20.04", "alpine:3.19"]}"#).unwrap();
        let plan = plan_pull(&entries.entries, &table, &"127.0.0.1:5000".parse().unwrap());
        let report_of = |image: &PlannedImage, status| ImageReport {
            input: image.input.clone(),
            source: image.source.to_string(),
            target: image.target.clone(),
            digest: None,
            status,
            message: String::new(),
            bytes_copied: None,
        };
        let run = RunReport {
            images: vec![
                report_of(&plan.images[0], ImageStatus::Skipped),
                report_of(&plan.images[1], ImageStatus::Failed),
            ],
            errors: vec![],
        };
        let map = OutputMap::from_run(&plan, &run, &table, &NativeAccess::default());
        assert_eq!(map.images.len(), 1);
        assert_eq!(
            map.images[0].target,
            "127.0.0.1:5000/dockerhub/ubuntu:20.04"
        );
        assert_eq!(map.container_registry_map.image_mappings.len(), 2);
        let json = serde_json::to_value(&map).unwrap();
        assert!(json.get("containerRegistryMap").is_some(), "{json}");
    }
    use crate::manifest_file::parse_pull_manifest;
    use crate::pull_plan::plan_pull;

    #[test]
    fn ptc_images_map_by_registry_and_copies_by_image() {
        let table = NamespaceTable::builtin();
        let entries = parse_pull_manifest(
            r#"{"manifest": ["ubuntu:20.04", "docker.io/library/ubuntu:20.04",
                "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1", "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
                "public.ecr.aws/lts/ubuntu:22.04"]}"#,
        )
        .unwrap();
        let plan = plan_pull(
            &entries.entries,
            &table,
            &"ecr://123456789012/us-east-1".parse().unwrap(),
        );
        let images: Vec<_> = plan.images.iter().collect();
        let map = container_registry_map(&images, &table, &NativeAccess::default());
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(
            serde_json::to_value(&map).unwrap(),
            serde_json::json!({
                "registryMappings": [
                    {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay"},
                    {"upstreamRegistryUrl": "public.ecr.aws", "ecrRepositoryPrefix": "ecr-public"}
                ],
                "imageMappings": [
                    {"sourceImage": "ubuntu:20.04", "destinationImage": format!("{host}/dockerhub/ubuntu:20.04")},
                    {"sourceImage": "docker.io/library/ubuntu:20.04", "destinationImage": format!("{host}/dockerhub/ubuntu:20.04")}
                ]
            })
        );
    }

    #[test]
    fn a_pinned_image_maps_its_unpinned_spelling_to_the_pin() {
        let table = NamespaceTable::builtin();
        let digest = format!("sha256:{}", "c".repeat(64));
        let entries =
            parse_pull_manifest(&format!(r#"{{"manifest": ["ubuntu:20.04@{digest}"]}}"#)).unwrap();
        let plan = plan_pull(&entries.entries, &table, &"127.0.0.1:5000".parse().unwrap());
        let images: Vec<_> = plan.images.iter().collect();
        let map = container_registry_map(&images, &table, &NativeAccess::default());
        let pinned = format!("127.0.0.1:5000/dockerhub/ubuntu:20.04@{digest}");
        let mappings: Vec<(&str, &str)> = map
            .image_mappings
            .iter()
            .map(|m| (m.source_image.as_str(), m.destination_image.as_str()))
            .collect();
        let workflow_spellings = [
            format!("ubuntu:20.04@{digest}"),
            "ubuntu:20.04".to_string(),
            format!("docker.io/library/ubuntu:20.04@{digest}"),
            "docker.io/library/ubuntu:20.04".to_string(),
        ];
        let expected: Vec<(&str, &str)> = workflow_spellings
            .iter()
            .map(|spelling| (spelling.as_str(), pinned.as_str()))
            .collect();
        assert_eq!(mappings, expected);
    }

    #[test]
    fn native_registries_map_with_their_credential() {
        use crate::strategy::{choose_strategies, SecretArn, StrategyChoice};
        let table = NamespaceTable::builtin();
        let entries = parse_pull_manifest(
            r#"{"manifest": ["nvcr.io/nvidia/clara/parabricks:4.2", "nvcr.io/nvidia/other:1",
                "us-central1-docker.pkg.dev/p/r/tool:1", "quay.io/biocontainers/x:1", "gcr.io/p/t:1"]}"#,
        )
        .unwrap();
        let mut plan = plan_pull(
            &entries.entries,
            &table,
            &"ecr://123456789012/us-east-1".parse().unwrap(),
        );
        let arn = |name: &str| {
            SecretArn::parse(&format!(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:omics-registry/{name}"
            ))
            .unwrap()
        };
        let access = NativeAccess::default()
            .with_credential("nvcr.io", arn("nvcr"))
            .with_credential("us-central1-docker.pkg.dev", arn("gar"))
            .with_cache_prefix("quay.io", "quay-cache");
        choose_strategies(&mut plan, StrategyChoice::Auto, &access, true);
        let images: Vec<_> = plan.images.iter().collect();
        let map = container_registry_map(&images, &table, &access);
        let secret = |name: &str| {
            format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:omics-registry/{name}")
        };
        assert_eq!(
            serde_json::to_value(&map).unwrap(),
            serde_json::json!({
                "registryMappings": [
                    {"upstreamRegistryUrl": "nvcr.io", "ecrRepositoryPrefix": "nvcr", "credentialArn": secret("nvcr")},
                    {"upstreamRegistryUrl": "us-central1-docker.pkg.dev", "ecrRepositoryPrefix": "gar", "credentialArn": secret("gar")},
                    {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay-cache"}
                ],
                "imageMappings": [
                    {"sourceImage": "gcr.io/p/t:1", "destinationImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/gcr/p/t:1"}
                ]
            })
        );
    }

    #[test]
    fn a_build_map_names_only_images_in_place() {
        let image = |input: &str, status| ImageReport {
            input: input.to_string(),
            source: "s3://b/x/".to_string(),
            target: format!("r.example/{input}"),
            digest: None,
            status,
            message: String::new(),
            bytes_copied: None,
        };
        let report = RunReport {
            images: vec![
                image("a:1", ImageStatus::Succeeded),
                image("b:1", ImageStatus::Failed),
                image("c:1", ImageStatus::Skipped),
            ],
            errors: vec![],
        };
        let map = serde_json::to_value(OutputMap::from_build_report(&report)).unwrap();
        assert_eq!(
            map["containerRegistryMap"],
            serde_json::json!({
                "registryMappings": [],
                "imageMappings": [
                    {"sourceImage": "a:1", "destinationImage": "r.example/a:1"},
                    {"sourceImage": "c:1", "destinationImage": "r.example/c:1"}
                ]
            })
        );
        assert_eq!(map["images"][1]["input"], "c:1");
        assert_eq!(map["images"][1]["target"], "r.example/c:1");
    }
}

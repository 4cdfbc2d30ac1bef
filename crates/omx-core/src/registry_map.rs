//! How a workflow reaches the private images: HealthOmics' `containerRegistryMap`.
//!
//! Pull-through-cache namespaces become registry mappings (HealthOmics rewrites every image of
//! that upstream registry to the prefix); copied images become one image mapping per spelling the
//! manifest used, since HealthOmics matches the image string the workflow names.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::lock::unpinned_spelling;
use crate::namespace::{Method, NamespaceTable};
use crate::plan::{PlannedImage, PullPlan};
use crate::report::{ImageStatus, RunReport};

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
    /// would be (`PLANNED`): a dry run writes the map the real run would.
    pub fn from_run(plan: &PullPlan, report: &RunReport, table: &NamespaceTable) -> OutputMap {
        let in_place: Vec<(&PlannedImage, &crate::report::ImageReport)> = plan
            .images
            .iter()
            .zip(&report.images)
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    ImageStatus::Succeeded | ImageStatus::Skipped | ImageStatus::Planned
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
            container_registry_map: container_registry_map(&planned, table),
        }
    }
}

/// The exact shape `CreateWorkflow --container-registry-map` accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRegistryMap {
    pub registry_mappings: Vec<RegistryMapping>,
    pub image_mappings: Vec<ImageMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryMapping {
    pub upstream_registry_url: String,
    pub ecr_repository_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_repository_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecr_account_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageMapping {
    pub source_image: String,
    pub destination_image: String,
}

/// Builds the map for the planned images (only those given: pass the ones that ended well).
pub fn container_registry_map(
    images: &[&PlannedImage],
    table: &NamespaceTable,
) -> ContainerRegistryMap {
    let mut map = ContainerRegistryMap::default();
    for image in images {
        match image.method {
            Method::PullThroughCache => {
                let Some(rule) = table.rule_for(image.source.domain()) else {
                    continue;
                };
                let Some(upstream) = rule.upstream_registry() else {
                    continue;
                };
                let mapping = RegistryMapping {
                    upstream_registry_url: upstream.to_string(),
                    ecr_repository_prefix: rule.namespace.clone(),
                    upstream_repository_prefix: None,
                    ecr_account_id: None,
                };
                if !map.registry_mappings.contains(&mapping) {
                    map.registry_mappings.push(mapping);
                }
            }
            Method::Copy => {
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
        let map = OutputMap::from_run(&plan, &run, &table);
        assert_eq!(map.images.len(), 1);
        assert_eq!(
            map.images[0].target,
            "127.0.0.1:5000/dockerhub/ubuntu:20.04"
        );
        assert_eq!(map.container_registry_map.image_mappings.len(), 2);
        let json = serde_json::to_value(&map).unwrap();
        assert!(json.get("containerRegistryMap").is_some(), "{json}");
    }
    use crate::manifest::parse_pull_manifest;
    use crate::plan::plan_pull;

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
        let map = container_registry_map(&images, &table);
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
        let map = container_registry_map(&images, &table);
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
}

//! `verify --registry-map FILE`: a workflow's `containerRegistryMap` checked against the region.
//! Every registry mapping needs what HealthOmics fetches through: a pull-through cache rule of
//! that prefix caching that upstream, or (for a registry HealthOmics copies from itself) the
//! secret its `credentialArn` names. Every image of the manifest must be reached by some mapping.
//! Only read calls are made.

use omx_aws::{Ecr, SecretsManager};
use omx_core::namespace::{healthomics_copies_from, NamespaceTable};
use omx_core::pull_plan::PullPlan;
use omx_core::registry_map::{ContainerRegistryMap, RegistryMapping};
use serde::Serialize;

use crate::verify::CheckStatus;

/// One registry mapping, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingCheck {
    pub upstream_registry_url: String,
    pub ecr_repository_prefix: String,
    pub status: CheckStatus,
    pub reason: String,
}

/// One image of the manifest: whether the map reaches it, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteCheck {
    pub input: String,
    pub status: CheckStatus,
    pub reason: String,
}

/// Everything `verify --registry-map` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapReport {
    pub mappings: Vec<MappingCheck>,
    pub images: Vec<RouteCheck>,
}

impl MapReport {
    pub fn all_passed(&self) -> bool {
        self.mappings.iter().all(|m| m.status != CheckStatus::Fail)
            && self.images.iter().all(|i| i.status != CheckStatus::Fail)
    }
}

/// Checks `map` against the region of `ecr` and `secrets`, and that it reaches every image of
/// `plan`.
pub async fn check_registry_map(
    ecr: &Ecr,
    secrets: &SecretsManager,
    map: &ContainerRegistryMap,
    plan: &PullPlan,
    table: &NamespaceTable,
) -> MapReport {
    let mut report = MapReport::default();
    for mapping in &map.registry_mappings {
        let (status, reason) = check_mapping(ecr, secrets, mapping).await;
        report.mappings.push(MappingCheck {
            upstream_registry_url: mapping.upstream_registry_url.clone(),
            ecr_repository_prefix: mapping.ecr_repository_prefix.clone(),
            status,
            reason,
        });
    }
    for image in &plan.images {
        let (status, reason) = match map.route_to(image, table) {
            Some(route) => (CheckStatus::Pass, route),
            None => (
                CheckStatus::Fail,
                format!(
                    "no mapping reaches it: a run naming it would fail; add an image mapping, or \
                     a registry mapping for {}",
                    image.source.domain()
                ),
            ),
        };
        report.images.push(RouteCheck {
            input: image.input.trim().to_string(),
            status,
            reason,
        });
    }
    report
}

async fn check_mapping(
    ecr: &Ecr,
    secrets: &SecretsManager,
    mapping: &RegistryMapping,
) -> (CheckStatus, String) {
    let upstream = mapping.upstream_registry_url.as_str();
    let prefix = mapping.ecr_repository_prefix.as_str();
    if let Some(arn) = &mapping.credential_arn {
        if !healthomics_copies_from(upstream) {
            return (
                CheckStatus::Fail,
                format!(
                    "HealthOmics copies with a credentialArn only from {}; not from {upstream}",
                    omx_core::namespace::HEALTHOMICS_COPIED_UPSTREAMS.join(", ")
                ),
            );
        }
        // DescribeSecret takes an ARN as well as a name (SecretId).
        return match secrets.secret_arn(arn).await {
            Ok(Some(_)) => (
                CheckStatus::Pass,
                format!(
                    "secret {arn} exists; the workflow role needs secretsmanager:GetSecretValue \
                     on it"
                ),
            ),
            Ok(None) => (
                CheckStatus::Fail,
                format!("no secret {arn} in this region: run `setup --credential-file FILE`"),
            ),
            Err(error) => (CheckStatus::Fail, error.to_string()),
        };
    }
    if healthomics_copies_from(upstream) {
        return (
            CheckStatus::Fail,
            format!(
                "{upstream} has no pull-through cache: HealthOmics copies from it only with a \
                 credentialArn (run `setup --credential-file FILE`, then `map --from-region`)"
            ),
        );
    }
    match ecr.pull_through_cache_rule(prefix).await {
        Ok(Some(rule)) if rule.upstream_url.eq_ignore_ascii_case(upstream) => (
            CheckStatus::Pass,
            format!("pull-through cache rule {prefix} caches {upstream}"),
        ),
        Ok(Some(rule)) => (
            CheckStatus::Fail,
            format!(
                "the pull-through cache rule {prefix} caches {}, not {upstream}",
                rule.upstream_url
            ),
        ),
        Ok(None) => (
            CheckStatus::Fail,
            format!("no pull-through cache rule for prefix {prefix}: run `setup`"),
        ),
        Err(error) => (CheckStatus::Fail, error.to_string()),
    }
}

//! Pull-through-cache rules and the repository creation templates that go with them, so that
//! HealthOmics can pull `<prefix>/...` images that ECR fetches from the upstream registry on first
//! use, into repositories created with our policy and tag.

use aws_sdk_ecr::types::{RctAppliedFor, RepositoryCreationTemplate};
use omx_core::policy::{merge_omics_statement, Grant, PolicyChange};
use omx_core::RegistryHost;

use crate::ecr::{created_by_tag, Ecr};
use crate::error::AwsError;

/// A pull-through-cache rule: repositories under `prefix` mirror `upstream_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullThroughCacheRule {
    pub prefix: String,
    /// The upstream registry's host, e.g. `registry-1.docker.io`.
    pub upstream_url: String,
    /// The Secrets Manager secret holding upstream credentials, for upstreams that require them.
    pub credential_arn: Option<String>,
}

/// What [`Ecr::ensure_pull_through_cache_rule`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    Created,
    /// The same rule was already there.
    Present,
    /// A rule for the prefix exists with another upstream or credential. It is left as it is:
    /// repositories already cached through it would silently change origin otherwise.
    Conflicting(PullThroughCacheRule),
}

/// What [`Ecr::ensure_creation_template`] found or did (or, from
/// [`Ecr::creation_template_state`], would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateState {
    Created,
    /// The template already applies to the wanted scenarios with a policy letting HealthOmics
    /// pull.
    Unchanged,
    /// The existing template was updated: our statement merged into its repository policy and/or
    /// the missing scenarios added to what it applies to. Its other settings were sent back as
    /// they were.
    Updated,
}

/// A way ECR creates repositories that a creation template can apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateScenario {
    /// A pull through a pull-through-cache rule creates the repository.
    PullThroughCache,
    /// A push to a repository that does not exist creates it.
    CreateOnPush,
}

impl TemplateScenario {
    fn sdk(self) -> RctAppliedFor {
        match self {
            TemplateScenario::PullThroughCache => RctAppliedFor::PullThroughCache,
            TemplateScenario::CreateOnPush => RctAppliedFor::CreateOnPush,
        }
    }

    /// The name in the ECR API (`PULL_THROUGH_CACHE`, `CREATE_ON_PUSH`).
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateScenario::PullThroughCache => "PULL_THROUGH_CACHE",
            TemplateScenario::CreateOnPush => "CREATE_ON_PUSH",
        }
    }
}

/// What this tool reads of a repository creation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationTemplate {
    pub prefix: String,
    /// The scenarios it applies to, as ECR names them (`PULL_THROUGH_CACHE`, `REPLICATION`...).
    pub applied_for: Vec<String>,
    /// The policy repositories created under it get.
    pub repository_policy: Option<String>,
}

impl CreationTemplate {
    pub fn applies_to(&self, scenario: TemplateScenario) -> bool {
        self.applied_for
            .iter()
            .any(|name| name == scenario.as_str())
    }
}

/// How an existing template must change to do its job for us; `None` when it already does.
struct TemplateChange {
    repository_policy: Option<String>,
    applied_for: Vec<RctAppliedFor>,
}

impl Ecr {
    /// Every pull-through-cache rule of the registry, all pages of DescribePullThroughCacheRules
    /// (which, asked for no prefix, lists them all: ECR API Reference,
    /// DescribePullThroughCacheRules, `ecrRepositoryPrefixes` and `nextToken`).
    pub async fn pull_through_cache_rules(&self) -> Result<Vec<PullThroughCacheRule>, AwsError> {
        const OPERATION: &str = "DescribePullThroughCacheRules";
        let target = "the registry's pull-through cache rules";
        let mut rules = Vec::new();
        let mut next_token = None;
        loop {
            let described = self
                .client
                .describe_pull_through_cache_rules()
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&self.endpoint, OPERATION, target, e))?;
            for rule in described.pull_through_cache_rules() {
                let (Some(prefix), Some(upstream_url)) =
                    (rule.ecr_repository_prefix(), rule.upstream_registry_url())
                else {
                    return Err(AwsError::unexpected(
                        OPERATION,
                        target,
                        "a rule without ecrRepositoryPrefix or upstreamRegistryUrl",
                    ));
                };
                rules.push(PullThroughCacheRule {
                    prefix: prefix.to_string(),
                    upstream_url: upstream_url.to_string(),
                    credential_arn: rule.credential_arn().map(str::to_string),
                });
            }
            next_token = described.next_token().map(str::to_string);
            if next_token.is_none() {
                return Ok(rules);
            }
        }
    }

    /// The pull-through-cache rule for `prefix`, if there is one.
    pub async fn pull_through_cache_rule(
        &self,
        prefix: &str,
    ) -> Result<Option<PullThroughCacheRule>, AwsError> {
        const OPERATION: &str = "DescribePullThroughCacheRules";
        let described = self
            .client
            .describe_pull_through_cache_rules()
            .ecr_repository_prefixes(prefix)
            .send()
            .await;
        let Some(described) = AwsError::absent_as_none(
            &self.endpoint,
            OPERATION,
            rule_target(prefix),
            described,
            |e| e.is_pull_through_cache_rule_not_found_exception(),
        )?
        else {
            return Ok(None);
        };
        let Some(rule) = described
            .pull_through_cache_rules()
            .iter()
            .find(|rule| rule.ecr_repository_prefix() == Some(prefix))
        else {
            return Ok(None);
        };
        let upstream_url = rule.upstream_registry_url().ok_or_else(|| {
            AwsError::unexpected(OPERATION, rule_target(prefix), "no upstreamRegistryUrl")
        })?;
        Ok(Some(PullThroughCacheRule {
            prefix: prefix.to_string(),
            upstream_url: upstream_url.to_string(),
            credential_arn: rule.credential_arn().map(str::to_string),
        }))
    }

    /// What [`Ecr::ensure_pull_through_cache_rule`] would find, with read calls only: `None` when
    /// there is no rule for `prefix` (it would be created).
    pub async fn pull_through_cache_rule_state(
        &self,
        prefix: &str,
        upstream_url: &str,
        credential_arn: Option<&str>,
    ) -> Result<Option<RuleState>, AwsError> {
        let wanted = PullThroughCacheRule {
            prefix: prefix.to_string(),
            upstream_url: upstream_url.to_string(),
            credential_arn: credential_arn.map(str::to_string),
        };
        Ok(self
            .pull_through_cache_rule(prefix)
            .await?
            .map(|existing| compare_rules(existing, &wanted)))
    }

    /// Makes sure repositories under `prefix` are a pull-through cache of `upstream_url`. Creates
    /// the rule only when there is none; an existing rule pointing elsewhere is reported, never
    /// replaced.
    pub async fn ensure_pull_through_cache_rule(
        &self,
        prefix: &str,
        upstream_url: &str,
        credential_arn: Option<&str>,
    ) -> Result<RuleState, AwsError> {
        let wanted = PullThroughCacheRule {
            prefix: prefix.to_string(),
            upstream_url: upstream_url.to_string(),
            credential_arn: credential_arn.map(str::to_string),
        };
        if let Some(existing) = self.pull_through_cache_rule(prefix).await? {
            return Ok(compare_rules(existing, &wanted));
        }
        let created = self
            .client
            .create_pull_through_cache_rule()
            .ecr_repository_prefix(prefix)
            .upstream_registry_url(upstream_url)
            .set_credential_arn(wanted.credential_arn.clone())
            .send()
            .await;
        match created {
            Ok(_) => Ok(RuleState::Created),
            // Another run created it between our look and our create: judge what it created.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_pull_through_cache_rule_already_exists_exception()) =>
            {
                let existing = self.pull_through_cache_rule(prefix).await?.ok_or_else(|| {
                    AwsError::unexpected(
                        "DescribePullThroughCacheRules",
                        rule_target(prefix),
                        "the rule ECR said exists is not listed",
                    )
                })?;
                Ok(compare_rules(existing, &wanted))
            }
            Err(error) => Err(AwsError::from_sdk(
                &self.endpoint,
                "CreatePullThroughCacheRule",
                rule_target(prefix),
                error,
            )),
        }
    }

    /// Makes sure repositories that ECR creates under `prefix` for a pull-through cache get a
    /// policy letting HealthOmics pull and the `createdBy=omx-ecr-helper` tag: see
    /// [`Ecr::ensure_creation_template_for`].
    pub async fn ensure_creation_template(
        &self,
        prefix: &str,
        description: &str,
    ) -> Result<TemplateState, AwsError> {
        self.ensure_creation_template_for(
            prefix,
            description,
            &[TemplateScenario::PullThroughCache],
        )
        .await
    }

    /// Makes sure repositories that ECR creates under `prefix` in each of `scenarios` get a
    /// policy letting HealthOmics pull and the `createdBy=omx-ecr-helper` tag. An existing
    /// template gets our statement merged into its policy (see [`omx_core::policy`]) and the
    /// missing scenarios added to what it applies to; its tags are left alone, as on existing
    /// repositories.
    pub async fn ensure_creation_template_for(
        &self,
        prefix: &str,
        description: &str,
        scenarios: &[TemplateScenario],
    ) -> Result<TemplateState, AwsError> {
        let target = template_target(prefix);
        let Some(existing) = self.sdk_creation_template(prefix).await? else {
            let created = self
                .client
                .create_repository_creation_template()
                .prefix(prefix)
                .description(description)
                .set_applied_for(Some(scenarios.iter().map(|s| s.sdk()).collect()))
                .repository_policy(Grant::omics_pull().policy_document())
                .resource_tags(created_by_tag())
                .send()
                .await;
            return match created {
                Ok(_) => Ok(TemplateState::Created),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_template_already_exists_exception()) =>
                {
                    let existing = self.sdk_creation_template(prefix).await?.ok_or_else(|| {
                        AwsError::unexpected(
                            "DescribeRepositoryCreationTemplates",
                            &target,
                            "the template ECR said exists is not listed",
                        )
                    })?;
                    self.complete_creation_template(prefix, existing, scenarios)
                        .await
                }
                Err(error) => Err(AwsError::from_sdk(
                    &self.endpoint,
                    "CreateRepositoryCreationTemplate",
                    target,
                    error,
                )),
            };
        };
        self.complete_creation_template(prefix, existing, scenarios)
            .await
    }

    /// What [`Ecr::ensure_creation_template_for`] would do, with read calls only.
    pub async fn creation_template_state(
        &self,
        prefix: &str,
        scenarios: &[TemplateScenario],
    ) -> Result<TemplateState, AwsError> {
        let Some(existing) = self.sdk_creation_template(prefix).await? else {
            return Ok(TemplateState::Created);
        };
        Ok(match template_change(prefix, &existing, scenarios)? {
            Some(_) => TemplateState::Updated,
            None => TemplateState::Unchanged,
        })
    }

    /// The repository creation template for exactly `prefix`, if there is one.
    pub async fn creation_template(
        &self,
        prefix: &str,
    ) -> Result<Option<CreationTemplate>, AwsError> {
        Ok(self
            .sdk_creation_template(prefix)
            .await?
            .map(|template| CreationTemplate {
                prefix: prefix.to_string(),
                applied_for: template
                    .applied_for()
                    .iter()
                    .map(|scenario| scenario.as_str().to_string())
                    .collect(),
                repository_policy: template.repository_policy().map(str::to_string),
            }))
    }

    async fn sdk_creation_template(
        &self,
        prefix: &str,
    ) -> Result<Option<RepositoryCreationTemplate>, AwsError> {
        let described = self
            .client
            .describe_repository_creation_templates()
            .prefixes(prefix)
            .send()
            .await;
        // `TemplateNotFoundException` is not in the model's error list for this operation, but
        // it is what ECR answers for an unknown prefix.
        let described = AwsError::absent_as_none(
            &self.endpoint,
            "DescribeRepositoryCreationTemplates",
            template_target(prefix),
            described,
            |e| e.meta().code() == Some("TemplateNotFoundException"),
        )?;
        Ok(described.and_then(|described| {
            described
                .repository_creation_templates()
                .iter()
                .find(|template| template.prefix() == Some(prefix))
                .cloned()
        }))
    }

    async fn complete_creation_template(
        &self,
        prefix: &str,
        existing: RepositoryCreationTemplate,
        scenarios: &[TemplateScenario],
    ) -> Result<TemplateState, AwsError> {
        let Some(change) = template_change(prefix, &existing, scenarios)? else {
            return Ok(TemplateState::Unchanged);
        };
        // Everything else is sent back unchanged, so the update means the same whether ECR
        // replaces the template or merges into it.
        self.client
            .update_repository_creation_template()
            .prefix(prefix)
            .set_description(existing.description().map(str::to_string))
            .set_encryption_configuration(existing.encryption_configuration().cloned())
            .set_resource_tags(Some(existing.resource_tags().to_vec()))
            .set_image_tag_mutability(existing.image_tag_mutability().cloned())
            .set_image_tag_mutability_exclusion_filters(Some(
                existing.image_tag_mutability_exclusion_filters().to_vec(),
            ))
            .set_repository_policy(change.repository_policy)
            .set_lifecycle_policy(existing.lifecycle_policy().map(str::to_string))
            .set_applied_for(Some(change.applied_for))
            .set_custom_role_arn(existing.custom_role_arn().map(str::to_string))
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(
                    &self.endpoint,
                    "UpdateRepositoryCreationTemplate",
                    template_target(prefix),
                    error,
                )
            })?;
        Ok(TemplateState::Updated)
    }
}

/// The policy and scenarios `existing` must have to serve `scenarios` with our grant; `None`
/// when it already does.
fn template_change(
    prefix: &str,
    existing: &RepositoryCreationTemplate,
    scenarios: &[TemplateScenario],
) -> Result<Option<TemplateChange>, AwsError> {
    let policy =
        merge_omics_statement(existing.repository_policy()).map_err(|source| AwsError::Policy {
            target: template_target(prefix),
            source,
        })?;
    let mut applied_for = existing.applied_for().to_vec();
    let missing: Vec<RctAppliedFor> = scenarios
        .iter()
        .map(|scenario| scenario.sdk())
        .filter(|scenario| !applied_for.contains(scenario))
        .collect();
    if policy == PolicyChange::Unchanged && missing.is_empty() {
        return Ok(None);
    }
    applied_for.extend(missing);
    let repository_policy = match policy {
        PolicyChange::Updated(policy) => Some(policy),
        PolicyChange::Unchanged => existing.repository_policy().map(str::to_string),
    };
    Ok(Some(TemplateChange {
        repository_policy,
        applied_for,
    }))
}

/// Same upstream registry (however spelled: [`RegistryHost`]) and same credential: present;
/// otherwise the existing rule is the conflict to report.
fn compare_rules(existing: PullThroughCacheRule, wanted: &PullThroughCacheRule) -> RuleState {
    let same_upstream =
        RegistryHost::new(&existing.upstream_url) == RegistryHost::new(&wanted.upstream_url);
    if same_upstream && existing.credential_arn == wanted.credential_arn {
        RuleState::Present
    } else {
        RuleState::Conflicting(existing)
    }
}

fn rule_target(prefix: &str) -> String {
    format!("pull-through cache rule {prefix}")
}

fn template_target(prefix: &str) -> String {
    format!("repository creation template {prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(upstream_url: &str, credential_arn: Option<&str>) -> PullThroughCacheRule {
        PullThroughCacheRule {
            prefix: "docker-hub".to_string(),
            upstream_url: upstream_url.to_string(),
            credential_arn: credential_arn.map(str::to_string),
        }
    }

    #[test]
    fn rules_with_the_same_upstream_spelled_differently_are_the_same() {
        let wanted = rule("registry-1.docker.io", Some("arn:secret"));
        for existing in ["registry-1.docker.io", "https://Registry-1.docker.io/"] {
            assert_eq!(
                compare_rules(rule(existing, Some("arn:secret")), &wanted),
                RuleState::Present
            );
        }
    }

    #[test]
    fn another_upstream_or_credential_is_a_conflict_reporting_the_existing_rule() {
        let wanted = rule("registry-1.docker.io", Some("arn:secret"));
        for existing in [
            rule("quay.io", Some("arn:secret")),
            rule("registry-1.docker.io", None),
            rule("registry-1.docker.io", Some("arn:other")),
        ] {
            assert_eq!(
                compare_rules(existing.clone(), &wanted),
                RuleState::Conflicting(existing)
            );
        }
    }
}

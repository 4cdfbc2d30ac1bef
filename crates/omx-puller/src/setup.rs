//! Preparing a region's registry for HealthOmics pull-through caches, idempotently: for each
//! upstream registry a repository creation template (so the repositories ECR creates get a policy
//! letting HealthOmics pull and the `createdBy=omx-ecr-helper` tag), the registry policy statement
//! letting HealthOmics create those repositories and import images into them, and the
//! pull-through-cache rule itself. Existing rules with another upstream are reported, never
//! replaced; with `dry_run` only read calls are made.

use omx_aws::{AwsError, Ecr, PolicyChange, RuleState, TemplateScenario, TemplateState};
use omx_core::namespace::{Method, NamespaceTable};
use omx_core::policy::merge_omics_registry_statement;
use omx_core::registry_host::{DOCKER_HUB, DOCKER_HUB_API_HOST};
use omx_core::strategy::SecretArn;
use serde::Serialize;

/// The prefix of the Secrets Manager secret names ECR's pull-through cache can read.
pub const PTC_SECRET_PREFIX: &str = "ecr-pullthroughcache/";

/// An upstream registry ECR can cache, and the repository prefix its images get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The repository prefix, which is also the namespace images of this upstream land under.
    pub prefix: String,
    /// The registry ECR pulls from (`registry-1.docker.io`).
    pub upstream_url: String,
    /// The registry host image references name (`docker.io`), for the namespace rule.
    pub image_host: String,
    /// The Secrets Manager secret with the upstream credentials, for upstreams that need one.
    pub credential_arn: Option<String>,
    /// What the upstream is, for the template description (`Docker Hub`).
    pub name: String,
    /// It comes from the user's namespace file, which already routes its images to the cache.
    pub from_namespace_file: bool,
}

impl Upstream {
    fn new(prefix: &str, upstream_url: &str, image_host: &str, name: &str) -> Upstream {
        Upstream {
            prefix: prefix.to_string(),
            upstream_url: upstream_url.to_string(),
            image_host: image_host.to_string(),
            credential_arn: None,
            name: name.to_string(),
            from_namespace_file: false,
        }
    }

    fn with_secret(mut self, credential_arn: &str) -> Upstream {
        self.credential_arn = Some(credential_arn.to_string());
        self
    }

    /// The upstreams ECR caches without credentials: `ecr-public`, `quay` and `k8s`.
    pub fn anonymous() -> Vec<Upstream> {
        vec![
            Upstream::new(
                "ecr-public",
                "public.ecr.aws",
                "public.ecr.aws",
                "Amazon ECR Public",
            ),
            Upstream::new("quay", "quay.io", "quay.io", "Quay"),
            Upstream::new("k8s", "registry.k8s.io", "registry.k8s.io", "Kubernetes"),
        ]
    }

    /// Docker Hub under `dockerhub`, the namespace copied Docker Hub images use too.
    pub fn docker_hub(credential_arn: &str) -> Upstream {
        Upstream::new("dockerhub", DOCKER_HUB_API_HOST, DOCKER_HUB, "Docker Hub")
            .with_secret(credential_arn)
    }

    pub fn github(credential_arn: &str) -> Upstream {
        Upstream::new("ghcr", "ghcr.io", "ghcr.io", "GitHub Container Registry")
            .with_secret(credential_arn)
    }

    pub fn gitlab(credential_arn: &str) -> Upstream {
        Upstream::new(
            "gitlab",
            "registry.gitlab.com",
            "registry.gitlab.com",
            "GitLab Container Registry",
        )
        .with_secret(credential_arn)
    }

    /// An Azure container registry, `<name>.azurecr.io`.
    pub fn azure(host: &str, credential_arn: &str) -> Upstream {
        Upstream::new("azure", host, host, "Azure Container Registry").with_secret(credential_arn)
    }

    /// The upstream of a pull-through-cache rule of the user's namespace file: ECR caches its
    /// `upstream_registry` (or its host) under its namespace, anonymously. `None` for copy rules
    /// and rules without an exact host.
    pub fn from_namespace_rule(rule: &omx_core::namespace::NamespaceRule) -> Option<Upstream> {
        if rule.method != Method::PullThroughCache {
            return None;
        }
        let host = rule.canonical_host()?;
        let mut upstream = Upstream::new(
            &rule.namespace,
            rule.upstream_registry().unwrap_or(host),
            host,
            &format!("{host} (namespace file)"),
        );
        upstream.from_namespace_file = true;
        Some(upstream)
    }

    /// The rule a namespace file (`--namespaces`) needs so that `pull` primes this upstream's
    /// images through the cache instead of copying them, or `None` when the built-in table
    /// already does.
    pub fn namespace_rule(&self) -> Option<serde_json::Value> {
        if self.from_namespace_file {
            return None;
        }
        let builtin = NamespaceTable::builtin();
        let covered = builtin.rule_for(&self.image_host).is_some_and(|rule| {
            rule.namespace == self.prefix
                && rule.method == Method::PullThroughCache
                && rule.upstream_registry() == Some(self.upstream_url.as_str())
        });
        if covered {
            return None;
        }
        let mut rule = serde_json::json!({
            "hosts": [self.image_host],
            "namespace": self.prefix,
            "method": "pull-through-cache",
        });
        if self.upstream_url != self.image_host {
            rule["upstream_registry"] = serde_json::json!(self.upstream_url);
        }
        Some(rule)
    }
}

/// Checks that `arn` names a Secrets Manager secret ECR's pull-through cache can use: its name
/// must start with `ecr-pullthroughcache/`.
pub fn check_credential_arn(arn: &str) -> Result<(), String> {
    SecretArn::parse(arn)?;
    let name = arn.splitn(7, ':').nth(6).unwrap_or_default();
    match name.strip_prefix(PTC_SECRET_PREFIX) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "secret {name:?} cannot be used by a pull-through-cache rule: ECR only reads secrets \
             whose name starts with {PTC_SECRET_PREFIX} (create one named e.g. \
             {PTC_SECRET_PREFIX}docker-hub)"
        )),
    }
}

/// The region of a secret ARN.
fn credential_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3)
}

/// How [`setup_registry`] runs.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The registry's account, for the ARNs in the registry policy.
    pub account: String,
    /// Read and report; change nothing.
    pub dry_run: bool,
    /// What the creation templates apply to.
    pub template_scenarios: Vec<TemplateScenario>,
}

impl SetupOptions {
    /// Templates for pull-through-cache repositories and for pushes that create repositories
    /// under the same prefixes.
    pub fn new(account: &str, dry_run: bool) -> SetupOptions {
        SetupOptions {
            account: account.to_string(),
            dry_run,
            template_scenarios: vec![
                TemplateScenario::PullThroughCache,
                TemplateScenario::CreateOnPush,
            ],
        }
    }
}

/// What one step did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    WouldCreate,
    WouldUpdate,
    /// A rule for the prefix points elsewhere; it was left as it is.
    Conflict,
    Failed,
    /// Not attempted: an earlier step of the same prefix conflicted or failed.
    Skipped,
}

impl Action {
    pub fn is_problem(self) -> bool {
        matches!(self, Action::Conflict | Action::Failed)
    }
}

/// What the step was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    PullThroughCacheRule,
    CreationTemplate,
    RegistryPolicy,
    /// The Secrets Manager secret of a registry HealthOmics copies from.
    CredentialSecret,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::PullThroughCacheRule => "pull-through cache rule",
            Resource::CreationTemplate => "creation template",
            Resource::RegistryPolicy => "registry policy",
            Resource::CredentialSecret => "credential secret",
        })
    }
}

/// One step of the setup of one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupStep {
    pub prefix: String,
    pub resource: Resource,
    pub action: Action,
    pub detail: String,
}

/// Everything the setup did, in order, and the namespace rules `pull` needs to use the caches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SetupReport {
    pub steps: Vec<SetupStep>,
    /// Rules for a `--namespaces` file: without them `pull` copies these upstreams' images
    /// instead of priming them through their cache.
    pub namespace_rules: Vec<serde_json::Value>,
    /// The secret of each registry HealthOmics copies from, for `--credential HOST=ARN`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<crate::registry_secrets::RegistrySecret>,
}

impl SetupReport {
    /// True when no step conflicted or failed.
    pub fn all_ok(&self) -> bool {
        !self.steps.iter().any(|step| step.action.is_problem())
    }
}

/// Sets up every upstream in turn (template, registry policy, rule), each independently: a
/// conflict or failure stops only the steps of its own prefix.
pub async fn setup_registry(
    ecr: &Ecr,
    upstreams: &[Upstream],
    options: &SetupOptions,
) -> SetupReport {
    let mut report = SetupReport::default();
    let mut registry_policy = RegistryPolicyDraft::default();
    for upstream in upstreams {
        let mut steps = StepLog {
            prefix: &upstream.prefix,
            steps: &mut report.steps,
            stopped: false,
        };
        setup_upstream(ecr, upstream, options, &mut registry_policy, &mut steps).await;
        if let Some(rule) = upstream.namespace_rule() {
            report.namespace_rules.push(rule);
        }
    }
    report
}

/// The steps of one prefix; once one conflicts or fails, the rest are recorded as skipped.
struct StepLog<'a> {
    prefix: &'a str,
    steps: &'a mut Vec<SetupStep>,
    stopped: bool,
}

impl StepLog<'_> {
    fn record(&mut self, resource: Resource, action: Action, detail: String) {
        self.stopped |= action.is_problem();
        self.steps.push(SetupStep {
            prefix: self.prefix.to_string(),
            resource,
            action,
            detail,
        });
    }

    fn failed(&mut self, resource: Resource, error: &AwsError) {
        self.record(resource, Action::Failed, error.to_string());
    }

    fn skip_rest(&mut self, resources: &[Resource]) {
        for resource in resources {
            self.record(
                *resource,
                Action::Skipped,
                "not attempted: an earlier step for this prefix did not succeed".to_string(),
            );
        }
    }
}

async fn setup_upstream(
    ecr: &Ecr,
    upstream: &Upstream,
    options: &SetupOptions,
    registry_policy: &mut RegistryPolicyDraft,
    log: &mut StepLog<'_>,
) {
    use Resource::*;
    let prefix = upstream.prefix.as_str();
    let credential = upstream.credential_arn.as_deref();
    let region = ecr.region().unwrap_or_default();
    if let Some(arn) = credential {
        if credential_region(arn) != Some(region.as_str()) {
            log.record(
                PullThroughCacheRule,
                Action::Failed,
                format!(
                    "the secret {arn} is not in {region}: ECR reads the credentials of a \
                     pull-through-cache rule from a secret in the rule's own region"
                ),
            );
            log.skip_rest(&[CreationTemplate, RegistryPolicy]);
            return;
        }
    }

    // The rule is looked at first: a prefix that caches another upstream is someone else's, and
    // neither its template nor the registry policy is touched for it.
    let rule = match ecr
        .pull_through_cache_rule_state(prefix, &upstream.upstream_url, credential)
        .await
    {
        Ok(rule) => rule,
        Err(error) => {
            log.failed(PullThroughCacheRule, &error);
            log.skip_rest(&[CreationTemplate, RegistryPolicy]);
            return;
        }
    };
    if let Some(RuleState::Conflicting(existing)) = &rule {
        log.record(
            PullThroughCacheRule,
            Action::Conflict,
            format!(
                "{prefix}/ already caches {}{}; left as it is (delete that rule or choose \
                 another prefix to cache {} here)",
                existing.upstream_url,
                existing
                    .credential_arn
                    .as_deref()
                    .map(|arn| format!(" with secret {arn}"))
                    .unwrap_or_default(),
                upstream.upstream_url
            ),
        );
        log.skip_rest(&[CreationTemplate, RegistryPolicy]);
        return;
    }

    // Template and registry policy before the rule, so that the very first pull through a new
    // rule already creates a repository HealthOmics can read.
    let scenarios = &options.template_scenarios;
    let scenario_names: Vec<&str> = scenarios.iter().map(|s| s.as_str()).collect();
    let template = if options.dry_run {
        ecr.creation_template_state(prefix, scenarios).await
    } else {
        let description = format!(
            "omx-ecr-helper: HealthOmics pull-through cache of {}",
            upstream.name
        );
        ecr.ensure_creation_template_for(prefix, &description, scenarios)
            .await
    };
    match template {
        Ok(state) => {
            let (action, detail) = match (state, options.dry_run) {
                (TemplateState::Created, false) => (Action::Created, "created"),
                (TemplateState::Created, true) => (Action::WouldCreate, "would create"),
                (TemplateState::Updated, false) => (Action::Updated, "updated"),
                (TemplateState::Updated, true) => (Action::WouldUpdate, "would update"),
                (TemplateState::Unchanged, _) => (Action::Unchanged, "already in place"),
            };
            log.record(
                CreationTemplate,
                action,
                format!(
                    "{detail}: {} with the HealthOmics pull policy and createdBy=omx-ecr-helper",
                    scenario_names.join(", ")
                ),
            );
        }
        Err(error) => {
            log.failed(CreationTemplate, &error);
            log.skip_rest(&[RegistryPolicy, PullThroughCacheRule]);
            return;
        }
    }

    let policy = if options.dry_run {
        registry_policy.merge(ecr, &options.account, prefix).await
    } else {
        ecr.ensure_omics_registry_policy(&options.account, prefix)
            .await
    };
    match policy {
        Ok(change) => {
            let action = match (change, options.dry_run) {
                (PolicyChange::Unchanged, _) => Action::Unchanged,
                (PolicyChange::Updated(_), false) => Action::Updated,
                (PolicyChange::Updated(_), true) => Action::WouldUpdate,
            };
            log.record(
                RegistryPolicy,
                action,
                format!(
                    "omics.amazonaws.com may ecr:CreateRepository and ecr:BatchImportUpstreamImage \
                     on {prefix}/*"
                ),
            );
        }
        Err(error) => {
            log.failed(RegistryPolicy, &error);
            log.skip_rest(&[PullThroughCacheRule]);
            return;
        }
    }

    let what = format!(
        "{prefix}/ caches {}{}",
        upstream.upstream_url,
        credential
            .map(|arn| format!(" with secret {arn}"))
            .unwrap_or_default()
    );
    let rule = match (rule, options.dry_run) {
        (Some(_), _) => Ok(Action::Unchanged),
        (None, true) => Ok(Action::WouldCreate),
        (None, false) => ecr
            .ensure_pull_through_cache_rule(prefix, &upstream.upstream_url, credential)
            .await
            .map(|state| match state {
                RuleState::Created => Action::Created,
                RuleState::Present => Action::Unchanged,
                RuleState::Conflicting(_) => Action::Conflict,
            }),
    };
    match rule {
        Ok(Action::Conflict) => log.record(
            PullThroughCacheRule,
            Action::Conflict,
            format!("{what}: another rule for {prefix}/ appeared meanwhile; left as it is"),
        ),
        Ok(action) => log.record(PullThroughCacheRule, action, what),
        Err(error) => log.failed(PullThroughCacheRule, &error),
    }
}

/// The registry policy as a dry run would leave it: read once, then each prefix's statement
/// merged in memory.
#[derive(Default)]
struct RegistryPolicyDraft {
    /// `None` until read; then the (possibly merged) policy text, if any.
    text: Option<Option<String>>,
}

impl RegistryPolicyDraft {
    async fn merge(
        &mut self,
        ecr: &Ecr,
        account: &str,
        prefix: &str,
    ) -> Result<PolicyChange, AwsError> {
        let region = ecr.region().ok_or(AwsError::NoRegion)?;
        if self.text.is_none() {
            self.text = Some(ecr.registry_policy().await?);
        }
        let current = self.text.as_ref().and_then(|text| text.as_deref());
        let change = merge_omics_registry_statement(current, &region, account, prefix).map_err(
            |source| AwsError::Policy {
                target: "the registry".to_string(),
                source,
            },
        )?;
        if let PolicyChange::Updated(merged) = &change {
            self.text = Some(Some(merged.clone()));
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_must_start_with_the_pull_through_cache_prefix() {
        let good =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf";
        assert_eq!(check_credential_arn(good), Ok(()));
        let error = check_credential_arn(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:dockerhub-AbCdEf",
        )
        .unwrap_err();
        assert!(
            error.contains("\"dockerhub-AbCdEf\"") && error.contains("ecr-pullthroughcache/"),
            "{error}"
        );
        for bad in [
            "ecr-pullthroughcache/hub",
            "arn:aws:s3:::bucket",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/",
        ] {
            assert!(check_credential_arn(bad).is_err(), "{bad}");
        }
        assert_eq!(credential_region(good), Some("us-east-1"));
    }

    #[test]
    fn namespace_rules_are_needed_where_the_builtin_table_copies() {
        let secret = "arn:aws:secretsmanager:us-east-1:1:secret:ecr-pullthroughcache/x";
        let rules: Vec<Option<serde_json::Value>> = Upstream::anonymous()
            .iter()
            .chain([Upstream::docker_hub(secret)].iter())
            .map(Upstream::namespace_rule)
            .collect();
        assert_eq!(
            rules,
            vec![
                None,
                None,
                Some(
                    serde_json::json!({"hosts": ["registry.k8s.io"], "namespace": "k8s",
                    "method": "pull-through-cache"})
                ),
                Some(
                    serde_json::json!({"hosts": ["docker.io"], "namespace": "dockerhub",
                    "method": "pull-through-cache", "upstream_registry": "registry-1.docker.io"})
                ),
            ]
        );
        // The rule printed for Docker Hub is one the namespace file accepts, and it makes
        // Docker Hub a pull-through source that keeps `library/`, as ECR needs.
        let file = serde_json::json!({"rules": [rules[3]]}).to_string();
        let table = NamespaceTable::builtin().with_user_rules(&file).unwrap();
        let source = table.parse_source("ubuntu:22.04").unwrap();
        let mapping = table.map(&source).unwrap();
        assert_eq!(mapping.repository, "dockerhub/library/ubuntu");
        assert_eq!(mapping.method, Method::PullThroughCache);
    }
}

//! Checking that every image of a plan is ready for HealthOmics: it is in the private registry
//! (or a pull-through-cache rule will fetch it on first use), HealthOmics may pull it, it runs on
//! linux/amd64, and it is in the region the workflows run in. Only read calls are made.

use futures_util::stream::{self, StreamExt};
use omx_aws::TemplateScenario;
use omx_core::manifest_file::EntryError;
use omx_core::namespace::{Method, NamespaceTable};
use omx_core::policy::{merge_omics_registry_statement, omics_grants, PolicyChange};
use omx_core::pull_plan::{PlannedImage, PullPlan, TargetRegistry};
use omx_core::strategy::Strategy;
use omx_core::RegistryHost;
use omx_registry::{ManifestRef, RegistryClient, Repository};
use serde::Serialize;

use crate::platforms::platforms_of;
use crate::target::ResolvedTarget;

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// The private image exists, or a pull-through-cache rule will fetch it.
    Image,
    /// HealthOmics may pull it: the repository policy, or for an image not cached yet the
    /// creation template of its prefix and the registry policy's import statement.
    OmicsAccess,
    /// It has a linux/amd64 variant, the only platform HealthOmics runs.
    LinuxAmd64,
    /// It is in the region the workflows run in.
    Region,
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckKind::Image => "image",
            CheckKind::OmicsAccess => "omics access",
            CheckKind::LinuxAmd64 => "linux/amd64",
            CheckKind::Region => "region",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not checkable: what it looks at does not exist, or does not apply to this registry.
    Skip,
}

/// What fixes a failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fix {
    /// `omx-ecr-helper pull` of the manifest: it copies or primes missing images and gives every
    /// repository the HealthOmics policy.
    Pull,
    /// `pull` into the registry of the workflow region.
    PullInto { region: String },
    /// `omx-ecr-helper setup`: pull-through-cache rules, creation templates, registry policy.
    Setup,
    /// Another image, or a rebuild, with a linux/amd64 variant.
    Amd64Image,
}

/// One check of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub kind: CheckKind,
    pub status: CheckStatus,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

impl Check {
    fn pass(kind: CheckKind, reason: impl Into<String>) -> Check {
        Check {
            kind,
            status: CheckStatus::Pass,
            reason: reason.into(),
            fix: None,
        }
    }

    fn fail(kind: CheckKind, reason: impl Into<String>, fix: Option<Fix>) -> Check {
        Check {
            kind,
            status: CheckStatus::Fail,
            reason: reason.into(),
            fix,
        }
    }

    fn skip(kind: CheckKind, reason: impl Into<String>) -> Check {
        Check {
            kind,
            status: CheckStatus::Skip,
            reason: reason.into(),
            fix: None,
        }
    }
}

/// Every check of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageVerification {
    pub input: String,
    pub source: String,
    pub target: String,
    pub checks: Vec<Check>,
}

impl ImageVerification {
    pub fn passed(&self) -> bool {
        self.checks
            .iter()
            .all(|check| check.status != CheckStatus::Fail)
    }
}

/// The verification of a whole plan, images in plan order, with the plan's invalid entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub images: Vec<ImageVerification>,
    pub errors: Vec<EntryError>,
}

impl VerifyReport {
    /// True when every check of every image passed (or did not apply) and no entry was invalid.
    pub fn all_passed(&self) -> bool {
        self.errors.is_empty() && self.images.iter().all(ImageVerification::passed)
    }
}

/// Where a private image is.
enum Presence {
    /// In the registry.
    Stored,
    /// Not stored yet, but the pull-through-cache rule of `prefix` fetches it on first pull.
    Cached { prefix: String },
    /// Not there, for the reason given in the failed image check.
    Missing,
}

/// Checks images in one target registry.
pub struct Verifier {
    client: RegistryClient,
    target: ResolvedTarget,
    table: NamespaceTable,
    workflow_region: Option<String>,
    concurrency: usize,
}

impl Verifier {
    /// `client` must reach the target's `api_host` with credentials for it (for ECR, an
    /// [`crate::EcrCredentials`] in its chain) and the upstream registries. `workflow_region` is
    /// where the workflows run; `None` means the target's own region.
    pub fn new(
        client: RegistryClient,
        target: ResolvedTarget,
        table: NamespaceTable,
        workflow_region: Option<String>,
    ) -> Verifier {
        Verifier {
            client,
            target,
            table,
            workflow_region,
            concurrency: 8,
        }
    }

    /// How many images are checked at once (8 by default).
    pub fn with_concurrency(mut self, concurrency: usize) -> Verifier {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Checks every planned image.
    pub async fn verify(&self, plan: &PullPlan) -> VerifyReport {
        let mut images: Vec<(usize, ImageVerification)> =
            stream::iter(plan.images.iter().enumerate())
                .map(|(position, image)| async move { (position, self.verify_image(image).await) })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        images.sort_by_key(|(position, _)| *position);
        VerifyReport {
            images: images.into_iter().map(|(_, image)| image).collect(),
            errors: plan.errors.clone(),
        }
    }

    /// Checks one image: presence, HealthOmics access, linux/amd64 and region, in that order.
    pub async fn verify_image(&self, image: &PlannedImage) -> ImageVerification {
        let checks = if image.strategy == Strategy::Native {
            // Nothing of it is in ECR before a run asks for it: what HealthOmics needs is the
            // workflow's registry mapping and the registry's secret.
            vec![Check::skip(
                CheckKind::Image,
                "HealthOmics fetches it on first use (strategy native); nothing to find in ECR yet",
            )]
        } else {
            let (presence, image_check) = self.presence(image).await;
            vec![
                image_check,
                self.omics_access(image, &presence).await,
                self.platform(image, &presence).await,
                self.region(),
            ]
        };
        ImageVerification {
            input: image.input.trim().to_string(),
            source: image.source.to_string(),
            target: image.target.clone(),
            checks,
        }
    }

    async fn presence(&self, image: &PlannedImage) -> (Presence, Check) {
        use CheckKind::Image;
        let via_cache = image.method == Method::PullThroughCache;
        if let (Some(ecr), true) = (&self.target.ecr, via_cache) {
            // Asked through the control plane: a registry request for an image not cached yet
            // would make ECR fetch it, and checking must not change anything.
            if let (Some(tag), None) = (&image.target_tag, image.source.digest()) {
                match ecr.image_digest(&image.target_repository, tag).await {
                    Ok(Some(digest)) => {
                        return (
                            Presence::Stored,
                            Check::pass(Image, format!("cached, {digest}")),
                        )
                    }
                    Ok(None) => {}
                    Err(error) => {
                        return (
                            Presence::Missing,
                            Check::fail(Image, error.to_string(), None),
                        )
                    }
                }
            }
            return self.cache_rule(image).await;
        }
        let reference = match self.target.api_reference(image) {
            Ok(reference) => reference,
            Err(error) => {
                return (
                    Presence::Missing,
                    Check::fail(Image, format!("invalid target reference: {error}"), None),
                )
            }
        };
        // A pinned `tag@digest` is ready when its tag serves the pin: a workflow naming the tag
        // would otherwise run another image than the lock says.
        let pinned = reference.digest().filter(|_| reference.tag().is_some());
        let asked = match pinned {
            Some(_) => reference.without_digest(),
            None => reference.clone(),
        };
        match self.client.head_manifest(&asked).await {
            Ok(Some(found)) => match pinned.filter(|pin| **pin != found.digest) {
                Some(pin) => (
                    Presence::Missing,
                    Check::fail(
                        Image,
                        format!("{asked} points at {}, not the pinned {pin}", found.digest),
                        Some(Fix::Pull),
                    ),
                ),
                None => (
                    Presence::Stored,
                    Check::pass(Image, format!("present, {}", found.digest)),
                ),
            },
            Ok(None) => (
                Presence::Missing,
                Check::fail(
                    Image,
                    format!("{} is not in the registry", image.target),
                    Some(Fix::Pull),
                ),
            ),
            Err(error) => (
                Presence::Missing,
                Check::fail(Image, error.to_string(), None),
            ),
        }
    }

    /// An image not cached yet is fine when the rule of its prefix caches its upstream.
    async fn cache_rule(&self, image: &PlannedImage) -> (Presence, Check) {
        use CheckKind::Image;
        let ecr = self
            .target
            .ecr
            .as_ref()
            .expect("only asked for ECR targets");
        let Some(rule) = self.table.rule_for(image.source.domain()) else {
            return (
                Presence::Missing,
                Check::fail(
                    Image,
                    format!("no namespace rule for {}", image.source.domain()),
                    None,
                ),
            );
        };
        let prefix = rule.namespace.clone();
        let upstream = rule.upstream_registry().unwrap_or(image.source.domain());
        match ecr.pull_through_cache_rule(&prefix).await {
            Ok(Some(existing)) if RegistryHost::new(&existing.upstream_url) == upstream.into() => (
                Presence::Cached {
                    prefix: prefix.clone(),
                },
                Check::pass(
                    Image,
                    format!(
                        "not cached yet; the pull-through cache rule {prefix}/ fetches it from \
                         {upstream} on first pull"
                    ),
                ),
            ),
            Ok(Some(existing)) => (
                Presence::Missing,
                Check::fail(
                    Image,
                    format!(
                        "not cached, and the pull-through cache rule {prefix}/ caches {}, not \
                         {upstream}",
                        existing.upstream_url
                    ),
                    Some(Fix::Setup),
                ),
            ),
            Ok(None) => (
                Presence::Missing,
                Check::fail(
                    Image,
                    format!(
                        "not cached, and there is no pull-through cache rule for {prefix}/ to \
                         fetch it from {upstream}"
                    ),
                    Some(Fix::Setup),
                ),
            ),
            Err(error) => (
                Presence::Missing,
                Check::fail(Image, error.to_string(), None),
            ),
        }
    }

    async fn omics_access(&self, image: &PlannedImage, presence: &Presence) -> Check {
        use CheckKind::OmicsAccess;
        let Some(ecr) = &self.target.ecr else {
            return Check::skip(
                OmicsAccess,
                "not ECR: HealthOmics pulls only from ECR private repositories",
            );
        };
        match presence {
            Presence::Missing => Check::skip(OmicsAccess, "no image to check"),
            Presence::Stored => match ecr.repository_policy(&image.target_repository).await {
                Ok(Some(policy)) if omics_grants(&policy) => Check::pass(
                    OmicsAccess,
                    "the repository policy lets omics.amazonaws.com pull",
                ),
                Ok(Some(_)) => Check::fail(
                    OmicsAccess,
                    format!(
                        "the policy of repository {} does not let omics.amazonaws.com pull",
                        image.target_repository
                    ),
                    Some(Fix::Pull),
                ),
                Ok(None) => Check::fail(
                    OmicsAccess,
                    format!(
                        "repository {} has no policy, so omics.amazonaws.com cannot pull",
                        image.target_repository
                    ),
                    Some(Fix::Pull),
                ),
                Err(error) => Check::fail(OmicsAccess, error.to_string(), Some(Fix::Pull)),
            },
            Presence::Cached { prefix } => match ecr.creation_template(prefix).await {
                Ok(Some(template))
                    if template.applies_to(TemplateScenario::PullThroughCache)
                        && template
                            .repository_policy
                            .as_deref()
                            .is_some_and(omics_grants) =>
                {
                    self.registry_import_grant(ecr, prefix).await
                }
                Ok(Some(_)) => Check::fail(
                    OmicsAccess,
                    format!(
                        "the creation template {prefix} does not give pull-through-cache \
                         repositories a policy letting omics.amazonaws.com pull"
                    ),
                    Some(Fix::Setup),
                ),
                Ok(None) => Check::fail(
                    OmicsAccess,
                    format!(
                        "no creation template for {prefix}, so the repository the cache creates \
                         will not let omics.amazonaws.com pull"
                    ),
                    Some(Fix::Setup),
                ),
                Err(error) => Check::fail(OmicsAccess, error.to_string(), Some(Fix::Setup)),
            },
        }
    }

    /// The first pull through a cache is HealthOmics' own: the registry policy must let it create
    /// the repository and import the image.
    async fn registry_import_grant(&self, ecr: &omx_aws::Ecr, prefix: &str) -> Check {
        use CheckKind::OmicsAccess;
        let TargetRegistry::Ecr {
            account: Some(account),
            region: Some(region),
            ..
        } = &self.target.registry
        else {
            return Check::fail(OmicsAccess, "the ECR account and region are unknown", None);
        };
        let policy = match ecr.registry_policy().await {
            Ok(policy) => policy,
            Err(error) => return Check::fail(OmicsAccess, error.to_string(), Some(Fix::Setup)),
        };
        // A merge that changes nothing means the policy already grants the import.
        match merge_omics_registry_statement(policy.as_deref(), region, account, prefix) {
            Ok(PolicyChange::Unchanged) => Check::pass(
                OmicsAccess,
                format!(
                    "omics.amazonaws.com may create {prefix}/ repositories and import into them, \
                     and the creation template {prefix} lets it pull"
                ),
            ),
            Ok(PolicyChange::Updated(_)) => Check::fail(
                OmicsAccess,
                format!(
                    "the registry policy does not let omics.amazonaws.com create {prefix}/ \
                     repositories and import upstream images into them"
                ),
                Some(Fix::Setup),
            ),
            Err(error) => Check::fail(
                OmicsAccess,
                format!("the registry policy: {error}"),
                Some(Fix::Setup),
            ),
        }
    }

    async fn platform(&self, image: &PlannedImage, presence: &Presence) -> Check {
        use CheckKind::LinuxAmd64;
        let (reference, whose) = match presence {
            Presence::Missing => return Check::skip(LinuxAmd64, "no image to check"),
            Presence::Cached { .. } => (image.source.clone(), "upstream: "),
            Presence::Stored => match self.target.api_reference(image) {
                Ok(reference) => (reference, ""),
                Err(error) => return Check::fail(LinuxAmd64, error.to_string(), None),
            },
        };
        let found = platforms_of(
            &self.client,
            &Repository::of(&reference),
            ManifestRef::of(&reference),
        )
        .await;
        match found {
            Ok(found) if found.has_linux_amd64() => {
                Check::pass(LinuxAmd64, format!("{whose}{found}"))
            }
            Ok(found) => Check::fail(
                LinuxAmd64,
                format!("{whose}{found}; HealthOmics runs linux/amd64 only"),
                Some(Fix::Amd64Image),
            ),
            Err(error) => Check::fail(LinuxAmd64, format!("{whose}{error}"), None),
        }
    }

    fn region(&self) -> Check {
        use CheckKind::Region;
        let TargetRegistry::Ecr {
            region: Some(region),
            ..
        } = &self.target.registry
        else {
            return Check::skip(
                Region,
                "not ECR: HealthOmics pulls only from ECR in the workflow's region",
            );
        };
        match &self.workflow_region {
            Some(wanted) if wanted != region => Check::fail(
                Region,
                format!("in {region}; HealthOmics in {wanted} pulls only from ECR in {wanted}"),
                Some(Fix::PullInto {
                    region: wanted.clone(),
                }),
            ),
            _ => Check::pass(Region, format!("in {region}")),
        }
    }
}

//! The registry images go to, resolved: the name users see in private URIs, the host the registry
//! API is reached on, and ECR's control plane when the target is ECR.

use omx_aws::{AwsContext, AwsError, Ecr};
use omx_core::namespace::EcrEndpoint;
use omx_core::pull_plan::{PlannedImage, TargetRegistry};
use omx_core::{Reference, ReferenceError};

/// How to reach AWS when the target is ECR.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// A registry endpoint (`host[:port]`) that stands in for the ECR registry host in registry
    /// API calls, as `AWS_ENDPOINT_URL_ECR` does for the control plane: the ECR token is sent to
    /// it, while private URIs keep naming the ECR host.
    pub ecr_registry_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot use ECR as the target: {0}")]
    Aws(#[from] AwsError),
    #[error(
        "--registry names region {given} but the AWS configuration is for {configured}; \
         pass --region {given} or use a profile of that region"
    )]
    RegionMismatch { given: String, configured: String },
}

/// The target registry of a run, with everything needed to talk to it.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// The registry as named in private URIs, with account and region filled in.
    pub registry: TargetRegistry,
    /// Where registry API calls go: the registry host, or the endpoint standing in for it.
    pub api_host: String,
    /// ECR's control plane (repositories, policies, tokens); `None` for other registries.
    pub ecr: Option<Ecr>,
    /// The region's Secrets Manager, where `setup` keeps the credentials of registries
    /// HealthOmics copies from; `None` for other registries.
    pub secrets: Option<omx_aws::SecretsManager>,
}

impl ResolvedTarget {
    /// A plain OCI registry: no control plane, no ECR-only steps.
    pub fn registry(host: &str) -> ResolvedTarget {
        ResolvedTarget {
            registry: TargetRegistry::Oci {
                host: host.to_string(),
            },
            api_host: host.to_string(),
            ecr: None,
            secrets: None,
        }
    }

    /// Resolves `registry`: for ECR, loads the AWS configuration and fills in the account (STS)
    /// and region that the user left out.
    pub async fn resolve(
        registry: &TargetRegistry,
        options: &TargetOptions,
    ) -> Result<ResolvedTarget, TargetError> {
        let TargetRegistry::Ecr {
            account,
            region,
            endpoint,
        } = registry
        else {
            return Ok(ResolvedTarget::registry(&registry.host()));
        };
        let wanted_region = region.clone().or_else(|| options.region.clone());
        let context = AwsContext::load(wanted_region, options.profile.clone()).await?;
        let mut target = Self::for_ecr(context, account.clone(), region.clone(), options).await?;
        // A FIPS or dual-stack host named on the command line is kept as named.
        if *endpoint != EcrEndpoint::Standard {
            target.set_endpoint(*endpoint, options);
        }
        Ok(target)
    }

    /// Names the registry on `endpoint` in private URIs (and API calls, unless an endpoint
    /// stands in for it).
    fn set_endpoint(&mut self, endpoint: EcrEndpoint, options: &TargetOptions) {
        if let TargetRegistry::Ecr { endpoint: ours, .. } = &mut self.registry {
            *ours = endpoint;
        }
        if options.ecr_registry_endpoint.is_none() {
            self.api_host = self.registry.host();
        }
    }

    /// Resolves an ECR target from an already loaded AWS context (tests point one at an emulator).
    pub async fn for_ecr(
        context: AwsContext,
        account: Option<String>,
        region: Option<String>,
        options: &TargetOptions,
    ) -> Result<ResolvedTarget, TargetError> {
        if let Some(given) = &region {
            if given != context.region() {
                return Err(TargetError::RegionMismatch {
                    given: given.clone(),
                    configured: context.region().to_string(),
                });
            }
        }
        let account = match account {
            Some(account) => account,
            None => context.account_id().await?.to_string(),
        };
        // The AWS SDKs' `use_fips_endpoint` / `use_dualstack_endpoint` settings (profile or
        // AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT) choose the registry host too.
        let config = context.sdk_config();
        let registry = TargetRegistry::Ecr {
            account: Some(account),
            region: Some(context.region().to_string()),
            endpoint: EcrEndpoint::of_settings(
                config.use_fips().unwrap_or(false),
                config.use_dual_stack().unwrap_or(false),
            ),
        };
        let api_host = options
            .ecr_registry_endpoint
            .clone()
            .unwrap_or_else(|| registry.host());
        Ok(ResolvedTarget {
            registry,
            api_host,
            ecr: Some(context.ecr()),
            secrets: Some(context.secrets_manager()),
        })
    }

    /// Where registry API calls for `image`'s target go: its private repository, tag and digest on
    /// [`ResolvedTarget::api_host`].
    pub fn api_reference(&self, image: &PlannedImage) -> Result<Reference, ReferenceError> {
        Reference::new(
            &self.api_host,
            &image.target_repository,
            image.target_tag.as_deref(),
            image.source.digest().cloned(),
        )
    }

    /// The hosts an ECR token must be offered to.
    pub fn ecr_hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.registry.host()];
        if self.api_host != hosts[0] {
            hosts.push(self.api_host.clone());
        }
        hosts
    }
}

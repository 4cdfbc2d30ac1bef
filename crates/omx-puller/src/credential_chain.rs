//! The credentials a run's registry client asks, in the one order every caller uses (the CLI's
//! commands, the Lambdas, the tests): credentials given for a host explicitly, then ECR's token,
//! then the Docker configuration. Where a caller stops (a Lambda has no Docker configuration, a
//! command without an AWS target no ECR token) is its choice; the order is not.

use std::sync::Arc;

use omx_aws::Ecr;
use omx_registry::{
    ChainCredentials, CredentialError, CredentialProvider, DockerConfigCredentials,
    StaticCredentials,
};

use crate::{EcrCredentials, ResolvedTarget};

/// Which ECR private registries an ECR token is offered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcrReach {
    /// Only the target's hosts (a build pushes to the target and reads nothing else from ECR).
    Target,
    /// The target's hosts and every other ECR private registry, with a token of its region:
    /// a source in another account or region, or a pull-through cache's upstream.
    AnyRegistry,
}

/// The chain under construction: each `then_*` adds the next provider asked.
#[derive(Default)]
pub struct CredentialChain {
    providers: Vec<Arc<dyn CredentialProvider>>,
}

impl CredentialChain {
    /// A chain that first asks `explicit` (the command line's `--src-creds`/`--dest-creds`).
    pub fn explicit(explicit: StaticCredentials) -> CredentialChain {
        CredentialChain {
            providers: vec![Arc::new(explicit)],
        }
    }

    /// A chain that starts with ECR's token for `target` (nothing when it is not ECR).
    pub fn ecr(target: &ResolvedTarget, reach: EcrReach) -> CredentialChain {
        CredentialChain::default().then_ecr(target, reach)
    }

    /// Then ECR's token for `target`'s registry hosts when it is ECR, as far as `reach` says.
    pub fn then_ecr(self, target: &ResolvedTarget, reach: EcrReach) -> CredentialChain {
        match &target.ecr {
            Some(ecr) => self.then_ecr_of(ecr.clone(), target.ecr_hosts(), reach),
            None => self,
        }
    }

    /// Then the token of `ecr`'s region for `hosts` (and, as `reach` says, other registries):
    /// for a run whose ECR registry is a source, not a resolved target.
    pub fn then_ecr_of(mut self, ecr: Ecr, hosts: Vec<String>, reach: EcrReach) -> CredentialChain {
        let credentials = EcrCredentials::new(ecr, hosts);
        let credentials = match reach {
            EcrReach::Target => credentials,
            EcrReach::AnyRegistry => credentials.with_other_registries(),
        };
        self.providers.push(Arc::new(credentials));
        self
    }

    /// Then the Docker configuration of the environment (`DOCKER_CONFIG`, `~/.docker`) and its
    /// credential helpers: what `docker login` left for sources and upstreams.
    pub fn then_docker_config(mut self) -> Result<CredentialChain, CredentialError> {
        self.providers
            .push(Arc::new(DockerConfigCredentials::from_environment()?));
        Ok(self)
    }

    pub fn build(self) -> Arc<dyn CredentialProvider> {
        Arc::new(ChainCredentials::new(self.providers))
    }
}

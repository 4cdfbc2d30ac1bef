//! Registry credentials for ECR: the `docker login` of `GetAuthorizationToken`, done in-process,
//! for the target registry and for every other ECR private registry a run reads from.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use omx_aws::Ecr;
use omx_core::RegistryHost;
use omx_registry::{Credential, CredentialError, CredentialProvider};

/// Answers with an ECR token (`AWS:<token>`, with its expiry so the client renews it in time) for
/// the target's ECR registry hosts and, with [`EcrCredentials::with_other_registries`], for any
/// other ECR private registry host (a source in another region or account), with a token of that
/// host's region. Other registries get nothing.
#[derive(Debug)]
pub struct EcrCredentials {
    ecr: Ecr,
    hosts: Vec<RegistryHost>,
    other_registries: bool,
    /// Clients for the regions of other ECR registries, each with its own token cache.
    regional: Mutex<HashMap<String, Ecr>>,
}

impl EcrCredentials {
    /// `hosts` are the registry hosts the token of `ecr`'s region is good for: the ECR host, and
    /// the endpoint that stands in for it when one is configured.
    pub fn new(ecr: Ecr, hosts: Vec<String>) -> EcrCredentials {
        EcrCredentials {
            ecr,
            hosts: hosts.iter().map(|host| RegistryHost::new(host)).collect(),
            other_registries: false,
            regional: Mutex::new(HashMap::new()),
        }
    }

    /// Also answers for any other ECR private registry host, with a token of its region: the
    /// token works for every registry of that region the caller may access, whatever the
    /// account (ECR API Reference, GetAuthorizationToken: `registryIds` is deprecated for that
    /// reason).
    pub fn with_other_registries(mut self) -> EcrCredentials {
        self.other_registries = true;
        self
    }

    /// The client whose token `registry` takes, if any.
    fn client_for(&self, registry: &str) -> Option<Ecr> {
        let registry = RegistryHost::new(registry);
        if self.hosts.contains(&registry) {
            return Some(self.ecr.clone());
        }
        if !self.other_registries {
            return None;
        }
        let region = registry.ecr()?.region;
        if self.ecr.region().as_deref() == Some(region.as_str()) {
            return Some(self.ecr.clone());
        }
        let mut regional = self
            .regional
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(
            regional
                .entry(region.clone())
                .or_insert_with(|| self.ecr.for_region(&region))
                .clone(),
        )
    }
}

impl CredentialProvider for EcrCredentials {
    fn credentials<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(async move {
            let Some(ecr) = self.client_for(registry) else {
                return Ok(None);
            };
            let token =
                ecr.authorization_token()
                    .await
                    .map_err(|error| CredentialError::Provider {
                        registry: registry.to_string(),
                        reason: error.to_string(),
                    })?;
            Ok(Some(Credential {
                username: token.username,
                password: token.password,
                expires_at: Some(token.expires_at),
            }))
        })
    }

    fn refused<'a>(&'a self, registry: &'a str, credential: &'a Credential) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(ecr) = self.client_for(registry) {
                ecr.forget_token(&credential.password).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecr(region: &str) -> Ecr {
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new(region.to_string()))
            .build();
        Ecr::from_client(aws_sdk_ecr::Client::from_conf(config))
    }

    #[test]
    fn tokens_are_offered_to_the_target_and_on_request_to_other_ecr_registries_by_region() {
        let target = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
        let only_target = EcrCredentials::new(ecr("us-east-1"), vec![target.to_string()]);
        assert!(only_target.client_for(target).is_some());
        assert!(only_target
            .client_for("444455556666.dkr.ecr.eu-west-1.amazonaws.com")
            .is_none());

        let any =
            EcrCredentials::new(ecr("us-east-1"), vec![target.to_string()]).with_other_registries();
        let other = any
            .client_for("444455556666.dkr.ecr.eu-west-1.amazonaws.com")
            .unwrap();
        assert_eq!(other.region().as_deref(), Some("eu-west-1"));
        let same_region = any
            .client_for("444455556666.dkr.ecr.us-east-1.amazonaws.com")
            .unwrap();
        assert_eq!(same_region.region().as_deref(), Some("us-east-1"));
        assert!(any.client_for("quay.io").is_none());
        assert!(any.client_for("127.0.0.1:5000").is_none());
    }
}

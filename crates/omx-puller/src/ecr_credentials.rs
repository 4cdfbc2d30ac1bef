//! Registry credentials for ECR: the `docker login` of `GetAuthorizationToken`, done in-process.

use futures_util::future::BoxFuture;
use omx_aws::Ecr;
use omx_registry::{Credential, CredentialError, CredentialProvider};

/// Answers with an ECR token (`AWS:<token>`, with its expiry so the client renews it in time) for
/// the ECR registry hosts, and with nothing for any other registry.
#[derive(Debug, Clone)]
pub struct EcrCredentials {
    ecr: Ecr,
    hosts: Vec<String>,
}

impl EcrCredentials {
    /// `hosts` are the registry hosts the token is good for: the ECR host, and the endpoint that
    /// stands in for it when one is configured.
    pub fn new(ecr: Ecr, hosts: Vec<String>) -> EcrCredentials {
        EcrCredentials { ecr, hosts }
    }
}

impl CredentialProvider for EcrCredentials {
    fn credentials<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(async move {
            if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(registry)) {
                return Ok(None);
            }
            let token = self.ecr.authorization_token().await.map_err(|error| {
                CredentialError::Provider {
                    registry: registry.to_string(),
                    reason: error.to_string(),
                }
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
            if self.hosts.iter().any(|h| h.eq_ignore_ascii_case(registry)) {
                self.ecr.forget_token(&credential.password).await;
            }
        })
    }
}

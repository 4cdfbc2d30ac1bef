//! The ECR control plane: private repositories, their policies, image lookups and registry
//! credentials.

use std::sync::Arc;
use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_sdk_ecr::types::{ImageIdentifier, Tag};
use omx_core::mutability::TagMutability;
use omx_core::policy::{
    merge_omics_registry_statement, merge_omics_statement, PolicyChange, CREATED_BY_TAG,
};
use omx_core::Digest;
use tokio::sync::Mutex;

use crate::endpoint::{self, Endpoint};
use crate::error::AwsError;
use crate::token::EcrToken;

/// The host of the private registry of an account in a region.
pub use omx_core::namespace::ecr_registry_host as registry_host;

/// A repository that exists (now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryState {
    /// This call created it. `false` when it was already there (an earlier run, another tag of
    /// the same image being copied concurrently, or someone else's repository).
    pub created: bool,
    /// `<registry host>/<name>`.
    pub uri: String,
    pub arn: String,
    /// It carries the `createdBy=omx-ecr-helper` tag. Existing repositories are not tagged by us:
    /// the tag says *this tool created it* and is what a cleanup would select on, so putting it
    /// on someone else's repository could get that repository deleted. An existing repository
    /// without the tag is reported through this field instead.
    pub tagged: bool,
}

/// An ECR client of one region, with a shared cache of the registry credentials. Clones share the
/// client and the cache.
#[derive(Debug, Clone)]
pub struct Ecr {
    pub(crate) client: aws_sdk_ecr::Client,
    pub(crate) endpoint: Endpoint,
    token: Arc<Mutex<Option<EcrToken>>>,
}

impl Ecr {
    /// A client for `config`'s region, credentials and endpoint.
    pub fn new(config: &SdkConfig) -> Ecr {
        Ecr::with_endpoint(
            aws_sdk_ecr::Client::new(config),
            Endpoint::from_config(&endpoint::ECR, config),
        )
    }

    /// A client like this one (credentials, endpoint settings) for another region, with its own
    /// token cache: ECR registry tokens are per region.
    pub fn for_region(&self, region: &str) -> Ecr {
        let config = self
            .client
            .config()
            .to_builder()
            .region(aws_types::region::Region::new(region.to_string()))
            .build();
        Ecr::with_endpoint(
            aws_sdk_ecr::Client::from_conf(config),
            self.endpoint.in_region(region),
        )
    }

    /// This client making each call once, without the SDK's retries: for looks that are worth
    /// an answer now or a "could not check" (a dry run), never a wait.
    pub fn single_attempt(&self) -> Ecr {
        let config = self
            .client
            .config()
            .to_builder()
            .retry_config(aws_sdk_ecr::config::retry::RetryConfig::disabled())
            .build();
        Ecr {
            client: aws_sdk_ecr::Client::from_conf(config),
            endpoint: self.endpoint.clone(),
            token: Arc::clone(&self.token),
        }
    }

    /// Wraps an existing SDK client (tests build one with a recorded HTTP exchange).
    pub fn from_client(client: aws_sdk_ecr::Client) -> Ecr {
        let region = client.config().region().map(|region| region.to_string());
        let endpoint = Endpoint::regional(&endpoint::ECR, region.as_deref());
        Ecr::with_endpoint(client, endpoint)
    }

    fn with_endpoint(client: aws_sdk_ecr::Client, endpoint: Endpoint) -> Ecr {
        Ecr {
            client,
            endpoint,
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// Makes sure repository `name` exists, creating it with the `createdBy=omx-ecr-helper` tag
    /// (scanning and tag mutability left at the account's defaults) when it does not. A repository
    /// created concurrently by another run is found, not an error.
    pub async fn ensure_repository(&self, name: &str) -> Result<RepositoryState, AwsError> {
        let target = repository_target(name);
        let created = self
            .client
            .create_repository()
            .repository_name(name)
            .tags(created_by_tag())
            .send()
            .await;
        match created {
            Ok(output) => {
                let repository = output.repository().ok_or_else(|| {
                    AwsError::unexpected("CreateRepository", &target, "no repository")
                })?;
                let (uri, arn) = uri_and_arn("CreateRepository", &target, repository)?;
                Ok(RepositoryState {
                    created: true,
                    uri,
                    arn,
                    tagged: true,
                })
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_repository_already_exists_exception()) =>
            {
                self.existing_repository(name).await
            }
            Err(error) => Err(AwsError::from_sdk(
                &self.endpoint,
                "CreateRepository",
                target,
                error,
            )),
        }
    }

    /// Tags a repository that exists because of this tool although ECR created it (a
    /// pull-through-cache pull that this tool made creates the repository on ECR's side), so that
    /// it carries `createdBy=omx-ecr-helper` like the repositories this tool creates itself.
    pub async fn tag_as_created_by_us(&self, state: &RepositoryState) -> Result<(), AwsError> {
        if state.tagged {
            return Ok(());
        }
        self.client
            .tag_resource()
            .resource_arn(&state.arn)
            .set_tags(Some(vec![created_by_tag()]))
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "TagResource", &state.uri, error)
            })?;
        Ok(())
    }

    async fn existing_repository(&self, name: &str) -> Result<RepositoryState, AwsError> {
        let target = repository_target(name);
        let described = self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "DescribeRepositories", &target, error)
            })?;
        let repository = described.repositories().first().ok_or_else(|| {
            AwsError::unexpected("DescribeRepositories", &target, "no repository listed")
        })?;
        let (uri, arn) = uri_and_arn("DescribeRepositories", &target, repository)?;
        let tags = self
            .client
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "ListTagsForResource", &target, error)
            })?;
        let (key, value) = CREATED_BY_TAG;
        let tagged = tags
            .tags()
            .iter()
            .any(|tag| tag.key() == key && tag.value() == value);
        Ok(RepositoryState {
            created: false,
            uri,
            arn,
            tagged,
        })
    }

    /// The tag mutability of repository `name`, `None` when the repository does not exist.
    pub async fn tag_mutability(&self, name: &str) -> Result<Option<TagMutability>, AwsError> {
        let described = self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await;
        let Some(described) = AwsError::absent_as_none(
            &self.endpoint,
            "DescribeRepositories",
            repository_target(name),
            described,
            |e| e.is_repository_not_found_exception(),
        )?
        else {
            return Ok(None);
        };
        Ok(described
            .repositories()
            .first()
            .map(|repository| TagMutability {
                setting: repository
                    .image_tag_mutability()
                    .map_or("MUTABLE", |m| m.as_str())
                    .to_string(),
                exclusions: repository
                    .image_tag_mutability_exclusion_filters()
                    .iter()
                    .map(|filter| filter.filter().to_string())
                    .collect(),
            }))
    }

    /// The policy text of repository `name`, `None` when it has none. Any other failure (the
    /// repository is missing, access denied, throttling) is an error, never taken for "no policy".
    pub async fn repository_policy(&self, name: &str) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .get_repository_policy()
            .repository_name(name)
            .send()
            .await;
        let answer = AwsError::absent_as_none(
            &self.endpoint,
            "GetRepositoryPolicy",
            repository_target(name),
            answer,
            |e| e.is_repository_policy_not_found_exception(),
        )?;
        Ok(answer.and_then(|output| output.policy_text().map(str::to_string)))
    }

    /// Makes sure repository `name` lets HealthOmics pull, merging our statement into its policy
    /// and writing the policy only when it changed.
    pub async fn ensure_omics_policy(&self, name: &str) -> Result<PolicyChange, AwsError> {
        let target = repository_target(name);
        let existing = self.repository_policy(name).await?;
        let change =
            merge_omics_statement(existing.as_deref()).map_err(|source| AwsError::Policy {
                target: target.clone(),
                source,
            })?;
        if let PolicyChange::Updated(policy) = &change {
            self.client
                .set_repository_policy()
                .repository_name(name)
                .policy_text(policy)
                .send()
                .await
                .map_err(|error| {
                    AwsError::from_sdk(&self.endpoint, "SetRepositoryPolicy", target, error)
                })?;
        }
        Ok(change)
    }

    /// The registry (account-level) policy, `None` when there is none.
    pub async fn registry_policy(&self) -> Result<Option<String>, AwsError> {
        let answer = self.client.get_registry_policy().send().await;
        let answer =
            AwsError::absent_as_none(&self.endpoint, "GetRegistryPolicy", REGISTRY, answer, |e| {
                e.is_registry_policy_not_found_exception()
            })?;
        Ok(answer.and_then(|output| output.policy_text().map(str::to_string)))
    }

    /// Makes sure the registry policy lets HealthOmics create repositories under `prefix` and
    /// import upstream images into them (what a pull-through-cache rule needs), writing the policy
    /// only when it changed. `account` is the registry's account (see
    /// [`crate::AwsContext::account_id`]).
    pub async fn ensure_omics_registry_policy(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<PolicyChange, AwsError> {
        let region = self.region().ok_or(AwsError::NoRegion)?;
        let existing = self.registry_policy().await?;
        let change = merge_omics_registry_statement(existing.as_deref(), &region, account, prefix)
            .map_err(|source| AwsError::Policy {
                target: REGISTRY.to_string(),
                source,
            })?;
        if let PolicyChange::Updated(policy) = &change {
            self.client
                .put_registry_policy()
                .policy_text(policy)
                .send()
                .await
                .map_err(|error| {
                    AwsError::from_sdk(&self.endpoint, "PutRegistryPolicy", REGISTRY, error)
                })?;
        }
        Ok(change)
    }

    /// The digest of `repository:tag`, `None` when the tag (or the repository) does not exist.
    pub async fn image_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Digest>, AwsError> {
        const OPERATION: &str = "DescribeImages";
        let target = format!("image {repository}:{tag}");
        let described = self
            .client
            .describe_images()
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        let Some(described) =
            AwsError::absent_as_none(&self.endpoint, OPERATION, &target, described, |e| {
                e.is_image_not_found_exception() || e.is_repository_not_found_exception()
            })?
        else {
            return Ok(None);
        };
        let Some(image) = described.image_details().first() else {
            return Ok(None);
        };
        let digest = image
            .image_digest()
            .ok_or_else(|| AwsError::unexpected(OPERATION, &target, "no image digest"))?;
        digest
            .parse::<Digest>()
            .map(Some)
            .map_err(|error| AwsError::unexpected(OPERATION, &target, error.to_string()))
    }

    /// Registry credentials for `docker login`-style Basic auth. Cached: a token is reused until
    /// [`crate::TOKEN_REFRESH_MARGIN`] before it expires, and concurrent callers wait for one
    /// request instead of each sending their own.
    pub async fn authorization_token(&self) -> Result<EcrToken, AwsError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh_at(SystemTime::now())) {
            return Ok(token.clone());
        }
        let token = self.fetch_authorization_token().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets the cached registry token when it is the one with `password`: the registry
    /// refused it (an ECR token dies with the temporary credentials it came from, before the 12
    /// hours it claims), so the next [`Ecr::authorization_token`] fetches a new one. A token
    /// renewed meanwhile is kept.
    pub async fn forget_token(&self, password: &omx_core::Secret) {
        let mut cached = self.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|token| token.password == *password)
        {
            *cached = None;
        }
    }

    async fn fetch_authorization_token(&self) -> Result<EcrToken, AwsError> {
        const OPERATION: &str = "GetAuthorizationToken";
        let output = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(&self.endpoint, OPERATION, REGISTRY, error))?;
        let data = output
            .authorization_data()
            .first()
            .ok_or_else(|| AwsError::unexpected(OPERATION, REGISTRY, "no authorization data"))?;
        let missing = |what: &str| AwsError::unexpected(OPERATION, REGISTRY, format!("no {what}"));
        let token = data
            .authorization_token()
            .ok_or_else(|| missing("authorizationToken"))?;
        let expires_at = data
            .expires_at()
            .ok_or_else(|| missing("expiresAt"))
            .and_then(|at| {
                SystemTime::try_from(*at).map_err(|_| missing("representable expiresAt"))
            })?;
        let proxy_endpoint = data
            .proxy_endpoint()
            .ok_or_else(|| missing("proxyEndpoint"))?;
        EcrToken::decode(token, expires_at, proxy_endpoint.to_string())
            .map_err(|reason| AwsError::unexpected(OPERATION, REGISTRY, reason))
    }

    /// The region this client talks to.
    pub fn region(&self) -> Option<String> {
        self.client
            .config()
            .region()
            .map(|region| region.as_ref().to_string())
    }
}

pub(crate) const REGISTRY: &str = "the registry";

fn repository_target(name: &str) -> String {
    format!("repository {name}")
}

pub(crate) fn created_by_tag() -> Tag {
    let (key, value) = CREATED_BY_TAG;
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}

fn uri_and_arn(
    operation: &'static str,
    target: &str,
    repository: &aws_sdk_ecr::types::Repository,
) -> Result<(String, String), AwsError> {
    let uri = repository
        .repository_uri()
        .ok_or_else(|| AwsError::unexpected(operation, target, "no repositoryUri"))?;
    let arn = repository
        .repository_arn()
        .ok_or_else(|| AwsError::unexpected(operation, target, "no repositoryArn"))?;
    Ok((uri.to_string(), arn.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_host_uses_the_partition_dns_suffix() {
        assert_eq!(
            registry_host("123456789012", "us-east-1"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            registry_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            registry_host("123456789012", "us-gov-west-1"),
            "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com"
        );
    }
}

//! Loading AWS configuration the way every AWS tool does, and who we are.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use tokio::sync::OnceCell;

use crate::ecr::Ecr;
use crate::endpoint::{self, Endpoint};
use crate::error::AwsError;

/// The AWS configuration of one run: region, credentials and endpoints, plus the caller's account
/// once asked for.
///
/// Credentials come from the standard chain (environment, profile incl. SSO and
/// `credential_process`, web identity, container and instance roles). Endpoints follow the SDK
/// conventions, read by `aws-config` itself: `AWS_ENDPOINT_URL_ECR`/`AWS_ENDPOINT_URL_STS` (or a
/// profile's `services` section) win over `AWS_ENDPOINT_URL` (or the profile's `endpoint_url`),
/// and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` turns them all off.
#[derive(Debug)]
pub struct AwsContext {
    config: SdkConfig,
    region: String,
    account_id: OnceCell<String>,
}

impl AwsContext {
    /// Loads configuration from the environment and profile files, with `region` and `profile`
    /// (command-line choices) taking precedence over them.
    pub async fn load(
        region: Option<String>,
        profile: Option<String>,
    ) -> Result<AwsContext, AwsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        AwsContext::from_config(loader.load().await)
    }

    /// Wraps an already built configuration (tests build one pointing at an emulator).
    pub fn from_config(config: SdkConfig) -> Result<AwsContext, AwsError> {
        let region = config
            .region()
            .map(|region| region.as_ref().to_string())
            .filter(|region| !region.is_empty())
            .ok_or(AwsError::NoRegion)?;
        Ok(AwsContext {
            config,
            region,
            account_id: OnceCell::new(),
        })
    }

    /// The region every client of this context talks to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The SDK configuration, for clients this crate does not wrap.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// The account the credentials belong to (STS `GetCallerIdentity`, asked once per context).
    pub async fn account_id(&self) -> Result<&str, AwsError> {
        let account = self
            .account_id
            .get_or_try_init(|| async {
                const OPERATION: &str = "GetCallerIdentity";
                const TARGET: &str = "the caller's identity";
                let identity = aws_sdk_sts::Client::new(&self.config)
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|error| {
                        let endpoint = Endpoint::from_config(&endpoint::STS, &self.config);
                        AwsError::from_sdk(&endpoint, OPERATION, TARGET, error)
                    })?;
                identity
                    .account()
                    .map(str::to_string)
                    .ok_or_else(|| AwsError::unexpected(OPERATION, TARGET, "no account id"))
            })
            .await?;
        Ok(account)
    }

    /// An ECR client for this context's region.
    pub fn ecr(&self) -> Ecr {
        Ecr::new(&self.config)
    }

    /// A Secrets Manager client for this context's region.
    pub fn secrets_manager(&self) -> crate::SecretsManager {
        crate::SecretsManager::new(&self.config)
    }
}

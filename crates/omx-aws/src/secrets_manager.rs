//! The Secrets Manager secrets that hold upstream registry credentials: HealthOmics reads the one
//! a registry mapping's `credentialArn` names to copy that registry's images (its API model:
//! "the workflow role must have permission to call the secretsmanager:GetSecretValue operation
//! on the secret").
//!
//! Secret values pass through here and nowhere else: no error, log line or answer carries them.

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::types::Tag;
use omx_core::policy::CREATED_BY_TAG;
use omx_core::Secret;

use crate::endpoint::{self, Endpoint};
use crate::error::AwsError;

/// A Secrets Manager client.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
    endpoint: Endpoint,
}

/// What [`SecretsManager::ensure_secret`] found or did, with the secret's ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    Created(String),
    /// It held another value; a new version holds ours now.
    Updated(String),
    Unchanged(String),
    /// Dry run: there is no such secret, and it would be created.
    WouldCreate,
    /// Dry run: it holds another value, which would be replaced.
    WouldUpdate(String),
}

impl SecretsManager {
    /// A client for `config`'s region, credentials and endpoint (`AWS_ENDPOINT_URL_SECRETS_MANAGER`
    /// or `AWS_ENDPOINT_URL`).
    pub fn new(config: &SdkConfig) -> SecretsManager {
        SecretsManager {
            client: aws_sdk_secretsmanager::Client::new(config),
            endpoint: Endpoint::from_config(&endpoint::SECRETS_MANAGER, config),
        }
    }

    /// The ARN of the secret called `name`, if there is one (DescribeSecret; only
    /// ResourceNotFoundException is absence).
    pub async fn secret_arn(&self, name: &str) -> Result<Option<String>, AwsError> {
        const OPERATION: &str = "DescribeSecret";
        let described = self.client.describe_secret().secret_id(name).send().await;
        let described = AwsError::absent_as_none(
            &self.endpoint,
            OPERATION,
            secret_target(name),
            described,
            |e| e.is_resource_not_found_exception(),
        )?;
        described
            .map(|d| {
                d.arn()
                    .map(str::to_string)
                    .ok_or_else(|| AwsError::unexpected(OPERATION, secret_target(name), "no ARN"))
            })
            .transpose()
    }

    /// Makes the secret `name` hold `value`: creates it (tagged createdBy=omx-ecr-helper) when
    /// missing, puts a new version when it holds something else, and leaves it alone when it
    /// already holds `value`. With `dry_run`, only reads.
    pub async fn ensure_secret(
        &self,
        name: &str,
        value: &Secret,
        dry_run: bool,
    ) -> Result<SecretChange, AwsError> {
        let Some(arn) = self.secret_arn(name).await? else {
            if dry_run {
                return Ok(SecretChange::WouldCreate);
            }
            return self.create(name, value).await.map(SecretChange::Created);
        };
        if self.holds(name, value).await? {
            return Ok(SecretChange::Unchanged(arn));
        }
        if dry_run {
            return Ok(SecretChange::WouldUpdate(arn));
        }
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose())
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(&self.endpoint, "PutSecretValue", secret_target(name), e)
            })?;
        Ok(SecretChange::Updated(arn))
    }

    async fn create(&self, name: &str, value: &Secret) -> Result<String, AwsError> {
        const OPERATION: &str = "CreateSecret";
        let (key, tag_value) = CREATED_BY_TAG;
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value.expose())
            .tags(Tag::builder().key(key).value(tag_value).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&self.endpoint, OPERATION, secret_target(name), e))?;
        created
            .arn()
            .map(str::to_string)
            .ok_or_else(|| AwsError::unexpected(OPERATION, secret_target(name), "no ARN"))
    }

    /// Whether the secret's current value is `value` (compared here, never returned).
    async fn holds(&self, name: &str, value: &Secret) -> Result<bool, AwsError> {
        let current = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(&self.endpoint, "GetSecretValue", secret_target(name), e)
            })?;
        Ok(current.secret_string() == Some(value.expose()))
    }
}

fn secret_target(name: &str) -> String {
    format!("secret {name}")
}

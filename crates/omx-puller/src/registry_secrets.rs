//! The credential secrets of the registries HealthOmics copies from itself (`setup
//! --credential-file`): one Secrets Manager secret per registry, which a registry mapping names
//! by its `credentialArn`.
//!
//! The credential file holds no secret: each entry names the environment variable that holds the
//! access token, so the file can be kept with the workflow and the token never appears on a
//! command line, in a file or in any output.

use omx_aws::{AwsError, SecretChange, SecretsManager};
use omx_core::namespace::{healthomics_copies_from, NamespaceTable};
use omx_core::strategy::{NativeAccess, SecretArn};
use omx_core::{Reference, Secret};
use serde::{Deserialize, Serialize};

use crate::setup::{Action, Resource, SetupStep};

/// Where the secrets live: `omics-registry/<registry host>`, after the naming of the HealthOmics
/// User Guide's registry-map example (`...:secret:omics-registry/seqera-EXAMPLE`, "Adding
/// private or third-party containers during workflow creation"). The host, not the namespace,
/// names it: every regional Artifact Registry host shares the `gar` namespace but has its own
/// credentials.
pub const REGISTRY_SECRET_PREFIX: &str = "omics-registry/";

/// One registry's credentials, read from a credential file and the environment.
#[derive(Debug, Clone)]
pub struct RegistryCredential {
    pub host: String,
    pub username: String,
    pub access_token: Secret,
}

/// A registry's secret as `setup` left it: what `--credential HOST=ARN` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrySecret {
    pub host: String,
    pub credential_arn: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    registries: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    host: String,
    username: String,
    access_token_env: String,
}

/// Reads a credential file:
/// `{"registries": [{"host": "nvcr.io", "username": "$oauthtoken", "access_token_env": "NGC_API_KEY"}]}`,
/// taking each token from the named variable (`env`). An error names the entry and the reason,
/// never a value.
pub fn read_credential_file(
    json: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<RegistryCredential>, String> {
    let file: CredentialFile = serde_json::from_str(json)
        .map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
    let mut credentials: Vec<RegistryCredential> = Vec::new();
    for (index, entry) in file.registries.into_iter().enumerate() {
        let host = entry.host.trim().to_ascii_lowercase();
        let at = format!("registries[{index}] ({})", omx_core::excerpt::escape(&host));
        if !healthomics_copies_from(&host) {
            return Err(format!(
                "{at}: HealthOmics copies only from {}",
                omx_core::namespace::HEALTHOMICS_COPIED_UPSTREAMS.join(", ")
            ));
        }
        if credentials.iter().any(|c| c.host == host) {
            return Err(format!("{at}: the registry is listed twice"));
        }
        if entry.username.is_empty() {
            return Err(format!("{at}: \"username\" is empty"));
        }
        let token = env(&entry.access_token_env)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                format!(
                    "{at}: the environment variable {} (access_token_env) is not set",
                    omx_core::excerpt::escape(&entry.access_token_env)
                )
            })?;
        credentials.push(RegistryCredential {
            host,
            username: entry.username,
            access_token: Secret::new(token),
        });
    }
    Ok(credentials)
}

/// The secret `setup` keeps a registry's credentials in.
pub fn secret_name(host: &str) -> String {
    format!("{REGISTRY_SECRET_PREFIX}{}", host.to_ascii_lowercase())
}

/// The namespace a registry's images live under: the prefix of its registry mapping.
pub fn registry_namespace(host: &str, table: &NamespaceTable) -> Option<String> {
    let probe = Reference::parse(&format!("{host}/probe")).ok()?;
    table.map(&probe).ok()?.namespace
}

/// `access` with the secret `setup` keeps for each of `hosts` that HealthOmics copies from and
/// `access` has no credential for, where there is one. A secret that cannot be looked up is a
/// warning (the image is then copied), never a failure of the run.
pub async fn discover_registry_secrets<'a>(
    secrets: &SecretsManager,
    hosts: impl IntoIterator<Item = &'a str>,
    mut access: NativeAccess,
) -> (NativeAccess, Vec<String>) {
    let mut warnings = Vec::new();
    let mut asked: Vec<String> = Vec::new();
    for host in hosts {
        let host = host.to_ascii_lowercase();
        if !healthomics_copies_from(&host)
            || access.credential(&host).is_some()
            || asked.contains(&host)
        {
            continue;
        }
        let name = secret_name(&host);
        match secrets.secret_arn(&name).await {
            Ok(Some(arn)) => match SecretArn::parse(&arn) {
                Ok(arn) => access = access.with_credential(&host, arn),
                Err(why) => warnings.push(format!("secret {name}: {why}")),
            },
            Ok(None) => {}
            Err(error) => warnings.push(format!(
                "cannot tell whether {host} has a secret ({name}), so its images are copied: {error}"
            )),
        }
        asked.push(host);
    }
    (access, warnings)
}

/// The secret's value: `username` and `accessToken`, the keys ECR documents for upstream
/// registry credentials in Secrets Manager (Amazon ECR User Guide, "Storing your upstream
/// repository credentials in an AWS Secrets Manager secret").
fn secret_value(credential: &RegistryCredential) -> Secret {
    Secret::new(
        serde_json::json!({
            "username": credential.username,
            "accessToken": credential.access_token.expose(),
        })
        .to_string(),
    )
}

/// Creates or updates each registry's secret, idempotently; one failing never stops the others.
/// The steps go into the setup report, the ARNs into what `--credential` takes.
pub async fn setup_registry_secrets(
    secrets: &SecretsManager,
    credentials: &[RegistryCredential],
    table: &NamespaceTable,
    dry_run: bool,
) -> (Vec<SetupStep>, Vec<RegistrySecret>) {
    let mut steps = Vec::new();
    let mut created = Vec::new();
    for credential in credentials {
        let namespace =
            registry_namespace(&credential.host, table).unwrap_or_else(|| credential.host.clone());
        let name = secret_name(&credential.host);
        let change = secrets
            .ensure_secret(&name, &secret_value(credential), dry_run)
            .await;
        let (action, detail, arn) = describe(&name, change);
        if let Some(arn) = arn {
            created.push(RegistrySecret {
                host: credential.host.clone(),
                credential_arn: arn,
            });
        }
        steps.push(SetupStep {
            prefix: namespace,
            resource: Resource::CredentialSecret,
            action,
            detail,
        });
    }
    (steps, created)
}

fn describe(
    name: &str,
    change: Result<SecretChange, AwsError>,
) -> (Action, String, Option<String>) {
    match change {
        Ok(SecretChange::Created(arn)) => (Action::Created, format!("{name}: {arn}"), Some(arn)),
        Ok(SecretChange::Updated(arn)) => (
            Action::Updated,
            format!("{name}: new value stored, {arn}"),
            Some(arn),
        ),
        Ok(SecretChange::Unchanged(arn)) => {
            (Action::Unchanged, format!("{name}: {arn}"), Some(arn))
        }
        Ok(SecretChange::WouldCreate) => (Action::WouldCreate, name.to_string(), None),
        Ok(SecretChange::WouldUpdate(arn)) => (
            Action::WouldUpdate,
            format!("{name}: holds another value, {arn}"),
            Some(arn),
        ),
        Err(error) => (Action::Failed, error.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "NGC_API_KEY").then(|| "nvapi-token-value".to_string())
    }

    #[test]
    fn a_credential_file_takes_tokens_from_the_environment() {
        let credentials = read_credential_file(
            r#"{"registries": [{"host": "NVCR.io", "username": "$oauthtoken", "access_token_env": "NGC_API_KEY"}]}"#,
            env,
        )
        .unwrap();
        assert_eq!(credentials[0].host, "nvcr.io");
        assert_eq!(credentials[0].access_token.expose(), "nvapi-token-value");
        let value = secret_value(&credentials[0]);
        let value: serde_json::Value = serde_json::from_str(value.expose()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"username": "$oauthtoken", "accessToken": "nvapi-token-value"})
        );
    }

    #[test]
    fn credential_file_errors_name_the_entry_and_never_a_value() {
        for (json, expected) in [
            (
                r#"{"registries": [{"host": "quay.io", "username": "u", "access_token_env": "NGC_API_KEY"}]}"#,
                "registries[0] (quay.io): HealthOmics copies only from",
            ),
            (
                r#"{"registries": [{"host": "nvcr.io", "username": "u", "access_token_env": "MISSING"}]}"#,
                "registries[0] (nvcr.io): the environment variable MISSING (access_token_env) is not set",
            ),
            (
                r#"{"registries": [{"host": "nvcr.io", "username": "u", "access_token": "inline"}]}"#,
                "unknown field `access_token`",
            ),
        ] {
            let error = read_credential_file(json, env).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("nvapi-token-value") && !error.contains("inline\""), "{error}");
        }
    }

    #[test]
    fn secrets_are_named_for_the_registry_namespace() {
        let table = NamespaceTable::builtin();
        assert_eq!(
            registry_namespace("nvcr.io", &table).as_deref(),
            Some("nvcr")
        );
        assert_eq!(
            registry_namespace("europe-west4-docker.pkg.dev", &table).as_deref(),
            Some("gar")
        );
    }
}

//! How every command reaches registries: plain-HTTP hosts, extra CAs, how long throttling is
//! waited out; and the credentials of a run against a target.

use std::path::PathBuf;

use clap::Args;
use omx_core::excerpt::quoted;
use omx_core::pull_plan::check_registry_host;
use omx_puller::{CredentialChain, EcrReach, ResolvedTarget};
use omx_registry::{ClientConfig, Credential, Secret, StaticCredentials};

use crate::exit::{echoless, UnusableInput};

/// How to reach registries, for every command that talks to them.
#[derive(Args, Debug, Clone)]
pub struct RegistryAccessArgs {
    /// A registry host (host or host:port) that may be reached over plain HTTP; repeatable.
    /// Loopback hosts always may.
    #[arg(long = "insecure-registry", value_name = "HOST", value_parser = echoless(insecure_registry))]
    pub insecure_registries: Vec<String>,

    /// A PEM file of extra CA certificates to trust (added to the system roots); repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,

    /// How long a request answered 429 Too Many Requests keeps being retried, with backoff
    /// (ECR throttles manifest pushes at 10/s by default). A registry that asks to wait longer
    /// (a Retry-After past this, Docker Hub's spent pull limit) is not retried: its remaining
    /// images fail at once, saying until when.
    #[arg(long, value_name = "SECONDS", default_value_t = 90)]
    pub throttle_window: u64,
}

impl RegistryAccessArgs {
    /// A client configuration with these choices and anonymous credentials.
    pub fn client_config(&self) -> ClientConfig {
        let defaults = ClientConfig::default();
        ClientConfig {
            insecure_registries: self.insecure_registries.clone(),
            ca_certificates: self.ca_certs.clone(),
            retry: omx_registry::RetryPolicy {
                throttle_window: std::time::Duration::from_secs(self.throttle_window),
                ..defaults.retry.clone()
            },
            ..defaults
        }
    }

    /// A client configuration for a run against `target`: explicit target credentials first,
    /// then ECR's token (the target's, and any other ECR registry's: sources, cache upstreams),
    /// then the Docker config (sources and upstreams).
    pub fn target_client_config(
        &self,
        target: &ResolvedTarget,
        dest_creds: Option<&Secret>,
    ) -> anyhow::Result<ClientConfig> {
        let mut explicit = StaticCredentials::new();
        if let Some(value) = dest_creds {
            if target.ecr.is_some() {
                return Err(UnusableInput(
                    "--dest-creds is for non-ECR targets; ECR uses your AWS credentials".into(),
                )
                .into());
            }
            explicit.insert(
                &target.api_host,
                command_line_credential("dest-creds", value)?,
            );
        }
        let credentials = CredentialChain::explicit(explicit)
            .then_ecr(target, EcrReach::AnyRegistry)
            .then_docker_config()?
            .build();
        Ok(ClientConfig {
            credentials,
            ..self.client_config()
        })
    }
}

/// `--insecure-registry`: a registry host[:port], also taken as an `http://` URL with a slash.
pub fn insecure_registry(value: &str) -> Result<String, String> {
    registry_host_argument("insecure-registry", omx_core::registry_host::bare(value))?;
    Ok(value.to_string())
}

/// `--ecr-registry-endpoint`: the host[:port] ECR's registry API calls go to instead.
pub fn ecr_registry_endpoint(value: &str) -> Result<String, String> {
    registry_host_argument("ecr-registry-endpoint", value.trim())?;
    Ok(value.trim().to_string())
}

/// The error names the argument and quotes the value through the redaction of every echo.
fn registry_host_argument(flag: &str, host: &str) -> Result<(), String> {
    check_registry_host(host)
        .map_err(|reason| format!("invalid --{flag} {}: {reason}", quoted(host)))
}

/// Keeps `USER:PASSWORD` secret from the moment it is read: clap echoes values it rejects, so
/// the split into user and password happens later, with an error that does not repeat it.
pub fn parse_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

pub fn command_line_credential(flag: &str, value: &Secret) -> anyhow::Result<Credential> {
    Credential::from_user_colon_password(value.expose())
        .map_err(|e| UnusableInput(format!("--{flag}: {e}")).into())
}

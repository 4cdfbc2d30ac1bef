//! Where registry credentials come from: explicit values, `~/.docker/config.json` (inline `auths`,
//! `credHelpers`, `credsStore`) and pluggable providers such as the ECR token adapter.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use omx_core::{RegistryHost, Secret};

/// A username and password (or token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: Secret,
    /// When the password stops working (ECR tokens last 12 hours); the client asks its provider
    /// again shortly before this instant.
    pub expires_at: Option<SystemTime>,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Credential {
        Credential {
            username: username.into(),
            password: password.into(),
            expires_at: None,
        }
    }

    /// Parses `USER:PASSWORD` as given on a command line (the password may contain `:`).
    pub fn from_user_colon_password(value: &str) -> Result<Credential, CredentialError> {
        match value.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Credential::new(user, password)),
            _ => Err(CredentialError::Malformed {
                origin: "command line".to_string(),
                reason: "expected USER:PASSWORD".to_string(),
            }),
        }
    }

    /// The value of an `Authorization: Basic ...` header.
    pub(crate) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    // The reason is the source's to say: error chains print it once.
    #[error("cannot read Docker config {}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Only the position and the kind of problem are kept: serde's own message quotes the value
    /// it found, which in a Docker config may be a password or an `auth` token.
    #[error("Docker config {path} is not valid: {problem} at line {line}, column {column}")]
    ParseConfig {
        path: PathBuf,
        problem: &'static str,
        line: usize,
        column: usize,
    },
    #[error("credentials from {origin} are malformed: {reason}")]
    Malformed { origin: String, reason: String },
    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    Helper {
        helper: String,
        registry: String,
        reason: String,
    },
    #[error("credential provider for {registry} failed: {reason}")]
    Provider { registry: String, reason: String },
}

/// Supplies credentials for a registry host (`docker.io`, `quay.io`, `127.0.0.1:5000`).
///
/// `Ok(None)` means "anonymous". Implementations must be cheap to call repeatedly or cache
/// themselves; the client caches answers until [`Credential::expires_at`] approaches and asks
/// again after a registry rejects them.
pub trait CredentialProvider: Send + Sync {
    fn credentials<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>>;

    /// `registry` refused `credential`: a provider that caches what it hands out forgets it, so
    /// that the next [`CredentialProvider::credentials`] call brings a new one (an ECR token dies
    /// with the temporary credentials it came from, before the 12 hours it claims).
    fn refused<'a>(&'a self, _registry: &'a str, _credential: &'a Credential) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

impl fmt::Debug for dyn CredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialProvider")
    }
}

/// No credentials for any registry.
#[derive(Debug, Default, Clone, Copy)]
pub struct Anonymous;

impl CredentialProvider for Anonymous {
    fn credentials<'a>(
        &'a self,
        _registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Credentials given explicitly per registry host (command-line `--src-creds`, tests).
#[derive(Debug, Default, Clone)]
pub struct StaticCredentials {
    by_registry: HashMap<RegistryHost, Credential>,
}

impl StaticCredentials {
    pub fn new() -> StaticCredentials {
        StaticCredentials::default()
    }

    /// Adds (or replaces) the credential for `registry`.
    pub fn with(mut self, registry: &str, credential: Credential) -> StaticCredentials {
        self.insert(registry, credential);
        self
    }

    pub fn insert(&mut self, registry: &str, credential: Credential) {
        self.by_registry
            .insert(RegistryHost::new(registry), credential);
    }
}

impl CredentialProvider for StaticCredentials {
    fn credentials<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        let found = self.by_registry.get(&RegistryHost::new(registry)).cloned();
        Box::pin(async move { Ok(found) })
    }
}

/// Asks each provider in turn; the first that has credentials wins.
#[derive(Debug, Default, Clone)]
pub struct ChainCredentials {
    providers: Vec<Arc<dyn CredentialProvider>>,
}

impl ChainCredentials {
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>) -> ChainCredentials {
        ChainCredentials { providers }
    }
}

impl CredentialProvider for ChainCredentials {
    fn credentials<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(async move {
            for provider in &self.providers {
                if let Some(credential) = provider.credentials(registry).await? {
                    return Ok(Some(credential));
                }
            }
            Ok(None)
        })
    }

    fn refused<'a>(&'a self, registry: &'a str, credential: &'a Credential) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for provider in &self.providers {
                provider.refused(registry, credential).await;
            }
        })
    }
}

/// The parts of `~/.docker/config.json` that hold registry credentials.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct AuthEntry {
    #[serde(default, deserialize_with = "optional_secret")]
    auth: Option<Secret>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default, deserialize_with = "optional_secret")]
    password: Option<Secret>,
}

/// Where [`DockerConfig`] says the credentials for one registry are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerConfigLookup {
    /// Stored in the file itself.
    Inline(Credential),
    /// Held by `docker-credential-<helper>`; `inline` is the file's own entry, used when the
    /// helper has nothing for this registry.
    Helper {
        helper: String,
        inline: Option<Credential>,
    },
    None,
}

impl DockerConfig {
    pub fn parse(json: &str, origin: &Path) -> Result<DockerConfig, CredentialError> {
        serde_json::from_str(json).map_err(|error| CredentialError::ParseConfig {
            path: origin.to_path_buf(),
            problem: match error.classify() {
                serde_json::error::Category::Syntax => "a JSON syntax error",
                serde_json::error::Category::Eof => "an unexpected end of the file",
                serde_json::error::Category::Data => "a value of the wrong type or shape",
                serde_json::error::Category::Io => "a read error",
            },
            line: error.line(),
            column: error.column(),
        })
    }

    /// Where the credentials for `registry` live: a `credHelpers` entry first, then
    /// `credsStore`, then the inline `auths` entry (Docker CLI's order).
    pub fn lookup(&self, registry: &str) -> Result<DockerConfigLookup, CredentialError> {
        let key = RegistryHost::new(registry);
        let inline = self
            .auths
            .iter()
            .find(|(server, _)| RegistryHost::new(server) == key)
            .map(|(server, entry)| entry.credential(server))
            .transpose()?
            .flatten();
        let helper = self
            .cred_helpers
            .iter()
            .find(|(server, _)| RegistryHost::new(server) == key)
            .map(|(_, helper)| helper.clone())
            .or_else(|| self.creds_store.clone().filter(|s| !s.is_empty()));
        Ok(match (helper, inline) {
            (Some(helper), inline) => DockerConfigLookup::Helper { helper, inline },
            (None, Some(credential)) => DockerConfigLookup::Inline(credential),
            (None, None) => DockerConfigLookup::None,
        })
    }
}

impl AuthEntry {
    fn credential(&self, server: &str) -> Result<Option<Credential>, CredentialError> {
        let origin = || format!("Docker config entry {server:?}");
        if let Some(auth) = self.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.expose().trim())
                .map_err(|_| CredentialError::Malformed {
                    origin: origin(),
                    reason: "\"auth\" is not valid base64".to_string(),
                })?;
            let decoded = String::from_utf8(decoded).map_err(|_| CredentialError::Malformed {
                origin: origin(),
                reason: "\"auth\" is not UTF-8".to_string(),
            })?;
            let (user, password) =
                decoded
                    .split_once(':')
                    .ok_or_else(|| CredentialError::Malformed {
                        origin: origin(),
                        reason: "\"auth\" does not decode to USER:PASSWORD".to_string(),
                    })?;
            return Ok(Some(Credential::new(user, password)));
        }
        match (&self.username, &self.password) {
            (Some(user), Some(password)) if !user.is_empty() => {
                Ok(Some(Credential::new(user.clone(), password.clone())))
            }
            _ => Ok(None),
        }
    }
}

/// Credentials from a Docker config file, running credential helpers as Docker does.
#[derive(Debug, Clone)]
pub struct DockerConfigCredentials {
    config: Option<DockerConfig>,
    /// Directory holding `docker-credential-*` programs; `None` searches `PATH`.
    helper_dir: Option<PathBuf>,
}

impl DockerConfigCredentials {
    /// Reads `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; a missing file means
    /// no credentials, a malformed one is an error.
    pub fn from_environment() -> Result<DockerConfigCredentials, CredentialError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")));
        match dir {
            Some(dir) => DockerConfigCredentials::from_file(&dir.join("config.json")),
            None => Ok(DockerConfigCredentials::from_config(None)),
        }
    }

    /// Reads one config file; a missing file means no credentials.
    pub fn from_file(path: &Path) -> Result<DockerConfigCredentials, CredentialError> {
        match crate::input::read_user_text(path, crate::input::MAX_CONFIG_FILE_BYTES) {
            Ok(json) => Ok(DockerConfigCredentials::from_config(Some(
                DockerConfig::parse(&json, path)?,
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(DockerConfigCredentials::from_config(None))
            }
            Err(source) => Err(CredentialError::ReadConfig {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn from_config(config: Option<DockerConfig>) -> DockerConfigCredentials {
        DockerConfigCredentials {
            config,
            helper_dir: None,
        }
    }

    /// Looks for `docker-credential-*` programs in `dir` instead of `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> DockerConfigCredentials {
        self.helper_dir = Some(dir.into());
        self
    }

    async fn run_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let failure = |reason: String| CredentialError::Helper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            reason,
        };
        let mut child = tokio::process::Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failure(format!("cannot run {}: {e}", program.display())))?;
        let server_url = RegistryHost::new(registry);
        let server_url = server_url.credential_key();
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server_url.as_bytes())
                .await
                .map_err(|e| failure(format!("cannot write to it: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| failure(format!("cannot wait for it: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            // Helpers say "credentials not found" on stdout with a non-zero exit.
            if stdout
                .to_ascii_lowercase()
                .contains("credentials not found")
            {
                return Ok(None);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let message = if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                stderr.trim()
            };
            return Err(failure(format!("{} ({message})", output.status)));
        }
        parse_helper_output(&stdout).map_err(failure)
    }
}

/// Parses a helper's `get` answer: `{"ServerURL": "...", "Username": "...", "Secret": "..."}`.
fn parse_helper_output(stdout: &str) -> Result<Option<Credential>, String> {
    #[derive(Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default, deserialize_with = "optional_secret")]
        secret: Option<Secret>,
    }
    let answer: HelperAnswer = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("its answer is not the expected JSON: {e}"))?;
    let secret = answer.secret.unwrap_or_default();
    if answer.username.is_empty() && secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::new(answer.username, secret)))
}

impl CredentialProvider for DockerConfigCredentials {
    fn credentials<'a>(
        &'a self,
        registry: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, CredentialError>> {
        Box::pin(async move {
            let Some(config) = &self.config else {
                return Ok(None);
            };
            match config.lookup(registry)? {
                DockerConfigLookup::None => Ok(None),
                DockerConfigLookup::Inline(credential) => Ok(Some(credential)),
                DockerConfigLookup::Helper { helper, inline } => {
                    match self.run_helper(&helper, registry).await? {
                        Some(credential) => Ok(Some(credential)),
                        None => Ok(inline),
                    }
                }
            }
        })
    }
}

/// Reads an optional JSON string straight into a [`Secret`], so the plain value never sits in
/// a loggable struct.
pub(crate) fn optional_secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(Secret::new))
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;

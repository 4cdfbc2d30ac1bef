//! The registry login a local build engine gets: a private, temporary Docker-format credentials
//! file (mode 0600, in a 0700 folder, deleted when dropped) instead of passwords on a command line
//! that ends up in logs and process listings, plus, for buildah, a `registries.conf` naming the
//! registries reached over plain HTTP (loopback ones included: containers/image then also skips
//! their TLS verification, as it has one setting for both) and a folder of the extra CA
//! certificates to trust.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use omx_core::RegistryHost;
use omx_registry::Credential;
use serde_json::{json, Map, Value};
use tempfile::TempDir;

/// Credentials and registry settings on disk for one build.
#[derive(Debug)]
pub(crate) struct Login {
    dir: TempDir,
}

impl Login {
    /// Writes `config.json` with `credentials` (registry host and its login), a
    /// `registries.conf` where `insecure_hosts` may be reached over plain HTTP and short names
    /// (`FROM ubuntu`) resolve to Docker Hub as Docker resolves them, and `certs/` with a copy of
    /// each of `ca_certificates` (PEM files).
    pub(crate) fn write(
        credentials: &[(String, Credential)],
        insecure_hosts: &[String],
        ca_certificates: &[PathBuf],
    ) -> io::Result<Login> {
        let dir = tempfile::Builder::new()
            .prefix("omx-login-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let mut auths = Map::new();
        for (host, credential) in credentials {
            let pair = format!("{}:{}", credential.username, credential.password.expose());
            let auth = base64::engine::general_purpose::STANDARD.encode(pair);
            auths.insert(host.clone(), json!({ "auth": auth }));
            // Docker looks Docker Hub up under its legacy index URL, not under `docker.io`.
            let key = RegistryHost::new(host);
            if key.is_docker_hub() {
                auths.insert(key.credential_key().to_string(), json!({ "auth": auth }));
            }
        }
        let config = json!({ "auths": Value::Object(auths) });
        write_private(
            &dir.path().join("config.json"),
            config.to_string().as_bytes(),
        )?;
        write_private(
            &dir.path().join("registries.conf"),
            registries_conf(insecure_hosts).as_bytes(),
        )?;
        if !ca_certificates.is_empty() {
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs)?;
            for (position, certificate) in ca_certificates.iter().enumerate() {
                let pem = omx_registry::input::read_user_file(
                    certificate,
                    omx_registry::input::MAX_CONFIG_FILE_BYTES,
                )
                .map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!("CA certificate {}: {error}", certificate.display()),
                    )
                })?;
                // containers/image trusts every `*.crt` of the folder, besides the system roots.
                write_private(&certs.join(format!("ca-{position}.crt")), &pem)?;
            }
        }
        Ok(Login { dir })
    }

    /// The credentials file (`--authfile` of buildah).
    pub(crate) fn auth_file(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// The folder holding `config.json` (`DOCKER_CONFIG` of docker).
    pub(crate) fn docker_config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The folder of extra CA certificates (buildah's `--cert-dir`), when there are any.
    pub(crate) fn cert_dir(&self) -> Option<PathBuf> {
        Some(self.dir.path().join("certs")).filter(|certs| certs.is_dir())
    }

    /// buildah's registries configuration (`CONTAINERS_REGISTRIES_CONF`).
    pub(crate) fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }
}

fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// containers-registries.conf(5), version 2.
fn registries_conf(insecure_hosts: &[String]) -> String {
    let mut text = String::from(
        "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
    );
    for host in insecure_hosts {
        // A JSON string is a valid TOML basic string.
        let quoted = serde_json::to_string(host).expect("a string serializes");
        text.push_str(&format!(
            "\n[[registry]]\nlocation = {quoted}\ninsecure = true\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_private_and_gone_after_drop() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let login = Login::write(
            &[
                (
                    "127.0.0.1:5000".to_string(),
                    Credential::new("AWS", "pass:word"),
                ),
                ("docker.io".to_string(), Credential::new("me", "hub")),
            ],
            &["127.0.0.1:5000".to_string()],
            &[ca.path().to_path_buf()],
        )
        .unwrap();
        let auth_file = login.auth_file();
        let mode = std::fs::metadata(&auth_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(login.docker_config_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o077, 0);
        let config: Value = serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
        // base64("AWS:pass:word"), base64("me:hub") under both Docker Hub keys
        assert_eq!(
            config,
            json!({"auths": {
                "127.0.0.1:5000": {"auth": "QVdTOnBhc3M6d29yZA=="},
                "docker.io": {"auth": "bWU6aHVi"},
                "https://index.docker.io/v1/": {"auth": "bWU6aHVi"}
            }})
        );
        let certs = login.cert_dir().unwrap();
        assert_eq!(
            std::fs::read_to_string(certs.join("ca-0.crt")).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
        assert!(Login::write(&[], &[], &[]).unwrap().cert_dir().is_none());
        let conf = std::fs::read_to_string(login.registries_conf()).unwrap();
        assert!(
            conf.contains("[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true"),
            "{conf}"
        );
        assert!(conf.contains("unqualified-search-registries = [\"docker.io\"]"));
        let dir = login.docker_config_dir().to_path_buf();
        drop(login);
        assert!(!dir.exists());
    }
}

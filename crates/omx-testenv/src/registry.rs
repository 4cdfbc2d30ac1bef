//! A real CNCF distribution registry (`docker-registry`) on a free loopback port.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::http::http_request;
use crate::process::{NotReady, ServerProcess};
use crate::token::{
    TokenServer, TokenSettings, DEFAULT_TOKEN_LIFETIME, TOKEN_ISSUER, TOKEN_SERVICE,
};
use crate::tools::{free_port, require, Tool};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const PORT_ATTEMPTS: usize = 5;

/// A running `docker-registry serve` with filesystem storage in its own temp dir.
///
/// Dropping it kills the process (by PID), reaps it and deletes the temp dir.
pub struct Registry {
    // Field order matters: the process must die before its temp dir is removed.
    process: ServerProcess,
    token_server: Option<TokenServer>,
    port: u16,
    credentials: Option<(String, String)>,
    tls: Option<TlsFiles>,
    storage_dir: PathBuf,
    htpasswd_path: Option<PathBuf>,
    dir: TempDir,
}

/// Paths of the certificates made for a TLS registry.
struct TlsFiles {
    /// Directory holding only `ca.crt`, in the layout skopeo/containers `--cert-dir` expects.
    cert_dir: PathBuf,
    ca_cert: PathBuf,
}

/// Options for [`Registry`]; see [`Registry::builder`].
#[derive(Default, Clone)]
pub struct RegistryBuilder {
    basic_auth: Option<(String, String)>,
    token_auth: Option<(String, String)>,
    token_lifetime: Option<Duration>,
    token_claimed_lifetime: Option<Duration>,
    tls: bool,
    /// DNS names the TLS certificate holds besides `localhost` and `127.0.0.1`.
    tls_names: Vec<String>,
    proxy_of: Option<String>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field(
                "basic_auth_user",
                &self.basic_auth.as_ref().map(|(user, _)| user),
            )
            .field(
                "token_auth_user",
                &self.token_auth.as_ref().map(|(user, _)| user),
            )
            .field("token_lifetime", &self.token_lifetime)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.url())
            .field("pid", &self.process.pid())
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field(
                "token_realm",
                &self.token_server.as_ref().map(TokenServer::realm),
            )
            .field("ca_cert", &self.ca_cert_path())
            .finish()
    }
}

impl RegistryBuilder {
    /// Requires HTTP basic auth with this user and password (htpasswd, bcrypt).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Requires bearer tokens from a [`TokenServer`] started with the registry (Docker token
    /// auth): the token server gives this user every action asked for, anonymous callers
    /// `pull` only, and wrong credentials a `401`.
    pub fn token_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.token_auth = Some((user.into(), password.into()));
        self
    }

    /// How long the registry accepts a token once issued (default 300 s, Docker Hub's); the
    /// token answer's `expires_in` says the same unless [`RegistryBuilder::token_claimed_lifetime`]
    /// is set. Whole seconds; only with [`RegistryBuilder::token_auth`].
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// What the token answer's `expires_in` claims, when it should differ from the real
    /// lifetime. Claiming longer stands in for a token revoked early or a registry whose clock
    /// runs ahead: a client that trusts `expires_in` meets a `401` and must fetch a new token.
    pub fn token_claimed_lifetime(mut self, claimed: Duration) -> Self {
        self.token_claimed_lifetime = Some(claimed);
        self
    }

    /// Serves HTTPS with a server certificate for `127.0.0.1`/`localhost` signed by a fresh
    /// test CA (see [`Registry::ca_cert_path`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Serves HTTPS (as [`RegistryBuilder::tls`]) with these DNS names in the certificate too,
    /// so that a client tunnelled here by a [`ConnectProxy`](crate::ConnectProxy) accepts it as
    /// `quay.io` or `registry-1.docker.io`.
    pub fn tls_names(mut self, names: &[&str]) -> Self {
        self.tls = true;
        self.tls_names = names.iter().map(|name| name.to_string()).collect();
        self
    }

    /// Runs as a pull-through cache of the registry at `upstream_url` (distribution's proxy
    /// mode): a pull fetches from upstream and keeps a copy; pushes are refused. Tests use it to
    /// stand in for an ECR pull-through-cache endpoint.
    pub fn pull_through_cache_of(mut self, upstream_url: impl Into<String>) -> Self {
        self.proxy_of = Some(upstream_url.into());
        self
    }

    /// Starts the registry; panics (with the registry log) if it cannot, and with a hint to run
    /// `scripts/install-deps` when a tool is missing.
    pub fn start(self) -> Registry {
        self.try_start().expect(
            "a required tool is missing and OMX_TESTENV_SKIP=1 is set: use try_start to skip",
        )
    }

    /// Like [`RegistryBuilder::start`] but returns `None` when a tool is missing and
    /// `OMX_TESTENV_SKIP=1` is set.
    pub fn try_start(self) -> Option<Registry> {
        assert!(
            self.basic_auth.is_none() || self.token_auth.is_none(),
            "a registry takes one auth scheme: basic_auth or token_auth, not both"
        );
        assert!(
            self.token_auth.is_some()
                || (self.token_lifetime.is_none() && self.token_claimed_lifetime.is_none()),
            "token lifetimes apply only to a registry with token_auth"
        );
        let mut tools = vec![Tool::DockerRegistry];
        if self.basic_auth.is_some() {
            tools.push(Tool::Htpasswd);
        }
        if self.tls || self.token_auth.is_some() {
            tools.push(Tool::Openssl);
        }
        let paths = require("a docker-registry test server", &tools)?;
        Some(self.launch(&paths))
    }

    fn launch(self, tool_paths: &[PathBuf]) -> Registry {
        let registry_bin = &tool_paths[0];
        let dir = tempfile::Builder::new()
            .prefix("omx-registry-")
            .tempdir()
            .expect("cannot create a temp dir for the test registry");
        let storage_dir = dir.path().join("storage");
        fs::create_dir(&storage_dir).expect("cannot create the registry storage dir");

        let htpasswd_path = self.basic_auth.as_ref().map(|(user, password)| {
            let htpasswd = dir.path().join("htpasswd");
            write_htpasswd(&tool_paths[1], &htpasswd, user, password);
            htpasswd
        });
        let openssl = || tool_paths.last().expect("openssl was required");
        let tls = self
            .tls
            .then(|| make_tls_files(openssl(), dir.path(), &self.tls_names));
        let token_server = self.token_auth.as_ref().map(|(user, password)| {
            let settings = TokenSettings {
                user: user.clone(),
                password: password.clone(),
                lifetime: self.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME),
                claimed_lifetime: self.token_claimed_lifetime,
            };
            TokenServer::start(openssl(), dir.path(), settings)
        });

        let log_path = dir.path().join("registry.log");
        let config_path = dir.path().join("config.yml");
        let secret = hex::encode(Sha256::digest(dir.path().as_os_str().as_encoded_bytes()));
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let config = RegistryConfig {
                port,
                storage_dir: &storage_dir,
                secret: &secret,
                htpasswd: htpasswd_path.as_deref(),
                token: token_server.as_ref(),
                tls: tls.as_ref().map(|_| dir.path().join("tls")),
                proxy_of: self.proxy_of.as_deref(),
            };
            fs::write(&config_path, config.to_yaml()).expect("cannot write the registry config");
            let mut command = Command::new(registry_bin);
            command.arg("serve").arg(&config_path);
            let mut process =
                ServerProcess::spawn(command, &log_path).expect("cannot spawn docker-registry");
            let host = format!("127.0.0.1:{port}");
            let is_tls = tls.is_some();
            match process.wait_ready(READY_TIMEOUT, || registry_answers(&host, is_tls)) {
                Ok(()) => {
                    return Registry {
                        process,
                        token_server,
                        port,
                        credentials: self.basic_auth.or(self.token_auth),
                        tls,
                        storage_dir,
                        htpasswd_path,
                        dir,
                    }
                }
                Err(NotReady::Exited(_)) if process.log().contains("address already in use") => {
                    continue
                }
                Err(NotReady::Exited(status)) => panic!(
                    "docker-registry on port {port} exited ({status}) before answering; log:\n{}",
                    process.log()
                ),
                Err(NotReady::TimedOut) => panic!(
                    "docker-registry on port {port} did not answer GET /v2/ within {READY_TIMEOUT:?}; log:\n{}",
                    process.log()
                ),
            }
        }
        panic!("docker-registry could not bind a free port after {PORT_ATTEMPTS} attempts");
    }
}

/// A plain registry answers `GET /v2/` with 200 or 401. A TLS one is probed with plain HTTP:
/// Go's TLS listener answers that with a 400, which proves it is up with its certificate loaded.
fn registry_answers(host: &str, tls: bool) -> bool {
    match http_request(host, "GET", "/v2/", &[], &[]) {
        Ok(response) if tls => response.status == 400,
        Ok(response) => matches!(response.status, 200 | 401),
        Err(_) => false,
    }
}

struct RegistryConfig<'a> {
    port: u16,
    storage_dir: &'a Path,
    secret: &'a str,
    htpasswd: Option<&'a Path>,
    token: Option<&'a TokenServer>,
    tls: Option<PathBuf>,
    proxy_of: Option<&'a str>,
}

impl RegistryConfig<'_> {
    fn to_yaml(&self) -> String {
        let mut yaml = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             health:\n  storagedriver:\n    enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n",
            storage = yaml_path(self.storage_dir),
            port = self.port,
            secret = self.secret,
        );
        if let Some(tls_dir) = &self.tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_path(&tls_dir.join("server.crt")),
                yaml_path(&tls_dir.join("server.key")),
            ));
        }
        if let Some(htpasswd) = self.htpasswd {
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: omx-testenv\n    path: {}\n",
                yaml_path(htpasswd)
            ));
        }
        if let Some(token) = self.token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    \
                 issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                token.realm(),
                yaml_path(token.certificate_path())
            ));
        }
        if let Some(upstream) = self.proxy_of {
            yaml.push_str(&format!("proxy:\n  remoteurl: '{upstream}'\n"));
        }
        yaml
    }
}

/// A single-quoted YAML scalar for a path.
fn yaml_path(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

fn write_htpasswd(htpasswd_bin: &Path, file: &Path, user: &str, password: &str) {
    // -B bcrypt is the only hash distribution accepts; -n prints instead of editing a file.
    let output = Command::new(htpasswd_bin)
        .args(["-Bbn", user, password])
        .output()
        .expect("cannot run htpasswd");
    assert!(
        output.status.success(),
        "htpasswd -Bbn {user} <password> failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    fs::write(file, &output.stdout).expect("cannot write the htpasswd file");
}

/// Makes `tls/{ca.crt,ca.key,server.crt,server.key}` and `certs/ca.crt` under `dir`.
///
/// A separate CA (rather than one self-signed server certificate) is used because webpki-based
/// clients such as rustls reject a certificate with `CA:TRUE` presented as the server's own.
fn make_tls_files(openssl: &Path, dir: &Path, names: &[String]) -> TlsFiles {
    let tls_dir = dir.join("tls");
    let cert_dir = dir.join("certs");
    fs::create_dir_all(&tls_dir).expect("cannot create the TLS dir");
    fs::create_dir_all(&cert_dir).expect("cannot create the cert dir");
    let alt_names: String = names.iter().map(|name| format!(",DNS:{name}")).collect();
    fs::write(
        tls_dir.join("server.ext"),
        format!(
            "subjectAltName=IP:127.0.0.1,DNS:localhost{alt_names}\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("cannot write the certificate extensions file");
    let serial = format!(
        "0x{}",
        &hex::encode(Sha256::digest(dir.as_os_str().as_encoded_bytes()))[..16]
    );
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "7",
            "-subj",
            "/CN=omx-testenv CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "7",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    ];
    crate::tools::run_openssl_steps(openssl, &tls_dir, &steps);
    let ca_cert = tls_dir.join("ca.crt");
    fs::copy(&ca_cert, cert_dir.join("ca.crt")).expect("cannot copy the CA certificate");
    TlsFiles { cert_dir, ca_cert }
}

impl Registry {
    /// An anonymous plain-HTTP registry; panics if it cannot start.
    pub fn start() -> Registry {
        RegistryBuilder::default().start()
    }

    /// An anonymous plain-HTTP registry, or `None` when `docker-registry` is missing and
    /// `OMX_TESTENV_SKIP=1` is set.
    pub fn try_start() -> Option<Registry> {
        RegistryBuilder::default().try_start()
    }

    /// Options: basic or token auth, TLS, pull-through cache.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a TLS registry.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// True when it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The user and password it accepts (basic auth, or token auth through its token server).
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// The token server that issues its bearer tokens, when it uses token auth.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The htpasswd file, when it requires basic auth.
    pub fn htpasswd_path(&self) -> Option<&Path> {
        self.htpasswd_path.as_deref()
    }

    /// PEM of the test CA that signed the server certificate (TLS registries only).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca_cert.as_path())
    }

    /// A directory holding only `ca.crt`, as `skopeo --dest-cert-dir` expects (TLS only).
    pub fn cert_dir(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.cert_dir.as_path())
    }

    /// The registry's stdout and stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The log file path.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The filesystem storage root (`docker/registry/v2/...` lives below it).
    pub fn storage_dir(&self) -> &Path {
        &self.storage_dir
    }

    /// The process id of the `docker-registry` child.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The temp dir holding config, storage, log and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

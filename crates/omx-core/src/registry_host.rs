//! One registry, however it is spelled: `https://index.docker.io/v1/` in a Docker config,
//! `Quay.io/` on a command line, `http://127.0.0.1:5000` as an insecure registry, `docker.io` in a
//! reference. [`RegistryHost`] is the canonical `host[:port]` they all reduce to; it knows Docker
//! Hub's names and API host, the key Docker's credential helpers are asked with, loopback hosts,
//! and which hosts are ECR private registries.

use std::fmt;
use std::net::IpAddr;

use crate::ecr_host::{parse_ecr_registry_host, EcrRegistryHost};

/// Docker Hub's canonical domain, the one references name it by.
pub const DOCKER_HUB: &str = "docker.io";

/// Other spellings of Docker Hub's domain that references may use, read as [`DOCKER_HUB`]
/// (distribution/reference's `legacyDefaultDomain` is `index.docker.io`; `registry-1.docker.io`
/// is the API host, which people copy from logs).
pub const DOCKER_HUB_ALIASES: [&str; 2] = ["index.docker.io", DOCKER_HUB_API_HOST];

/// Another Docker Hub host that people and CI scripts log in to and write as a config key. The
/// credential lookup has always read it as Docker Hub; references do not (distribution/reference
/// aliases only `index.docker.io`), so it is not among [`DOCKER_HUB_ALIASES`].
const DOCKER_HUB_WEB_HOST: &str = "registry.hub.docker.com";

/// The host serving Docker Hub's registry API: `docker.io` itself answers no `/v2/`.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The key Docker stores Docker Hub's login under and passes to credential helpers as the server
/// URL: moby registry/config.go `IndexServer`, which `GetAuthConfigKey` answers for the official
/// index (`docker.io`, `index.docker.io`) while every other registry is keyed by its
/// `host[:port]`; docker/cli cli/command/registry.go `getAuthConfigKey` does the same.
pub const DOCKER_HUB_CREDENTIAL_KEY: &str = "https://index.docker.io/v1/";

/// A registry's canonical `host[:port]`: lower case, no scheme, no path, Docker Hub's aliases
/// read as `docker.io`. Two spellings are the same registry exactly when their `RegistryHost`s
/// are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryHost(String);

impl RegistryHost {
    /// Reads any spelling of a registry: surrounding whitespace and one `https://` or `http://`
    /// go, then everything from the first `/`. That is how Docker matches `auths` keys to a
    /// registry (docker/cli cli/config/credentials/file_store.go `ConvertToHostname`, copied
    /// from moby registry `ConvertToHostname`; containers/image pkg/docker/config
    /// `convertToHostname` is the same), so `https://index.docker.io/v1/` is `index.docker.io`.
    /// Host names are case-insensitive (RFC 4343), so the host is lower-cased. Then Docker Hub's
    /// aliases (`index.docker.io`, `registry-1.docker.io`, `registry.hub.docker.com`) become
    /// `docker.io`, as containers/image `normalizeRegistry` folds `registry-1.docker.io` and
    /// `docker.io` into one key.
    pub fn new(spelling: &str) -> RegistryHost {
        let bare = bare(spelling);
        let host = bare.split('/').next().unwrap_or(bare).to_ascii_lowercase();
        if DOCKER_HUB_ALIASES.contains(&host.as_str()) || host == DOCKER_HUB_WEB_HOST {
            RegistryHost(DOCKER_HUB.to_string())
        } else {
            RegistryHost(host)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB
    }

    /// The host serving the registry's API: Docker Hub's is [`DOCKER_HUB_API_HOST`], every
    /// other registry serves it at its own host.
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API_HOST
        } else {
            &self.0
        }
    }

    /// The server URL Docker passes to a credential helper and writes as the `auths` key:
    /// [`DOCKER_HUB_CREDENTIAL_KEY`] for Docker Hub, else the host (`GetAuthConfigKey`, cited
    /// there).
    pub fn credential_key(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_CREDENTIAL_KEY
        } else {
            &self.0
        }
    }

    /// The host without its port: `[::1]:5000` is `::1`, a bare IPv6 address (more than one
    /// `:`) has no port.
    pub fn hostname(&self) -> &str {
        self.split_port().0
    }

    pub fn port(&self) -> Option<&str> {
        self.split_port().1
    }

    fn split_port(&self) -> (&str, Option<&str>) {
        split_port(&self.0)
    }

    /// `localhost` or a loopback address (`127.0.0.0/8`, `::1`), with or without a port.
    pub fn is_loopback(&self) -> bool {
        let name = self.hostname();
        name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether this host, given as a setting (an insecure registry), covers `other`: the same
    /// host and port, or, named without a port, the same host on any port.
    pub fn covers(&self, other: &RegistryHost) -> bool {
        self == other || (self.port().is_none() && self.hostname() == other.hostname())
    }

    /// The account, region and endpoint of an ECR private registry host (the forms
    /// [`parse_ecr_registry_host`] reads), `None` for any other registry.
    pub fn ecr(&self) -> Option<EcrRegistryHost> {
        parse_ecr_registry_host(&self.0)
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RegistryHost {
    fn from(spelling: &str) -> RegistryHost {
        RegistryHost::new(spelling)
    }
}

/// `host[:port]` split at the port: `[::1]:5000` is `::1` and `5000`, and a bare IPv6 address
/// (more than one `:`) has no port.
pub fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((address, after)) => (address, after.strip_prefix(':')),
            None => (rest, None),
        };
    }
    if host.matches(':').count() > 1 {
        return (host, None);
    }
    match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// A registry spelling without surrounding whitespace, one leading `https://` or `http://` and
/// trailing slashes; a path and the case stay, for a caller that checks the rest is a host.
pub fn bare(spelling: &str) -> &str {
    let spelling = spelling.trim();
    spelling
        .strip_prefix("https://")
        .or_else(|| spelling.strip_prefix("http://"))
        .unwrap_or(spelling)
        .trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr_host::EcrEndpoint;

    fn host(spelling: &str) -> String {
        RegistryHost::new(spelling).to_string()
    }

    #[test]
    fn docker_hub_aliases_are_docker_hub() {
        for alias in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "registry.hub.docker.com",
            "https://index.docker.io/v1/",
            "Registry-1.Docker.io",
        ] {
            let parsed = RegistryHost::new(alias);
            assert!(parsed.is_docker_hub(), "{alias}");
            assert_eq!(parsed.as_str(), "docker.io", "{alias}");
        }
        for not_hub in ["hub.docker.com.evil.io", "docker.io.example", "ghcr.io"] {
            assert!(!RegistryHost::new(not_hub).is_docker_hub(), "{not_hub}");
        }
    }

    #[test]
    fn docker_hub_api_host_and_credential_key() {
        let hub = RegistryHost::new("docker.io");
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        assert_eq!(hub.credential_key(), "https://index.docker.io/v1/");
        for other in ["quay.io", "127.0.0.1:5000"] {
            assert_eq!(RegistryHost::new(other).api_host(), other);
            assert_eq!(RegistryHost::new(other).credential_key(), other);
        }
    }

    #[test]
    fn schemes_paths_slashes_case_and_whitespace_are_spelling() {
        assert_eq!(host("http://Localhost:5000/v2/"), "localhost:5000");
        assert_eq!(host("https://Quay.io/"), "quay.io");
        assert_eq!(host("  quay.io  "), "quay.io");
        assert_eq!(host("quay.io/some/path"), "quay.io");
        assert_eq!(host("quay.io"), "quay.io");
        assert_eq!(RegistryHost::new("https://Quay.io/"), "quay.io".into());
        assert_ne!(
            RegistryHost::new("mirror.example.org"),
            RegistryHost::new("quay.io")
        );
    }

    #[test]
    fn bare_keeps_the_path_and_case() {
        assert_eq!(bare(" http://Plain.lan/ "), "Plain.lan");
        assert_eq!(bare("https://host:5000/path//"), "host:5000/path");
        assert_eq!(bare("registry.lan:5000"), "registry.lan:5000");
    }

    #[test]
    fn ports_split_off_the_host() {
        let cases = [
            ("registry.lan:5000", "registry.lan", Some("5000")),
            ("registry.lan", "registry.lan", None),
            ("[::1]:5000", "::1", Some("5000")),
            ("[::1]", "::1", None),
            ("::1", "::1", None),
            ("127.0.0.1:80", "127.0.0.1", Some("80")),
        ];
        for (spelling, name, port) in cases {
            let parsed = RegistryHost::new(spelling);
            assert_eq!(parsed.hostname(), name, "{spelling}");
            assert_eq!(parsed.port(), port, "{spelling}");
        }
        assert_ne!(
            RegistryHost::new("registry.lan:5000"),
            RegistryHost::new("registry.lan:6000")
        );
    }

    #[test]
    fn loopback_hosts() {
        for loopback in [
            "localhost",
            "LOCALHOST:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
            "::1",
            "http://127.0.0.1:5000/",
        ] {
            assert!(RegistryHost::new(loopback).is_loopback(), "{loopback}");
        }
        for not_loopback in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:1",
            "quay.io:443",
        ] {
            assert!(
                !RegistryHost::new(not_loopback).is_loopback(),
                "{not_loopback}"
            );
        }
    }

    #[test]
    fn a_setting_without_port_covers_every_port() {
        let listed = |s: &str| RegistryHost::new(s);
        assert!(listed("registry.lan:5000").covers(&"registry.lan:5000".into()));
        assert!(!listed("registry.lan:5000").covers(&"registry.lan:6000".into()));
        assert!(!listed("registry.lan:5000").covers(&"registry.lan".into()));
        assert!(listed("http://plain.lan/").covers(&"plain.lan:8080".into()));
        assert!(listed("Plain.lan").covers(&"plain.lan".into()));
        assert!(!listed("plain.lan").covers(&"other.lan".into()));
        assert!(listed("[::1]").covers(&"[::1]:5000".into()));
    }

    #[test]
    fn ecr_hosts_in_every_supported_form() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "us-east-1",
                EcrEndpoint::Standard,
            ),
            (
                "https://123456789012.DKR.ECR.cn-north-1.amazonaws.com.cn/",
                "cn-north-1",
                EcrEndpoint::Standard,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                EcrEndpoint::Fips,
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                "eu-west-1",
                EcrEndpoint::DualStack,
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-2.on.aws",
                "us-east-2",
                EcrEndpoint::FipsDualStack,
            ),
        ];
        for (spelling, region, endpoint) in cases {
            let ecr = RegistryHost::new(spelling)
                .ecr()
                .unwrap_or_else(|| panic!("{spelling}"));
            assert_eq!(ecr.account, "123456789012", "{spelling}");
            assert_eq!(ecr.region, region, "{spelling}");
            assert_eq!(ecr.endpoint, endpoint, "{spelling}");
        }
        for not_ecr in [
            "public.ecr.aws",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
            "docker.io",
        ] {
            assert!(RegistryHost::new(not_ecr).ecr().is_none(), "{not_ecr}");
        }
    }
}

//! A Docker token server (the `realm` of a token-auth registry) on a free loopback port.
//!
//! It answers `GET /token?service=..&scope=repository:NAME:pull,push` as the Docker token
//! specification says, with `{"token", "access_token", "expires_in"}`. The token is
//! a JWT signed ES256 whose `x5c` header holds a self-signed certificate that the registry
//! trusts (its `rootcertbundle`). The right Basic credentials get every action asked for; no
//! credentials get `pull` only (anonymous pull, as Docker Hub grants on public repositories);
//! wrong credentials get `401`. Like [`crate::FaultProxy`] it runs on std threads, so it works
//! from plain tests and from `#[tokio::test]`, and it records every request.

use std::fmt;
use std::fs;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use crate::head::read_head;
use crate::server::Acceptor;

/// The `service` the registry names in its challenge and expects as the token's audience.
pub const TOKEN_SERVICE: &str = "omx-testenv";
/// The `iss` of every token; the registry trusts only this issuer.
pub const TOKEN_ISSUER: &str = "omx-testenv-issuer";
/// Docker Hub's token lifetime, used unless a test asks for another.
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// distribution accepts a token this long past its `exp` (and before its `nbf`) for clock
/// skew. Tokens are dated this much earlier, so a registry stops accepting one exactly when
/// its lifetime is over, and a test need not wait a minute more to see it expire.
const REGISTRY_LEEWAY_SECS: u64 = 60;
/// A client that connects and sends nothing does not hold a thread for long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a [`TokenServer`] grants, and for how long.
#[derive(Clone)]
pub(crate) struct TokenSettings {
    pub(crate) user: String,
    pub(crate) password: String,
    /// How long the registry accepts a token.
    pub(crate) lifetime: Duration,
    /// What the answer's `expires_in` says; `None` says the real lifetime.
    pub(crate) claimed_lifetime: Option<Duration>,
}

/// One request to the token endpoint, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic-auth user sent, `None` for an anonymous request.
    pub user: Option<String>,
    /// Every `scope` asked for, in order (`repository:NAME:pull,push`).
    pub scopes: Vec<String>,
    /// The status answered: 200 with a token, 401 for wrong credentials, 400 for a bad request.
    pub status: u16,
}

/// The ES256 key and the self-signed certificate (DER) the registry trusts for it.
struct Signer {
    key_pair: EcdsaKeyPair,
    certificate_der: Vec<u8>,
    rng: SystemRandom,
}

struct Shared {
    host: String,
    settings: TokenSettings,
    signer: Signer,
    requests: Mutex<Vec<TokenRequest>>,
    next_token_id: AtomicU64,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<TokenRequest>> {
        // A panicking connection thread must not take the recorded requests with it.
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running token server; dropping it stops accepting and joins the acceptor thread.
pub struct TokenServer {
    shared: Arc<Shared>,
    certificate_path: PathBuf,
    _acceptor: Acceptor,
}

impl fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .field("user", &self.shared.settings.user)
            .field("lifetime", &self.shared.settings.lifetime)
            .finish()
    }
}

impl TokenServer {
    /// Makes a signing key and certificate with `openssl` under `dir` and starts serving.
    pub(crate) fn start(openssl: &Path, dir: &Path, settings: TokenSettings) -> TokenServer {
        let (key_der, certificate_der, certificate_path) = make_signing_files(openssl, dir);
        let rng = SystemRandom::new();
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key_der, &rng)
            .unwrap_or_else(|error| panic!("ring rejects the PKCS#8 key openssl made: {error}"));
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("cannot bind the token server on 127.0.0.1");
        let host = listener
            .local_addr()
            .expect("bound listener has an address")
            .to_string();
        let shared = Arc::new(Shared {
            host,
            settings,
            signer: Signer {
                key_pair,
                certificate_der,
                rng,
            },
            requests: Mutex::new(Vec::new()),
            next_token_id: AtomicU64::new(0),
        });
        let acceptor = Acceptor::start(
            listener,
            "token-server",
            Arc::clone(&shared),
            |stream, shared| {
                // An I/O error just ends this client connection.
                let _ = serve_connection(stream, shared);
            },
        );
        TokenServer {
            shared,
            certificate_path,
            _acceptor: acceptor,
        }
    }

    /// `http://127.0.0.1:PORT/token`, the realm the registry's challenges name.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.shared.host)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.shared.host.clone()
    }

    /// PEM of the self-signed certificate whose key signs the tokens.
    pub fn certificate_path(&self) -> &Path {
        &self.certificate_path
    }

    /// How long the registry accepts a token from the moment it is issued.
    pub fn token_lifetime(&self) -> Duration {
        self.shared.settings.lifetime
    }

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests().clone()
    }

    /// How many requests were answered (with a token or not).
    pub fn request_count(&self) -> usize {
        self.shared.requests().len()
    }

    /// How many answered requests asked for `scope` (e.g. `repository:app:pull,push`).
    pub fn requests_for(&self, scope: &str) -> usize {
        self.shared
            .requests()
            .iter()
            .filter(|request| request.scopes.iter().any(|asked| asked == scope))
            .count()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.requests().clear();
    }
}

/// Writes `token/{key.pem,key.der,cert.pem,cert.der}` under `dir`; returns the PKCS#8 DER
/// key, the DER certificate and the PEM certificate's path (the registry's rootcertbundle).
fn make_signing_files(openssl: &Path, dir: &Path) -> (Vec<u8>, Vec<u8>, PathBuf) {
    let token_dir = dir.join("token");
    fs::create_dir_all(&token_dir).expect("cannot create the token signing dir");
    let steps: [&[&str]; 4] = [
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "key.pem",
        ],
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
        ],
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "7",
            "-subj",
            "/CN=omx-testenv token signer",
        ],
        &[
            "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
        ],
    ];
    crate::tools::run_openssl_steps(openssl, &token_dir, &steps);
    let read = |name: &str| {
        fs::read(token_dir.join(name)).unwrap_or_else(|error| panic!("cannot read {name}: {error}"))
    };
    (
        read("key.der"),
        read("cert.der"),
        token_dir.join("cert.pem"),
    )
}

/// Answers one request and closes the connection: token requests are rare enough that
/// keep-alive would only add framing code.
fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    // A token request has no body, and only its credentials matter among the headers.
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = head.start_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let answer = if method != "GET" || path != "/token" {
        Answer::error(404, "NOT_FOUND", "only GET /token is served here")
    } else {
        shared.answer(query, head.header("authorization"))
    };
    answer.write(stream)
}

struct Answer {
    status: u16,
    body: String,
    challenge: bool,
}

impl Answer {
    fn error(status: u16, code: &str, message: &str) -> Answer {
        Answer {
            status,
            body: json!({"errors": [{"code": code, "message": message}]}).to_string(),
            challenge: status == 401,
        }
    }

    fn write(&self, mut stream: TcpStream) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.body.len()
        );
        if self.challenge {
            head.push_str("WWW-Authenticate: Basic realm=\"omx-testenv token server\"\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(self.body.as_bytes())?;
        stream.flush()
    }
}

/// Who is asking, after checking the Basic credentials (if any).
enum Caller {
    Anonymous,
    User(String),
    Rejected(Option<String>),
}

impl Shared {
    /// Decides the answer to `GET /token?<query>` and records the request before it is sent,
    /// so a test that reads the records once its client has the answer sees this one.
    fn answer(&self, query: &str, authorization: Option<&str>) -> Answer {
        let mut service = None;
        let mut scopes = Vec::new();
        for (name, value) in query_pairs(query) {
            match name.as_str() {
                "service" => service = Some(value),
                // The spec allows several scopes in one parameter, separated by spaces.
                "scope" => {
                    scopes.extend(value.split(' ').filter(|s| !s.is_empty()).map(String::from))
                }
                _ => {}
            }
        }
        let caller = self.caller(authorization);
        let answer = match (&caller, service.as_deref()) {
            (_, Some(service)) if service != TOKEN_SERVICE => Answer::error(
                400,
                "UNSUPPORTED",
                &format!(
                    "unknown service {service:?}; this server issues tokens for {TOKEN_SERVICE:?}"
                ),
            ),
            (_, None) => Answer::error(400, "UNSUPPORTED", "the service parameter is missing"),
            (Caller::Rejected(_), _) => {
                Answer::error(401, "UNAUTHORIZED", "incorrect username or password")
            }
            (Caller::Anonymous, _) => self.token_answer(None, &scopes),
            (Caller::User(user), _) => self.token_answer(Some(user), &scopes),
        };
        let user = match caller {
            Caller::Anonymous => None,
            Caller::User(user) => Some(user),
            Caller::Rejected(user) => user,
        };
        self.requests().push(TokenRequest {
            user,
            scopes,
            status: answer.status,
        });
        answer
    }

    fn caller(&self, authorization: Option<&str>) -> Caller {
        let Some(value) = authorization else {
            return Caller::Anonymous;
        };
        let decoded = value
            .strip_prefix("Basic ")
            .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|pair| pair.split_once(':'))
        else {
            return Caller::Rejected(None);
        };
        let settings = &self.settings;
        if user == settings.user && password == settings.password {
            Caller::User(user.to_string())
        } else {
            Caller::Rejected(Some(user.to_string()))
        }
    }

    fn token_answer(&self, user: Option<&str>, scopes: &[String]) -> Answer {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| granted_access(scope, user.is_some()))
            .collect();
        let token = self.sign(user.unwrap_or_default(), access);
        let settings = &self.settings;
        let expires_in = settings.claimed_lifetime.unwrap_or(settings.lifetime);
        Answer {
            status: 200,
            body: json!({
                "token": token,
                "access_token": token,
                "expires_in": expires_in.as_secs(),
            })
            .to_string(),
            challenge: false,
        }
    }

    /// A compact JWS (ES256) with the claims distribution's token package checks.
    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        let now = unix_seconds(SystemTime::now());
        let issued = now.saturating_sub(REGISTRY_LEEWAY_SECS);
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.signer.certificate_der)],
        });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": issued + self.settings.lifetime.as_secs(),
            "nbf": issued,
            "iat": issued,
            "jti": format!("omx-testenv-{}", self.next_token_id.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .signer
            .key_pair
            .sign(&self.signer.rng, signing_input.as_bytes())
            .expect("ES256 signing with a valid key does not fail");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// The `access` entry for one scope: every action for a signed-in user, `pull` alone for an
/// anonymous one; `None` when nothing is granted or the scope is not `TYPE:NAME:ACTIONS`.
fn granted_access(scope: &str, signed_in: bool) -> Option<serde_json::Value> {
    // Names may hold ':' (a registry host with a port), so type is cut at the first colon
    // and actions at the last, as distribution's own parser does.
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let granted: Vec<&str> = actions
        .split(',')
        .filter(|action| !action.is_empty() && (signed_in || *action == "pull"))
        .collect();
    (!granted.is_empty()).then(|| json!({"type": kind, "name": name, "actions": granted}))
}

/// `name=value` pairs of a URL query, percent-decoded (`+` is a space, as in forms).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex_pair = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex_pair) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_callers_get_pull_only_and_odd_scopes_nothing() {
        assert_eq!(
            granted_access("repository:ns/app:pull,push", false),
            Some(json!({"type": "repository", "name": "ns/app", "actions": ["pull"]}))
        );
        assert_eq!(
            granted_access("repository:ns/app:pull,push", true),
            Some(json!({"type": "repository", "name": "ns/app", "actions": ["pull", "push"]}))
        );
        assert_eq!(
            granted_access("repository:host:5000/app:push", true),
            Some(json!({"type": "repository", "name": "host:5000/app", "actions": ["push"]}))
        );
        assert_eq!(granted_access("repository:ns/app:push", false), None);
        assert_eq!(granted_access("no-colons", true), None);
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(
            query_pairs("service=omx-testenv&scope=repository%3Ans%2Fapp%3Apull%2Cpush&x"),
            vec![
                ("service".to_string(), "omx-testenv".to_string()),
                (
                    "scope".to_string(),
                    "repository:ns/app:pull,push".to_string()
                ),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
    }
}

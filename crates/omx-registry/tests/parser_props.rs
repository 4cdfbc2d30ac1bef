//! Property tests as fuzzing for everything the registry client parses from the outside world:
//! `WWW-Authenticate` challenges, manifests (bytes and `Content-Type` as served), platforms,
//! `Retry-After`, Docker config files and `USER:PASSWORD` arguments. Arbitrary input must never
//! panic; well-formed input must read back exactly; no credential may appear in an error.
//!
//! Case counts follow proptest's default (256), overridable with `PROPTEST_CASES`.

use omx_core::report::error_chain;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use omx_core::Digest;
use omx_registry::auth::challenge::{parse_challenges, Challenge};
use omx_registry::manifest::media_type;
use omx_registry::retry::parse_retry_after;
use omx_registry::{
    Credential, Descriptor, DockerConfig, Manifest, ManifestKind, Platform, RetryPolicy,
};
use proptest::prelude::*;
use serde_json::{json, Value};

// ----- WWW-Authenticate ---------------------------------------------------------------------

/// An RFC 7230 token.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// A challenge whose parameters have lower-case names (the parser lower-cases them) and any
/// printable value, sometimes sent as a bare token.
fn challenge() -> impl Strategy<Value = (Challenge, Vec<bool>)> {
    (
        token(),
        prop::collection::vec(
            (
                "[a-z][a-z0-9_-]{0,10}",
                prop_oneof!["\\PC{0,24}", "[A-Za-z0-9:/._=-]{1,24}"],
                any::<bool>(),
            ),
            0..5,
        ),
    )
        .prop_map(|(scheme, params)| {
            let quoted = params.iter().map(|(_, _, quoted)| *quoted).collect();
            let challenge = Challenge {
                scheme,
                params: params
                    .into_iter()
                    .map(|(name, value, _)| (name, value))
                    .collect(),
            };
            (challenge, quoted)
        })
}

/// How a server would write the challenge: quoted-strings escaped, bare values only where they
/// are plain enough to be sent bare.
fn render(challenge: &Challenge, quoted: &[bool]) -> String {
    let params: Vec<String> = challenge
        .params
        .iter()
        .zip(quoted)
        .map(|((name, value), &quoted)| {
            let bare_ok = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":/._=-".contains(c));
            if bare_ok && !quoted {
                format!("{name}={value}")
            } else {
                let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                format!("{name}=\"{escaped}\"")
            }
        })
        .collect();
    if params.is_empty() {
        challenge.scheme.clone()
    } else {
        format!("{} {}", challenge.scheme, params.join(", "))
    }
}

// ----- manifests ----------------------------------------------------------------------------

fn digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}")),
        "[0-9a-f]{128}".prop_map(|hex| format!("sha512:{hex}")),
    ]
    .prop_map(|text| text.parse().expect("a well-formed digest"))
}

fn platform() -> impl Strategy<Value = Platform> {
    (
        "[a-z]{1,8}",
        "[a-z0-9]{1,8}",
        proptest::option::of("v[0-9]"),
    )
        .prop_map(|(os, architecture, variant)| {
            Platform::new(&os, &architecture, variant.as_deref())
        })
}

fn descriptor(with_platform: bool) -> impl Strategy<Value = Descriptor> {
    (
        "[a-z./+-]{0,40}",
        digest(),
        any::<u64>(),
        proptest::option::of(platform()),
    )
        .prop_map(move |(media_type, digest, size, platform)| Descriptor {
            media_type,
            digest,
            size,
            platform: platform.filter(|_| with_platform),
            urls: Vec::new(),
        })
}

fn descriptor_json(descriptor: &Descriptor) -> Value {
    let mut value = json!({
        "mediaType": descriptor.media_type,
        "digest": descriptor.digest.to_string(),
        "size": descriptor.size,
    });
    if let Some(platform) = &descriptor.platform {
        value["platform"] = serde_json::to_value(platform).expect("a platform serializes");
    }
    value
}

/// Arbitrary JSON, to feed parsers documents of the wrong shape.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
        prop_oneof![
            Just(media_type::OCI_MANIFEST),
            Just(media_type::OCI_INDEX),
            Just(media_type::DOCKER_MANIFEST),
            Just(media_type::DOCKER_MANIFEST_LIST),
            Just(media_type::DOCKER_SCHEMA1),
        ]
        .prop_map(|mt| json!(mt)),
        digest().prop_map(|d| json!(d.to_string())),
    ];
    let keys = prop_oneof![
        Just("schemaVersion".to_string()),
        Just("mediaType".to_string()),
        Just("config".to_string()),
        Just("layers".to_string()),
        Just("manifests".to_string()),
        Just("digest".to_string()),
        Just("size".to_string()),
        Just("platform".to_string()),
        Just("urls".to_string()),
        "[a-z]{0,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just(media_type::OCI_MANIFEST.to_string()),
        Just(media_type::OCI_INDEX.to_string()),
        Just(media_type::DOCKER_MANIFEST.to_string()),
        Just(media_type::DOCKER_MANIFEST_LIST.to_string()),
        Just(media_type::DOCKER_SCHEMA1_SIGNED.to_string()),
        Just("application/json; charset=utf-8".to_string()),
        Just(String::new()),
        any::<String>(),
    ])
}

fn is_known_manifest_type(mt: &str) -> bool {
    media_type::is_image(mt) || media_type::is_index(mt)
}

// ----- Docker config ------------------------------------------------------------------------

const SECRET_USER: &str = "robot";

fn base64(text: &str) -> String {
    omx_testenv::base64_encode(text.as_bytes())
}

/// Docker config files with a secret (and its Basic form) in well-formed and in mistyped places.
fn docker_config_with(secret: &str, shape: usize, host: &str) -> String {
    let auth = base64(&format!("{SECRET_USER}:{secret}"));
    let value = match shape {
        0 => json!({"auths": {host: {"auth": auth}}}),
        1 => json!({"auths": {host: {"username": SECRET_USER, "password": secret}}}),
        2 => json!({"auths": {host: {"auth": format!("{auth}!!")}}}),
        3 => json!({"auths": {host: {"auth": base64(secret)}}}),
        4 => json!({"auths": {host: {"auth": auth, "password": 7}}}),
        5 => json!({"auths": {host: {"username": SECRET_USER, "password": [secret]}}}),
        6 => json!({"auths": [auth]}),
        7 => json!({"auths": {host: {"auth": auth}}, "credsStore": 5}),
        _ => json!({"auths": {host: {"auth": auth}}, "credHelpers": {host: [secret]}}),
    };
    value.to_string()
}

proptest! {
    #[test]
    fn challenges_never_panic(
        headers in prop::collection::vec(
            prop_oneof![
                any::<String>(),
                "[A-Za-z ,=\"\\\\]{0,40}",
                "(Bearer|Basic) ([a-z]{1,6}=(\"[^\"]{0,10}\"?|[a-z:/]{0,10}),? ?){0,4}",
            ],
            0..4,
        )
    ) {
        let challenges = parse_challenges(headers.iter().map(String::as_str));
        for challenge in &challenges {
            prop_assert!(!challenge.scheme.is_empty());
            for (name, _) in &challenge.params {
                prop_assert_eq!(name.clone(), name.to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn challenges_read_back(
        rendered in prop::collection::vec(challenge(), 1..4),
        split_into_headers in any::<bool>(),
    ) {
        let expected: Vec<Challenge> = rendered.iter().map(|(c, _)| c.clone()).collect();
        let texts: Vec<String> = rendered.iter().map(|(c, quoted)| render(c, quoted)).collect();
        let parsed = if split_into_headers {
            parse_challenges(texts.iter().map(String::as_str))
        } else {
            parse_challenges([texts.join(", ").as_str()])
        };
        prop_assert_eq!(parsed, expected, "{:?}", texts);
    }

    #[test]
    fn manifests_of_arbitrary_bytes_never_panic(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
        content_type in content_type(),
    ) {
        let body = Bytes::from(body);
        let digest = Digest::sha256_of(&body);
        if let Ok(manifest) = Manifest::parse(body.clone(), content_type.as_deref(), digest.clone()) {
            // What gets pushed back is exactly what was served, under a manifest media type.
            prop_assert_eq!(&manifest.bytes, &body);
            prop_assert_eq!(&manifest.digest, &digest);
            prop_assert!(is_known_manifest_type(&manifest.media_type), "{}", manifest.media_type);
            match &manifest.kind {
                ManifestKind::Index(_) => prop_assert!(media_type::is_index(&manifest.media_type)),
                ManifestKind::Image(_) => prop_assert!(media_type::is_image(&manifest.media_type)),
            }
        }
    }

    #[test]
    fn image_manifests_read_back(
        config in descriptor(false),
        layers in prop::collection::vec(descriptor(false), 0..6),
        docker in any::<bool>(),
        declared_in_header in any::<bool>(),
    ) {
        let mt = if docker { media_type::DOCKER_MANIFEST } else { media_type::OCI_MANIFEST };
        let document = json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": descriptor_json(&config),
            "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
        });
        let body = Bytes::from(document.to_string());
        let digest = Digest::sha256_of(&body);
        let header = declared_in_header.then_some(mt);
        let manifest = Manifest::parse(body, header, digest).expect("a well-formed image manifest");
        prop_assert_eq!(manifest.media_type.as_str(), mt);
        let ManifestKind::Image(image) = manifest.kind else {
            return Err(TestCaseError::fail("parsed as an index"));
        };
        prop_assert_eq!(image.config, config);
        prop_assert_eq!(image.layers, layers);
    }

    #[test]
    fn indexes_read_back(
        children in prop::collection::vec(descriptor(true), 0..6),
        docker in any::<bool>(),
        declared in any::<bool>(),
    ) {
        let mt = if docker { media_type::DOCKER_MANIFEST_LIST } else { media_type::OCI_INDEX };
        let mut document = json!({
            "schemaVersion": 2,
            "manifests": children.iter().map(descriptor_json).collect::<Vec<_>>(),
        });
        if declared {
            document["mediaType"] = json!(mt);
        }
        let body = Bytes::from(document.to_string());
        let digest = Digest::sha256_of(&body);
        let manifest = Manifest::parse(body, None, digest).expect("a well-formed index");
        // Without a declared type, OCI's rule applies: a document with `manifests` is an index.
        let expected = if declared { mt } else { media_type::OCI_INDEX };
        prop_assert_eq!(manifest.media_type.as_str(), expected);
        let ManifestKind::Index(index) = manifest.kind else {
            return Err(TestCaseError::fail("parsed as an image"));
        };
        prop_assert_eq!(index.manifests, children);
    }

    #[test]
    fn platforms_never_panic_and_read_back(
        text in prop_oneof![any::<String>(), "[A-Za-z0-9_./-]{0,24}", " ?[a-zA-Z]{1,6}/[a-zA-Z0-9]{1,6}(/v[0-9])? ?"]
    ) {
        if let Ok(platform) = text.parse::<Platform>() {
            let shown = platform.to_string();
            prop_assert_eq!(shown.parse::<Platform>(), Ok(platform.clone()));
            prop_assert!(platform.matches(&platform));
            prop_assert_eq!(platform.select([&platform]), Some(0));
        }
    }

    #[test]
    fn retry_after_never_panics_and_waits_are_bounded(
        value in prop_oneof![any::<String>(), "[0-9]{1,25}", "-?[0-9 ]{0,6}"],
        retry in any::<u32>(),
        initial_ms in any::<u64>(),
        max_ms in any::<u64>(),
        max_retry_after_ms in any::<u64>(),
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let parsed = parse_retry_after(&value, now);
        if let Ok(seconds) = value.trim().parse::<u64>() {
            prop_assert_eq!(parsed, Some(Duration::from_secs(seconds)));
        }
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(initial_ms),
            max_backoff: Duration::from_millis(max_ms),
            max_retry_after: Duration::from_millis(max_retry_after_ms),
            throttle_window: Duration::ZERO,
        };
        prop_assert!(policy.backoff(retry) <= policy.max_backoff);
        if let Some(wait) = parsed {
            prop_assert_eq!(policy.delay(retry, Some(wait)), wait.min(policy.max_retry_after));
        }
    }

    #[test]
    fn docker_configs_never_panic(
        text in prop_oneof![
            any::<String>(),
            json_value().prop_map(|v| v.to_string()),
            json_value().prop_map(|v| json!({"auths": {"127.0.0.1:5000": v}}).to_string()),
        ],
        registry in prop_oneof![Just("127.0.0.1:5000".to_string()), any::<String>()],
    ) {
        if let Ok(config) = DockerConfig::parse(&text, Path::new("config.json")) {
            let _ = config.lookup(&registry);
        }
        let _ = omx_core::RegistryHost::new(&registry).credential_key().len();
    }

    #[test]
    fn docker_config_errors_never_show_credentials(
        secret in "[A-Za-z0-9]{16,24}",
        shape in 0usize..9,
    ) {
        let host = "registry.example.org";
        let forms = [
            secret.clone(),
            base64(&format!("{SECRET_USER}:{secret}")),
            base64(&secret),
        ];
        let text = docker_config_with(&secret, shape, host);
        let shown = match DockerConfig::parse(&text, Path::new("config.json")) {
            Ok(config) => match config.lookup(host) {
                Ok(lookup) => format!("{lookup:?}"),
                Err(error) => error_chain(&error),
            },
            Err(error) => error_chain(&error),
        };
        for form in &forms {
            prop_assert!(!shown.contains(form.as_str()), "{} shows {}: {}", text, form, shown);
        }
    }

    #[test]
    fn command_line_credentials_never_echo_the_value(
        value in prop_oneof![
            "[a-z]{1,8}:[A-Za-z0-9:]{12,24}",
            "[A-Za-z0-9]{12,24}",
            ":[A-Za-z0-9]{12,24}",
            any::<String>(),
        ],
    ) {
        match Credential::from_user_colon_password(&value) {
            Ok(credential) => {
                let (user, password) = value.split_once(':').expect("a colon was found");
                prop_assert_eq!(credential.username.as_str(), user);
                prop_assert_eq!(credential.password.expose(), password);
                if password.len() >= 12 && !user.contains(password) {
                    let shown = format!("{credential:?}");
                    prop_assert!(!shown.contains(password), "{}", shown);
                }
            }
            Err(error) => {
                let shown = error_chain(&error);
                let secret = value.trim_start_matches(':');
                prop_assert!(secret.len() < 12 || !shown.contains(secret), "{}", shown);
            }
        }
    }
}

/// The shapes `docker_config_errors_never_show_credentials` leaves out, one by one: a mistyped
/// config whose error quotes the value it found.
#[test]
fn mistyped_docker_config_values_are_not_quoted_in_errors() {
    let secret = "Zq8mW2pL7xR4vN9s";
    let auth = base64(&format!("{SECRET_USER}:{secret}"));
    for (index, text) in [
        json!({"auths": {"registry.example.org": auth}}),
        json!({"auths": auth}),
    ]
    .iter()
    .enumerate()
    {
        let error = DockerConfig::parse(&text.to_string(), Path::new("config.json"))
            .expect_err("a mistyped config is refused");
        let shown = error_chain(&error);
        assert!(
            !shown.contains(secret) && !shown.contains(&base64(&format!("{SECRET_USER}:{secret}"))),
            "case {index}: {shown}"
        );
    }
}

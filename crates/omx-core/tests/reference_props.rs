//! Property tests: every reference the grammar allows reads back from its canonical and familiar
//! strings, and no input makes the parser panic.

use omx_core::reference::{Reference, DOCKER_HUB, NAME_MAX_LEN};
use omx_core::Digest;
use proptest::prelude::*;

/// A registry host that reads as one: names with a '.', `localhost`, upper-case single labels,
/// IPv4 and bracketed IPv6 addresses, each with an optional port.
fn domain() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?";
    let dotted = prop::collection::vec(label, 2..4).prop_map(|labels| labels.join("."));
    let upper_single = "[A-Z][a-zA-Z0-9]{0,8}";
    let ipv4 =
        prop::array::uniform4(any::<u8>()).prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}"));
    let ipv6 = prop::array::uniform8(any::<u16>()).prop_map(|segments| {
        let hex: Vec<String> = segments.iter().map(|s| format!("{s:x}")).collect();
        format!("[{}]", hex.join(":"))
    });
    let host = prop_oneof![
        dotted,
        Just("localhost".to_string()),
        upper_single.prop_map(String::from),
        ipv4,
        ipv6,
        Just(DOCKER_HUB.to_string()),
        Just("index.docker.io".to_string()),
    ];
    (host, proptest::option::of(any::<u16>())).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn path() -> impl Strategy<Value = String> {
    let component = "[a-z0-9]{1,6}(([._]|__|-{1,3})[a-z0-9]{1,6}){0,3}";
    prop::collection::vec(component, 1..5).prop_map(|components| components.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}".prop_map(String::from)
}

fn digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}")),
        "[0-9a-f]{128}".prop_map(|hex| format!("sha512:{hex}")),
    ]
    .prop_map(|d| d.parse().expect("generated digest is well formed"))
}

/// A valid reference, together with the parts it was made from.
fn reference() -> impl Strategy<Value = Reference> {
    (
        domain(),
        path(),
        proptest::option::of(tag()),
        proptest::option::of(digest()),
    )
        .prop_filter("name within the length limit", |(domain, path, _, _)| {
            // "library/" may be added to a single-component Docker Hub path.
            domain.len() + 1 + "library/".len() + path.len() <= NAME_MAX_LEN
        })
        .prop_map(|(domain, path, tag, digest)| {
            let r = Reference::new(&domain, &path, tag.as_deref(), digest.clone())
                .unwrap_or_else(|e| panic!("generator made an invalid reference: {e}"));
            let on_docker_hub = domain == DOCKER_HUB || domain == "index.docker.io";
            if on_docker_hub {
                assert_eq!(r.domain(), DOCKER_HUB);
                if path.contains('/') {
                    assert_eq!(r.path(), path);
                } else {
                    assert_eq!(r.path(), format!("library/{path}"));
                }
            } else {
                assert_eq!((r.domain(), r.path()), (domain.as_str(), path.as_str()));
            }
            assert_eq!(r.tag(), tag.as_deref());
            assert_eq!(r.digest(), digest.as_ref());
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_string_reads_back(r in reference()) {
        prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r.clone()));
        prop_assert_eq!(r.to_string().parse::<Reference>(), Ok(r));
    }

    #[test]
    fn familiar_string_reads_back(r in reference()) {
        prop_assert_eq!(Reference::parse(&r.familiar()), Ok(r.clone()));
        if r.domain() != DOCKER_HUB {
            prop_assert_eq!(r.familiar(), r.to_string());
        }
    }

    #[test]
    fn serde_uses_the_canonical_string(r in reference()) {
        let json = serde_json::to_string(&r).unwrap();
        prop_assert_eq!(&json, &serde_json::to_string(&r.to_string()).unwrap());
        prop_assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }

    #[test]
    fn docker_hub_names_read_the_same_in_every_spelling(
        path in path(),
        tag in proptest::option::of(tag()),
    ) {
        let suffix = tag.map(|t| format!(":{t}")).unwrap_or_default();
        let canonical = Reference::parse(&format!("docker.io/{path}{suffix}")).unwrap();
        for host in ["index.docker.io", "registry-1.docker.io"] {
            let aliased = format!("{host}/{path}{suffix}");
            prop_assert_eq!(Reference::parse(&aliased), Ok(canonical.clone()));
        }
        // Without a host, a first component that looks like one (`foo.bar/x`) names a registry.
        let first = path.split('/').next().unwrap_or_default();
        if !path.contains('/') || !first.contains('.') {
            prop_assert_eq!(Reference::parse(&format!("{path}{suffix}")), Ok(canonical));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        let _ = Reference::parse(&input);
    }

    #[test]
    fn reference_like_strings_never_panic(input in "[a-zA-Z0-9:/@._\\-\\[\\] ]{0,300}") {
        if let Ok(r) = Reference::parse(&input) {
            prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r));
        }
    }
}

#[test]
fn deserializing_an_invalid_reference_fails_with_the_reason() {
    let err = serde_json::from_str::<Reference>("\"Ubuntu\"").unwrap_err();
    assert!(
        err.to_string()
            .contains("repository name must be lowercase"),
        "{err}"
    );
}

#[test]
fn familiar_keeps_docker_hub_where_dropping_it_would_change_the_registry() {
    let r = Reference::parse("docker.io/foo.bar/app:1").unwrap();
    assert_eq!(r.familiar(), "docker.io/foo.bar/app:1");
    let r = Reference::parse("docker.io/localhost/app").unwrap();
    assert_eq!(r.familiar(), "docker.io/localhost/app");
    let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
    let r = Reference::parse(&format!("docker.io/{id}")).unwrap();
    assert_eq!(r.familiar(), format!("library/{id}"));
    let r = Reference::parse("biocontainers/samtools:1.17").unwrap();
    assert_eq!(r.familiar(), "biocontainers/samtools:1.17");
    assert_eq!(r.to_string(), "docker.io/biocontainers/samtools:1.17");
}

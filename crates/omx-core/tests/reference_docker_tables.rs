//! The test tables of github.com/distribution/reference (reference_test.go, normalize_test.go,
//! regexp_test.go), ported to `Reference::parse`, which is Docker's `ParseNormalizedNamed`.
//!
//! Where the Go table exercises the un-normalized `Parse`, the expectation here is the normalized
//! one (`test_com` is `docker.io/library/test_com`). Deliberate differences from Docker are
//! marked `DIFFERS:`.
//!
//! (Over 600 lines: it is the Go tables, row for row, so that each can be checked against its
//! source.)

use omx_core::reference::{Reference, ReferenceError};

const SHA256_F: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// Expected outcome of parsing one input.
enum Expect<'a> {
    /// domain, path, tag, digest
    Ok(&'a str, &'a str, Option<&'a str>, Option<&'a str>),
    /// The `ReferenceError` variant name.
    Err(&'a str),
}

fn variant(err: &ReferenceError) -> String {
    let debug = format!("{err:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn check(input: &str, expect: &Expect<'_>) {
    let parsed = Reference::parse(input);
    match (expect, parsed) {
        (Expect::Ok(domain, path, tag, digest), Ok(r)) => {
            assert_eq!(r.domain(), *domain, "domain of {input:?}");
            assert_eq!(r.path(), *path, "path of {input:?}");
            assert_eq!(r.tag(), *tag, "tag of {input:?}");
            assert_eq!(
                r.digest().map(ToString::to_string).as_deref(),
                *digest,
                "digest of {input:?}"
            );
            assert_eq!(
                Reference::parse(&r.to_string()).as_ref(),
                Ok(&r),
                "{input:?} re-read from its canonical form"
            );
        }
        (Expect::Err(kind), Err(e)) => assert_eq!(variant(&e), *kind, "error for {input:?}: {e}"),
        (Expect::Ok(..), Err(e)) => panic!("{input:?} should parse, got: {e}"),
        (Expect::Err(kind), Ok(r)) => panic!("{input:?} should fail with {kind}, parsed as {r}"),
    }
}

/// reference_test.go TestReferenceParse.
#[test]
fn reference_parse_table() {
    let a127 = "a/".repeat(127) + "a";
    let long_tagged = format!("{a127}:tag-puts-this-over-max");
    let too_long = "a/".repeat(128) + "a:tag";
    let sha512_f = format!("sha512:{}", "f".repeat(128));
    let punycode_with_digest = format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512_f}");
    let test_5000_digest = format!("test:5000/repo@{SHA256_F}");
    let test_5000_tag_digest = format!("test:5000/repo:tag@{SHA256_F}");
    let ipv6_digest = format!("[2001:db8::1]:5000/repo@{SHA256_F}");
    let ipv6_tag_digest = format!("[2001:db8::1]:5000/repo:tag@{SHA256_F}");
    let just_digest = format!("@{SHA256_F}");
    let bad_algorithm = format!("validname@invaliddigest:{}", "f".repeat(64));

    use Expect::{Err, Ok};
    let hub = "docker.io";
    let cases: Vec<(&str, Expect)> = vec![
        ("test_com", Ok(hub, "library/test_com", None, None)),
        (
            "test.com:tag",
            Ok(hub, "library/test.com", Some("tag"), None),
        ),
        (
            "test.com:5000",
            Ok(hub, "library/test.com", Some("5000"), None),
        ),
        (
            "test.com/repo:tag",
            Ok("test.com", "repo", Some("tag"), None),
        ),
        ("test:5000/repo", Ok("test:5000", "repo", None, None)),
        (
            "test:5000/repo:tag",
            Ok("test:5000", "repo", Some("tag"), None),
        ),
        (
            &test_5000_digest,
            Ok("test:5000", "repo", None, Some(SHA256_F)),
        ),
        (
            &test_5000_tag_digest,
            Ok("test:5000", "repo", Some("tag"), Some(SHA256_F)),
        ),
        ("", Err("Empty")),
        (":justtag", Err("MissingName")),
        (&just_digest, Err("MissingName")),
        (
            "repo@sha256:ffffffffffffffffffffffffffffffffff",
            Err("InvalidDigest"),
        ),
        (&bad_algorithm, Err("InvalidDigest")),
        ("Uppercase:tag", Err("NotLowercase")),
        // Docker's FIXME: "Uppercase" is read as a domain, so this one parses.
        (
            "Uppercase/lowercase:tag",
            Ok("Uppercase", "lowercase", Some("tag"), None),
        ),
        ("test:5000/Uppercase/lowercase:tag", Err("NotLowercase")),
        (
            "lowercase:Uppercase",
            Ok(hub, "library/lowercase", Some("Uppercase"), None),
        ),
        (&too_long, Err("NameTooLong")),
        // DIFFERS: Docker limits the path to 255 characters; the limit here is on the whole
        // `domain/path` name, and "docker.io/" takes this 255-character path over it.
        (&long_tagged, Err("NameTooLong")),
        ("aa/asdf$$^/aa", Err("InvalidCharacter")),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            Ok("sub-dom1.foo.com", "bar/baz/quux", None, None),
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            Ok(
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
            ),
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            Ok(
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
            ),
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com",
            Ok("xn--n3h.com", "myimage", Some("xn--n3h.com"), None),
        ),
        (
            &punycode_with_digest,
            Ok(
                "xn--7o8h.com",
                "myimage",
                Some("xn--7o8h.com"),
                Some(&sha512_f),
            ),
        ),
        (
            "foo_bar.com:8080",
            Ok(hub, "library/foo_bar.com", Some("8080"), None),
        ),
        (
            "foo/foo_bar.com:8080",
            Ok(hub, "foo/foo_bar.com", Some("8080"), None),
        ),
        ("192.168.1.1", Ok(hub, "library/192.168.1.1", None, None)),
        (
            "192.168.1.1:tag",
            Ok(hub, "library/192.168.1.1", Some("tag"), None),
        ),
        (
            "192.168.1.1:5000",
            Ok(hub, "library/192.168.1.1", Some("5000"), None),
        ),
        ("192.168.1.1/repo", Ok("192.168.1.1", "repo", None, None)),
        (
            "192.168.1.1:5000/repo",
            Ok("192.168.1.1:5000", "repo", None, None),
        ),
        (
            "192.168.1.1:5000/repo:5050",
            Ok("192.168.1.1:5000", "repo", Some("5050"), None),
        ),
        ("[2001:db8::1]", Err("InvalidCharacter")),
        ("[2001:db8::1]:5000", Err("InvalidCharacter")),
        ("[2001:db8::1]:tag", Err("InvalidCharacter")),
        (
            "[2001:db8::1]/repo",
            Ok("[2001:db8::1]", "repo", None, None),
        ),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            Ok("[2001:db8:1:2:3:4:5:6]", "repo", Some("tag"), None),
        ),
        (
            "[2001:db8::1]:5000/repo",
            Ok("[2001:db8::1]:5000", "repo", None, None),
        ),
        (
            "[2001:db8::1]:5000/repo:tag",
            Ok("[2001:db8::1]:5000", "repo", Some("tag"), None),
        ),
        (
            &ipv6_digest,
            Ok("[2001:db8::1]:5000", "repo", None, Some(SHA256_F)),
        ),
        (
            &ipv6_tag_digest,
            Ok("[2001:db8::1]:5000", "repo", Some("tag"), Some(SHA256_F)),
        ),
        (
            "[2001:db8::]:5000/repo",
            Ok("[2001:db8::]:5000", "repo", None, None),
        ),
        ("[::1]:5000/repo", Ok("[::1]:5000", "repo", None, None)),
        ("[fe80::1%eth0]:5000/repo", Err("InvalidDomain")),
        // An '@' followed by a '/' can only end a userinfo.
        ("[fe80::1%@invalidzone]:5000/repo", Err("Credentials")),
    ];
    for (input, expect) in &cases {
        check(input, expect);
    }
}

/// reference_test.go TestDomainAndPath and normalize_test.go TestNormalizedSplitHostname.
#[test]
fn domain_and_path_split() {
    let cases = [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test:8080/foo", "test:8080", "foo"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ];
    for (input, domain, path) in cases {
        check(input, &Expect::Ok(domain, path, None, None));
    }
}

/// normalize_test.go TestValidateReferenceName.
#[test]
fn validate_reference_name() {
    let valid = [
        "docker/docker",
        "library/debian",
        "debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "192.168.0.1",
        "192.168.0.1:80",
        "192.168.0.1:8/debian",
        "192.168.0.2:25000/debian",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "[fc00::1]:5000/docker",
        "[fc00::1]:5000/docker/docker",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        // Valid with a host: the host removes the ambiguity with an image ID.
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "Docker/docker",
        "DOCKER/docker",
    ];
    for name in valid {
        if let Err(e) = Reference::parse(name) {
            panic!("{name:?} should be valid: {e}");
        }
    }
    let invalid = [
        ("https://github.com/docker/docker", "UrlScheme"),
        ("docker/Docker", "NotLowercase"),
        ("-docker", "BadSeparator"),
        ("-docker/docker", "BadSeparator"),
        ("-docker.io/docker/docker", "InvalidDomain"),
        ("docker///docker", "EmptyPathComponent"),
        ("docker.io/docker/Docker", "NotLowercase"),
        ("docker.io/docker///docker", "EmptyPathComponent"),
        ("[fc00::1]", "InvalidCharacter"),
        ("[fc00::1]:5000", "InvalidCharacter"),
        ("fc00::1:5000/debian", "InvalidDomain"),
        ("[fe80::1%eth0]:5000/debian", "InvalidDomain"),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", "InvalidDomain"),
        (
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "HexIdentifier",
        ),
    ];
    for (input, kind) in invalid {
        check(input, &Expect::Err(kind));
    }
}

/// normalize_test.go TestValidateRemoteName.
#[test]
fn validate_remote_name() {
    let valid = [
        "docker/docker",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ];
    for name in valid {
        if let Err(e) = Reference::parse(name) {
            panic!("{name:?} should be valid: {e}");
        }
    }
    let too_long_namespace = ["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255";
        4]
        .join("_") + "/docker";
    let invalid = [
        ("docker/Docker", "NotLowercase"),
        ("docker///docker", "EmptyPathComponent"),
        (
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "HexIdentifier",
        ),
        ("-docker/docker", "BadSeparator"),
        ("docker-/docker", "BadSeparator"),
        ("-docker-/docker", "BadSeparator"),
        ("____/____", "BadSeparator"),
        ("_docker/_docker", "BadSeparator"),
        // A '.' makes the first component a registry host, so these fail as hosts.
        ("dock..er/docker", "InvalidDomain"),
        ("dock_.er/docker", "InvalidDomain"),
        ("dock-.er/docker", "InvalidDomain"),
        ("x/dock..er/docker", "BadSeparator"),
        ("x/dock_.er/docker", "BadSeparator"),
        ("x/dock-.er/docker", "BadSeparator"),
        ("docker/", "EmptyPathComponent"),
        (too_long_namespace.as_str(), "NameTooLong"),
    ];
    for (input, kind) in invalid {
        check(input, &Expect::Err(kind));
    }
}

/// normalize_test.go TestParseRepositoryInfo: familiar name, full name and ambiguous spellings
/// all read as the same reference.
#[test]
fn parse_repository_info() {
    // (path, familiar name, full name, ambiguous name, domain)
    let cases = [
        (
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            Some("index.docker.io/fooo/bar"),
            "docker.io",
        ),
        (
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            Some("library/ubuntu"),
            "docker.io",
        ),
        (
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            None,
            "docker.io",
        ),
        (
            "other/library",
            "other/library",
            "docker.io/other/library",
            None,
            "docker.io",
        ),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            None,
            "127.0.0.1:8000",
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            None,
            "127.0.0.1:8000",
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            None,
            "example.com",
        ),
        (
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            None,
            "example.com",
        ),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            None,
            "example.com:8000",
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            None,
            "example.com:8000",
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            Some("index.docker.io/library/ubuntu-12.04-base"),
            "docker.io",
        ),
        (
            "library/foo",
            "foo",
            "docker.io/library/foo",
            Some("docker.io/foo"),
            "docker.io",
        ),
        (
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            None,
            "docker.io",
        ),
        (
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            None,
            "docker.io",
        ),
        ("bar", "Foo/bar", "Foo/bar", None, "Foo"),
        ("bar", "FOO/bar", "FOO/bar", None, "FOO"),
    ];
    for (path, familiar, full, ambiguous, domain) in cases {
        for spelling in [Some(familiar), Some(full), ambiguous]
            .into_iter()
            .flatten()
        {
            let r = Reference::parse(spelling).unwrap_or_else(|e| panic!("{spelling:?}: {e}"));
            assert_eq!(r.familiar_name(), familiar, "familiar name of {spelling:?}");
            assert_eq!(r.familiar(), familiar, "familiar string of {spelling:?}");
            assert_eq!(r.to_string(), full, "full name of {spelling:?}");
            assert_eq!(r.name(), full, "name of {spelling:?}");
            assert_eq!(r.domain(), domain, "domain of {spelling:?}");
            assert_eq!(r.path(), path, "path of {spelling:?}");
            assert!(r.is_implicit_latest());
        }
    }
}

/// normalize_test.go TestParseReferenceWithTagAndDigest.
#[test]
fn tag_and_digest_together() {
    let short =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let r = Reference::parse(short).unwrap();
    assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    assert_eq!(r.tag(), Some("latest"));
    assert!(r.digest().is_some());
    assert_eq!(r.familiar(), short);
}

/// normalize_test.go TestInvalidReferenceComponents.
#[test]
fn invalid_reference_components() {
    assert!(Reference::parse("-foo").is_err());
    let r = Reference::parse("busybox").unwrap();
    assert!(matches!(
        r.with_tag("-foo"),
        Err(ReferenceError::InvalidTag { .. })
    ));
}

/// normalize_test.go TestParseAnyReference, the named cases (bare IDs and digests are not
/// references here).
#[test]
fn parse_any_reference_named_cases() {
    let digest = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
    let cases = [
        ("redis".to_string(), "docker.io/library/redis".to_string()),
        (
            "redis:latest".into(),
            "docker.io/library/redis:latest".into(),
        ),
        (
            "docker.io/library/redis:latest".into(),
            "docker.io/library/redis:latest".into(),
        ),
        (
            format!("redis@{digest}"),
            format!("docker.io/library/redis@{digest}"),
        ),
        (
            format!("docker.io/library/redis@{digest}"),
            format!("docker.io/library/redis@{digest}"),
        ),
        ("dmcgowan/myapp".into(), "docker.io/dmcgowan/myapp".into()),
        (
            "dmcgowan/myapp:latest".into(),
            "docker.io/dmcgowan/myapp:latest".into(),
        ),
        (
            "docker.io/mcgowan/myapp:latest".into(),
            "docker.io/mcgowan/myapp:latest".into(),
        ),
        (
            format!("dmcgowan/myapp@{digest}"),
            format!("docker.io/dmcgowan/myapp@{digest}"),
        ),
        (
            format!("docker.io/dmcgowan/myapp@{digest}"),
            format!("docker.io/dmcgowan/myapp@{digest}"),
        ),
        (
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
            "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"
                .into(),
        ),
        ("dbcc1".into(), "docker.io/library/dbcc1".into()),
    ];
    for (input, equivalent) in cases {
        let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(r.to_string(), equivalent, "{input:?}");
        assert_eq!(Reference::parse(&equivalent).unwrap(), r);
    }
    // ParseAnyReference reads a bare image ID as a digest; a reference parser refuses it.
    assert!(matches!(
        Reference::parse(&digest["sha256:".len()..]),
        Err(ReferenceError::HexIdentifier { .. })
    ));
}

/// normalize_test.go TestParseDockerRef: Docker's pull-time form, built from `parse`,
/// `tag_or_latest`, `with_tag` and `without_tag`.
#[test]
fn parse_docker_ref() {
    let digest = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
    let cases = [
        (
            "busybox".to_string(),
            "docker.io/library/busybox:latest".to_string(),
        ),
        (
            "busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            format!("busybox@{digest}"),
            format!("docker.io/library/busybox@{digest}"),
        ),
        (
            "library/busybox".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/busybox".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/library/busybox".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "library/busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "docker.io/library/busybox:latest".into(),
            "docker.io/library/busybox:latest".into(),
        ),
        (
            "gcr.io/library/busybox".into(),
            "gcr.io/library/busybox:latest".into(),
        ),
        (
            format!("gcr.io/library/busybox:latest@{digest}"),
            format!("gcr.io/library/busybox@{digest}"),
        ),
    ];
    for (input, expected) in cases {
        let r = Reference::parse(&input).unwrap();
        let pull = match (r.digest(), r.tag_or_latest()) {
            (Some(_), _) => r.without_tag(),
            (None, Some(tag)) => r.with_tag(tag).unwrap(),
            (None, None) => unreachable!("a reference without digest always has a tag to pull"),
        };
        assert_eq!(pull.to_string(), expected, "{input:?}");
        assert_eq!(Reference::parse(&expected).unwrap(), pull);
    }
}

/// reference_test.go TestParseNamed: a canonical string reads back unchanged; familiar
/// spellings do not equal their canonical string.
#[test]
fn canonical_strings_are_accepted_as_is() {
    for canonical in [
        "test.com/foo",
        "test:8080/foo",
        "docker.io/library/foo",
        "docker.io/library/ubuntu:20.04",
        "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
    ] {
        assert_eq!(Reference::parse(canonical).unwrap().to_string(), canonical);
    }
    for not_canonical in [
        "test_com/foo",
        "test.com",
        "foo",
        "library/foo",
        "docker.io/foo",
    ] {
        assert_ne!(
            Reference::parse(not_canonical).unwrap().to_string(),
            not_canonical
        );
    }
}

/// regexp_test.go TestDomainRegexp, through references on each host.
#[test]
fn domain_grammar() {
    let cases = [
        ("test.com", true),
        ("test.com:10304", true),
        ("test.com:http", false),
        ("localhost", true),
        ("localhost:8080", true),
        ("a.b", true),
        ("ab.cd.com", true),
        ("a-b.com", true),
        ("-ab.com", false),
        ("ab-.com", false),
        ("ab.c-om", true),
        ("ab.-com", false),
        ("ab.com-", false),
        ("0101.com", true),
        ("001a.com", true),
        ("b.gbc.io:443", true),
        ("b.gbc.io", true),
        ("xn--n3h.com", true),
        ("Asdf.com", true),
        // DIFFERS: Docker leaves ports over 65535 and malformed IPv6 to later validation.
        ("192.168.1.1:75050", false),
        ("192.168.1.1:750050", false),
        ("192.168.1.1:65535", true),
        ("[fd00:1:2::3]:75050", false),
        ("[fd00:1:2::3]:7505", true),
        ("[fd00:1:2::3]75050", false),
        ("[fd00:1:2::3]::75050", false),
        ("[fd00:1:2::3%eth0]:75050", false),
        ("[fd00123123123]:7505", false),
        ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:7505", true),
        ("fd00:1:2::3:75050", false),
        ("bad_hostname.com:8080", false),
        ("do__cker:8080", false),
        ("foo_bar.com:8080", false),
    ];
    for (domain, valid) in cases {
        let input = format!("{domain}/app:tag");
        match Reference::parse(&input) {
            Ok(r) => {
                assert!(valid, "{input:?} should be refused");
                assert_eq!(r.domain(), domain);
                assert_eq!(r.path(), "app");
            }
            Err(e) => assert!(!valid, "{input:?} should parse: {e}"),
        }
    }
}

/// regexp_test.go TestFullNameRegexp, through `parse`.
#[test]
fn full_name_grammar() {
    let a128 = "a/".repeat(128) + "a";
    let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
        ("", None),
        ("short", Some(("docker.io", "library/short"))),
        ("simple/name", Some(("docker.io", "simple/name"))),
        ("library/ubuntu", Some(("docker.io", "library/ubuntu"))),
        (
            "docker/stevvooe/app",
            Some(("docker.io", "docker/stevvooe/app")),
        ),
        (
            "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
            Some(("docker.io", "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb")),
        ),
        ("aa/aa/bb/bb/bb", Some(("docker.io", "aa/aa/bb/bb/bb"))),
        ("a/a/a/a", Some(("docker.io", "a/a/a/a"))),
        ("a/a/a/a/", None),
        ("a//a/a", None),
        ("a", Some(("docker.io", "library/a"))),
        ("a/aa", Some(("docker.io", "a/aa"))),
        ("a/aa/a", Some(("docker.io", "a/aa/a"))),
        ("foo.com", Some(("docker.io", "library/foo.com"))),
        ("foo.com/", None),
        ("foo.com:8080/bar", Some(("foo.com:8080", "bar"))),
        ("foo.com:http/bar", None),
        ("foo.com/bar", Some(("foo.com", "bar"))),
        ("foo.com/bar/baz", Some(("foo.com", "bar/baz"))),
        ("localhost:8080/bar", Some(("localhost:8080", "bar"))),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            Some(("sub-dom1.foo.com", "bar/baz/quux")),
        ),
        ("blog.foo.com/bar/baz", Some(("blog.foo.com", "bar/baz"))),
        ("a^a", None),
        ("aa/asdf$$^/aa", None),
        ("asdf$$^/aa", None),
        ("aa-a/a", Some(("docker.io", "aa-a/a"))),
        // DIFFERS: Docker accepts this 257-character name with "a" as its domain; here "a" is
        // a Docker Hub namespace (as ParseNormalizedNamed reads it) and the name is too long.
        (&a128, None),
        ("a-/a/a/a", None),
        ("foo.com/a-/a/a", None),
        ("-foo/bar", None),
        ("foo/bar-", None),
        ("foo-/bar", None),
        ("foo/-bar", None),
        ("_foo/bar", None),
        ("foo_bar", Some(("docker.io", "library/foo_bar"))),
        ("foo_bar.com", Some(("docker.io", "library/foo_bar.com"))),
        ("foo_bar.com:8080/app", None),
        ("foo.com/foo_bar", Some(("foo.com", "foo_bar"))),
        ("____/____", None),
        ("_docker/_docker", None),
        ("docker_/docker_", None),
        (
            "b.gcr.io/test.example.com/my-app",
            Some(("b.gcr.io", "test.example.com/my-app")),
        ),
        ("xn--n3h.com/myimage", Some(("xn--n3h.com", "myimage"))),
        ("xn--7o8h.com/myimage", Some(("xn--7o8h.com", "myimage"))),
        (
            "example.com/xn--7o8h.com/myimage",
            Some(("example.com", "xn--7o8h.com/myimage")),
        ),
        (
            "example.com/some_separator__underscore/myimage",
            Some(("example.com", "some_separator__underscore/myimage")),
        ),
        ("example.com/__underscore/myimage", None),
        ("example.com/..dots/myimage", None),
        ("example.com/.dots/myimage", None),
        ("example.com/nodouble..dots/myimage", None),
        ("docker./docker", None),
        (".docker/docker", None),
        ("docker-/docker", None),
        ("-docker/docker", None),
        ("do..cker/docker", None),
        ("do__cker:8080/docker", None),
        ("do__cker/docker", Some(("docker.io", "do__cker/docker"))),
        (
            "registry.io/foo/project--id.module--name.ver---sion--name",
            Some((
                "registry.io",
                "foo/project--id.module--name.ver---sion--name",
            )),
        ),
        ("Asdf.com/foo/bar", Some(("Asdf.com", "foo/bar"))),
        ("Foo/FarB", None),
    ];
    for (input, expected) in cases {
        match (Reference::parse(input), expected) {
            (Ok(r), Some((domain, path))) => {
                assert_eq!((r.domain(), r.path()), (domain, path), "{input:?}");
            }
            (Err(_), None) => {}
            (Ok(r), None) => panic!("{input:?} should be refused, parsed as {r}"),
            (Err(e), Some(_)) => panic!("{input:?} should parse: {e}"),
        }
    }
}

/// regexp_test.go TestReferenceRegexp, through `parse`.
#[test]
fn reference_grammar() {
    let digest = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
    let accepted = [
        (
            "registry.com:8080/myapp:tag".to_string(),
            "registry.com:8080",
            "myapp",
            Some("tag"),
            None,
        ),
        (
            format!("registry.com:8080/myapp@{digest}"),
            "registry.com:8080",
            "myapp",
            None,
            Some(digest),
        ),
        (
            format!("registry.com:8080/myapp:tag2@{digest}"),
            "registry.com:8080",
            "myapp",
            Some("tag2"),
            Some(digest),
        ),
        // localhost without a '/' is an image name, and 8080 its tag.
        (
            format!("localhost:8080@{digest}"),
            "docker.io",
            "library/localhost",
            Some("8080"),
            Some(digest),
        ),
        (
            format!("localhost:8080/name@{digest}"),
            "localhost:8080",
            "name",
            None,
            Some(digest),
        ),
        (
            format!("localhost@{digest}"),
            "docker.io",
            "library/localhost",
            None,
            Some(digest),
        ),
    ];
    for (input, domain, path, tag, digest) in &accepted {
        check(input, &Expect::Ok(domain, path, *tag, *digest));
    }
    let refused = [
        "registry.com:8080/myapp@sha256:badbadbadbad".to_string(),
        "registry.com:8080/myapp:invalid~tag".into(),
        "bad_hostname.com:8080/myapp:tag".into(),
        format!("localhost:http/name@{digest}"),
        "registry.com:8080/myapp@bad".into(),
        "registry.com:8080/myapp@2bad".into(),
    ];
    for input in &refused {
        assert!(
            Reference::parse(input).is_err(),
            "{input:?} should be refused"
        );
    }
}

/// reference_test.go TestWithTag / TestWithDigest.
#[test]
fn with_tag_and_with_digest() {
    let digest = "sha256:1234567890098765432112345667890098765432112345667890098765432112";
    let cases = [
        ("test.com/foo", "tag", "test.com/foo:tag"),
        ("foo", "tag2", "docker.io/library/foo:tag2"),
        ("test.com:8000/foo", "tag4", "test.com:8000/foo:tag4"),
        ("test.com:8000/foo", "TAG5", "test.com:8000/foo:TAG5"),
    ];
    for (name, tag, combined) in cases {
        let r = Reference::parse(name).unwrap().with_tag(tag).unwrap();
        assert_eq!(r.to_string(), combined);
        let pinned = r.with_digest(digest.parse().unwrap());
        assert_eq!(pinned.to_string(), format!("{combined}@{digest}"));
        assert_eq!(pinned.without_digest(), r);
        assert_eq!(
            pinned.without_tag().to_string(),
            format!("{}@{digest}", r.name())
        );
    }
}

//! What `Reference::parse` says when it refuses an input: the broken rule, and the input quoted,
//! never a password.

use omx_core::reference::{Reference, ReferenceError, NAME_MAX_LEN, TAG_MAX_LEN};
use omx_core::Digest;

fn message(input: &str) -> String {
    match Reference::parse(input) {
        Ok(r) => panic!("{input:?} should be refused, parsed as {r}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn upper_case_repository_name() {
    assert_eq!(
        message("Ubuntu"),
        "invalid reference format: repository name must be lowercase: \"Ubuntu\""
    );
    assert_eq!(
        message("quay.io/BioContainers/samtools"),
        "invalid reference format: repository name must be lowercase: \
         \"quay.io/BioContainers/samtools\""
    );
}

#[test]
fn empty_and_blank_inputs() {
    assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
    assert_eq!(Reference::parse(" \t\n"), Err(ReferenceError::Empty));
    assert_eq!(message("   "), "empty image reference");
}

#[test]
fn surrounding_whitespace_is_trimmed_but_inner_whitespace_is_refused() {
    let r = Reference::parse("  ubuntu:20.04\n").unwrap();
    assert_eq!(r.to_string(), "docker.io/library/ubuntu:20.04");
    assert_eq!(
        message("ubuntu :20.04"),
        "invalid reference format: \"ubuntu :20.04\" contains whitespace or control characters"
    );
    let with_nul = message("ubuntu\0:20.04");
    assert!(
        with_nul.contains("whitespace or control characters"),
        "{with_nul}"
    );
    assert!(
        with_nul.contains("\\0"),
        "control characters are escaped: {with_nul}"
    );
}

#[test]
fn name_too_long_names_the_limit() {
    let input = format!("example.com/{}", "a".repeat(250));
    let text = message(&input);
    assert!(
        text.contains(&format!("is {} characters long", 12 + 250)),
        "{text}"
    );
    assert!(
        text.contains(&format!("the limit is {NAME_MAX_LEN}")),
        "{text}"
    );
    assert!(text.contains(&input), "{text}");
    let longest = format!("example.com/{}", "a".repeat(NAME_MAX_LEN - 12));
    assert_eq!(
        Reference::parse(&longest).unwrap().name().len(),
        NAME_MAX_LEN
    );
}

#[test]
fn tag_errors() {
    assert_eq!(
        message("ubuntu:-20.04"),
        "invalid reference format: tag \"-20.04\" in \"ubuntu:-20.04\" must start with a letter, \
         digit or '_' and continue with letters, digits, '_', '.' or '-'"
    );
    let long = format!("ubuntu:{}", "t".repeat(TAG_MAX_LEN + 1));
    assert_eq!(
        Reference::parse(&long),
        Err(ReferenceError::TagTooLong {
            input: long.clone(),
            length: TAG_MAX_LEN + 1
        })
    );
    assert!(message(&long).contains("the limit is 128"));
    let longest = format!("ubuntu:{}", "t".repeat(TAG_MAX_LEN));
    assert_eq!(
        Reference::parse(&longest).unwrap().tag().unwrap().len(),
        TAG_MAX_LEN
    );
}

#[test]
fn digest_errors_carry_the_digest_reason() {
    let text = message("ubuntu@sha256:abc");
    assert!(
        text.starts_with("invalid reference format: invalid digest in \"ubuntu@sha256:abc\": "),
        "{text}"
    );
    assert!(text.contains("64 lower-case hex digits"), "{text}");
    let text = message(&format!("ubuntu@md5:{}", "0".repeat(32)));
    assert!(text.contains("\"md5\" is not supported"), "{text}");
    assert!(matches!(
        Reference::parse("ubuntu@sha256:abc"),
        Err(ReferenceError::InvalidDigest { .. })
    ));
}

#[test]
fn domain_errors_name_the_host() {
    assert_eq!(
        message("bad_host.example.com/x"),
        "invalid reference format: registry host \"bad_host.example.com\" in \
         \"bad_host.example.com/x\" is not a host name: dot-separated labels of letters, digits \
         and inner '-'"
    );
    assert!(message("localhost:http/x").contains("not a number from 0 to 65535"));
    assert!(message("[fe80::1%eth0]:5000/x").contains("not a valid IPv6 address"));
}

#[test]
fn path_errors() {
    assert_eq!(
        message("quay.io/x//y"),
        "invalid reference format: repository name in \"quay.io/x//y\" has an empty path \
         component (a leading, trailing or doubled '/')"
    );
    assert_eq!(
        message("quay.io/x/y..z"),
        "invalid reference format: path component \"y..z\" in \"quay.io/x/y..z\" must start and \
         end with a letter or digit, and separate them with one '.', one or two '_', or '-'s"
    );
    assert_eq!(
        message("quay.io/x/y$"),
        "invalid reference format: '$' is not allowed in the repository name of \"quay.io/x/y$\" \
         (lower-case letters, digits, '.', '_', '-' and '/' are)"
    );
    assert!(message(":latest").contains("has no repository name"));
}

#[test]
fn credentials_are_refused_without_echoing_the_password() {
    for (input, redacted) in [
        (
            "user:hunter2@registry.example.com/team/app:1",
            "***@registry.example.com/team/app:1",
        ),
        ("user:hunter2@localhost:5000/app", "***@localhost:5000/app"),
        (
            "https://user:hunter2@ghcr.io/o/app",
            "https://***@ghcr.io/o/app",
        ),
        ("user:hun@ter/2@ghcr.io/o/app", "***@ghcr.io/o/app"),
        (
            "user:hunter2@registry.example.com",
            "***@registry.example.com",
        ),
        ("user:hunter2@localhost:5000", "***@localhost:5000"),
        ("  user:hunter2@ghcr.io/o/app  ", "***@ghcr.io/o/app"),
        ("user:hunter 2@ghcr.io/o/app", "***@ghcr.io/o/app"),
    ] {
        let err = Reference::parse(input).unwrap_err();
        assert_eq!(
            err,
            ReferenceError::Credentials {
                redacted: redacted.to_string()
            },
            "{input:?}"
        );
        let text = err.to_string();
        let debug = format!("{err:?}");
        for shown in [&text, &debug] {
            assert!(
                !shown.contains("hunter"),
                "password shown for {input:?}: {shown}"
            );
            assert!(
                !shown.contains("ter/2"),
                "password shown for {input:?}: {shown}"
            );
        }
        assert!(text.contains("credentials"), "{text}");
    }
}

#[test]
fn urls_and_image_ids_are_not_references() {
    assert_eq!(
        message("https://quay.io/biocontainers/samtools"),
        "invalid reference format: \"https://quay.io/biocontainers/samtools\" is a URL; an image \
         reference has no scheme (drop \"https://\")"
    );
    let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
    assert!(message(id).contains("64-character hexadecimal identifier"));
}

#[test]
fn new_validates_and_normalizes_its_parts() {
    let r = Reference::new("index.docker.io", "ubuntu", Some("20.04"), None).unwrap();
    assert_eq!(r, Reference::parse("ubuntu:20.04").unwrap());
    let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
    let r = Reference::new(
        "quay.io",
        "biocontainers/samtools",
        Some("1.17"),
        Some(digest),
    )
    .unwrap();
    assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);

    let err = Reference::new("myregistry", "x", None, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("would be read as a Docker Hub namespace"),
        "{err}"
    );
    assert!(matches!(
        Reference::new("quay.io", "X", None, None),
        Err(ReferenceError::NotLowercase { .. })
    ));
    assert!(matches!(
        Reference::new("quay.io", "x", Some(".bad"), None),
        Err(ReferenceError::InvalidTag { .. })
    ));
    assert!(matches!(
        Reference::new("quay.io:99999", "x", None, None),
        Err(ReferenceError::InvalidDomain { .. })
    ));
}

#[test]
fn with_tag_quotes_the_reference_it_would_make() {
    let r = Reference::parse("ubuntu").unwrap();
    assert_eq!(
        r.with_tag("a b").unwrap_err().to_string(),
        "invalid reference format: tag \"a b\" in \"docker.io/library/ubuntu:a b\" must start \
         with a letter, digit or '_' and continue with letters, digits, '_', '.' or '-'"
    );
}

//! Property tests as fuzzing for every parser of user input in the core: image references,
//! digests, `--registry` values, pull and build manifests, namespace files and the plan built
//! from them. Arbitrary and near-valid input must never panic; where an output can be read
//! back, it reads back the same; no entry is lost; no password typed into a reference is shown.
//!
//! Case counts follow proptest's default (256), overridable with `PROPTEST_CASES`.

use std::collections::BTreeSet;

use omx_core::manifest_file::{parse_build_manifest, parse_pull_manifest, PullEntry};
use omx_core::namespace::{check_ecr_repository_name, NamespaceTable};
use omx_core::pull_plan::{plan_pull, PullPlan, TargetRegistry};
use omx_core::reference::{Reference, NAME_MAX_LEN, TAG_MAX_LEN};
use omx_core::Digest;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Text shaped like references (their alphabet, plus a few troublemakers), half the time, and
/// any unicode string the other half.
fn reference_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:/@+-]{0,80}",
        "([a-z0-9]{1,8}[./:@-]){0,8}[a-z0-9]{0,8}",
        "(localhost|quay\\.io|docker\\.io|[a-z]{1,6}\\.[a-z]{2,3}(:[0-9]{1,5})?)/[a-z0-9/_.-]{1,40}(:[A-Za-z0-9_.-]{1,20})?(@sha256:[0-9a-f]{64})?",
        "(quay|dockerhub|ecr-public)/[a-z0-9/_.-]{0,30}(:[a-z0-9.]{0,8})?",
        any::<String>(),
    ]
}

/// Arbitrary JSON, with strings that are sometimes references.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
        reference_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Where plans are made for: ECR unresolved and resolved, and a plain registry.
fn targets() -> Vec<TargetRegistry> {
    ["ecr", "ecr://123456789012/eu-west-2", "127.0.0.1:5000"]
        .iter()
        .map(|text| text.parse().expect("a valid --registry"))
        .collect()
}

/// Checks a plan against its entries: every manifest index is accounted for exactly once (a
/// planned image, a duplicate merged into one, or an error), and every target is usable.
fn check_plan(
    plan: &PullPlan,
    entries: &[PullEntry],
    target: &TargetRegistry,
) -> Result<(), TestCaseError> {
    let mut seen: Vec<usize> = plan
        .images
        .iter()
        .flat_map(|image| image.indexes.iter().copied())
        .chain(plan.errors.iter().map(|error| error.index))
        .collect();
    seen.sort_unstable();
    let expected: Vec<usize> = entries.iter().map(|entry| entry.index).collect();
    prop_assert_eq!(seen, expected);
    let mut targets = BTreeSet::new();
    for image in &plan.images {
        prop_assert!(targets.insert(image.target.clone()), "{}", image.target);
        match target {
            TargetRegistry::Oci { .. } => {
                prop_assert!(Reference::parse(&image.target).is_ok(), "{}", image.target);
            }
            TargetRegistry::Ecr { .. } => {
                prop_assert!(
                    check_ecr_repository_name(&image.target_repository).is_ok(),
                    "{}",
                    image.target_repository
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn references_never_panic_and_read_back(input in reference_text()) {
        if let Ok(reference) = Reference::parse(&input) {
            let canonical = reference.to_string();
            prop_assert_eq!(Reference::parse(&canonical), Ok(reference.clone()));
            prop_assert_eq!(Reference::parse(&reference.familiar()), Ok(reference.clone()));
            prop_assert!(reference.name().chars().count() <= NAME_MAX_LEN);
            if let Some(tag) = reference.tag() {
                prop_assert!(tag.chars().count() <= TAG_MAX_LEN);
            }
        }
    }

    #[test]
    fn references_of_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Reference::parse(&String::from_utf8_lossy(&bytes));
        let _ = NamespaceTable::builtin().parse_source(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_password_in_a_reference_is_never_shown(
        scheme in prop_oneof![Just(""), Just("https://"), Just("docker://")],
        user in "[a-z][a-z0-9._-]{0,8}",
        password in "[A-Za-z0-9!$%^&*()_+=:~-]{10,24}",
        host in "(registry\\.example\\.org|127\\.0\\.0\\.1:5000|quay\\.io|localhost)",
        path in "(quay/)?[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
        tag in "(:[a-z0-9.]{1,8})?",
    ) {
        let input = format!("{scheme}{user}:{password}@{host}/{path}{tag}");
        let error = Reference::parse(&input).expect_err("credentials are refused");
        prop_assert!(!error.to_string().contains(&password), "{}", error);
        prop_assert!(!format!("{error:?}").contains(&password), "{:?}", error);
        let error = NamespaceTable::builtin().parse_source(&input).expect_err("refused");
        prop_assert!(!error.to_string().contains(&password), "{}", error);
        let entries = [PullEntry { index: 0, input: input.clone() }];
        for target in targets() {
            let plan = plan_pull(&entries, &NamespaceTable::builtin(), &target);
            let shown = serde_json::to_string(&plan).expect("a plan serializes");
            prop_assert!(!shown.contains(&password), "{}", shown);
            for error in &plan.errors {
                prop_assert!(!error.to_string().contains(&password), "{}", error);
            }
        }
    }

    #[test]
    fn digests_never_panic_and_read_back(
        input in prop_oneof![
            "(sha256|sha512|md5|SHA256|)[:]?[0-9a-fA-F]{0,130}",
            any::<String>(),
        ]
    ) {
        if let Ok(digest) = input.parse::<Digest>() {
            prop_assert_eq!(digest.to_string(), input.clone());
            prop_assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
        }
    }

    #[test]
    fn registry_arguments_never_panic(input in prop_oneof![reference_text(), "ecr://[0-9]{10,13}/[a-z0-9-]{0,20}/?"]) {
        if let Ok(TargetRegistry::Oci { host }) = input.parse::<TargetRegistry>() {
            let probe = Reference::parse(&format!("{host}/probe"));
            prop_assert_eq!(probe.map(|r| r.domain().to_string()), Ok(host));
        }
    }

    #[test]
    fn pull_manifest_text_never_panics(text in prop_oneof![
        any::<String>(),
        json_value().prop_map(|value| value.to_string()),
        json_value().prop_map(|value| json!({"manifest": value}).to_string()),
    ]) {
        let _ = parse_pull_manifest(&text);
        let _ = parse_build_manifest(&text);
    }

    #[test]
    fn every_pull_manifest_entry_is_an_entry_or_an_error(items in prop::collection::vec(json_value(), 0..24)) {
        let parsed = parse_pull_manifest(&json!({ "manifest": items }).to_string())
            .expect("a manifest array is a valid file");
        let mut indexes: Vec<usize> = parsed
            .entries
            .iter()
            .map(|entry| entry.index)
            .chain(parsed.errors.iter().map(|error| error.index))
            .collect();
        indexes.sort_unstable();
        prop_assert_eq!(indexes, (0..items.len()).collect::<Vec<_>>());
        for entry in &parsed.entries {
            // Strings are kept exactly as written; what they mean is the plan's business.
            prop_assert_eq!(&items[entry.index], &Value::String(entry.input.clone()));
            prop_assert!(!entry.input.trim().is_empty());
        }
        for error in &parsed.errors {
            prop_assert!(
                !matches!(&items[error.index], Value::String(s) if !s.trim().is_empty()),
                "a usable string was refused: {}", error
            );
            let prefix = format!("manifest[{}]", error.index);
            prop_assert!(error.to_string().starts_with(&prefix), "{}", error);
        }
    }

    #[test]
    fn build_manifests_keep_good_entries_and_report_the_rest(
        items in prop::collection::vec(
            prop_oneof![
                (any::<String>(), any::<String>())
                    .prop_map(|(source, target)| json!({"source_uri": source, "target_image": target})),
                json_value(),
            ],
            0..16,
        )
    ) {
        let parsed = parse_build_manifest(&json!({ "manifest": items }).to_string())
            .expect("a manifest array is a valid file");
        prop_assert_eq!(parsed.entries.len() + parsed.errors.len(), items.len());
        for entry in &parsed.entries {
            let item = &items[entry.index];
            prop_assert!(item.is_object(), "{}", item);
            prop_assert_eq!(item["source_uri"].as_str().map(str::trim), Some(entry.source_uri.as_str()));
            prop_assert_eq!(item["target_image"].as_str().map(str::trim), Some(entry.target_image.as_str()));
            prop_assert!(!entry.source_uri.is_empty() && !entry.target_image.is_empty());
        }
    }

    #[test]
    fn plans_account_for_every_entry(inputs in prop::collection::vec(reference_text(), 0..24)) {
        let entries: Vec<PullEntry> = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| PullEntry { index, input })
            .collect();
        for target in targets() {
            let plan = plan_pull(&entries, &NamespaceTable::builtin(), &target);
            check_plan(&plan, &entries, &target)?;
        }
    }

    #[test]
    fn namespace_files_never_panic(text in prop_oneof![
        any::<String>(),
        json_value().prop_map(|value| value.to_string()),
        json_value().prop_map(|value| json!({"rules": value}).to_string()),
    ]) {
        let _ = NamespaceTable::builtin().with_user_rules(&text);
    }

    #[test]
    fn user_namespace_rules_never_break_planning(
        rules in prop::collection::vec(
            (
                prop::collection::vec(
                    prop_oneof![
                        "(\\*\\.)?[a-z0-9.-]{0,16}(:[0-9]{1,5})?",
                        any::<String>(),
                    ],
                    0..3,
                ),
                prop_oneof!["[a-z0-9._/-]{0,12}", any::<String>()],
                prop_oneof![Just("copy"), Just("pull-through-cache"), Just("mirror")],
                proptest::option::of(prop_oneof!["[a-z.:/]{0,8}", any::<String>()]),
            ),
            0..4,
        ),
        inputs in prop::collection::vec(reference_text(), 0..12),
    ) {
        let file = json!({
            "rules": rules.iter().map(|(hosts, namespace, method, shorthand)| {
                let mut rule = json!({"hosts": hosts, "namespace": namespace, "method": method});
                if let Some(shorthand) = shorthand {
                    rule["shorthand"] = json!(shorthand);
                }
                rule
            }).collect::<Vec<_>>()
        });
        let builtin = NamespaceTable::builtin();
        let Ok(table) = builtin.clone().with_user_rules(&file.to_string()) else {
            return Ok(());
        };
        prop_assert_eq!(table.rules().len(), rules.len() + builtin.rules().len());
        let entries: Vec<PullEntry> = inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| PullEntry { index, input })
            .collect();
        for target in targets() {
            let plan = plan_pull(&entries, &table, &target);
            check_plan(&plan, &entries, &target)?;
        }
    }
}

#[test]
fn build_manifest_entries_must_be_objects() {
    let text = json!({"manifest": [["s3://bucket/tool/", "tool:1"]]}).to_string();
    let parsed = parse_build_manifest(&text).expect("a manifest array is a valid file");
    assert!(parsed.entries.is_empty(), "{:?}", parsed.entries);
    assert_eq!(parsed.errors.len(), 1);
    assert!(
        parsed.errors[0].error.contains("expected {\"source_uri\""),
        "{}",
        parsed.errors[0]
    );
}

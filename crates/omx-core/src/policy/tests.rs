//! The merge rules of `policy.rs`, one policy shape per test.

use super::*;

fn updated(change: PolicyChange) -> Value {
    match change {
        PolicyChange::Updated(text) => serde_json::from_str(&text).expect("valid JSON"),
        PolicyChange::Unchanged => panic!("expected an updated policy"),
    }
}

fn statements(policy: &Value) -> Vec<Value> {
    policy["Statement"]
        .as_array()
        .expect("Statement array")
        .clone()
}

fn ours() -> Value {
    Grant::omics_pull().statement()
}

const OTHER_ACCOUNT_PULL: &str = r#"{"Sid":"cross account","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"ecr:BatchGetImage"}"#;

#[test]
fn no_policy_gets_a_fresh_document_with_only_our_statement() {
    for existing in [None, Some(""), Some("  \n")] {
        let policy = updated(merge_omics_statement(existing).unwrap());
        assert_eq!(policy["Version"], POLICY_VERSION);
        assert_eq!(statements(&policy), vec![ours()]);
    }
}

#[test]
fn our_statement_has_the_exact_sid_principal_and_actions() {
    assert_eq!(
        ours(),
        json!({
            "Sid": "omics workflow access",
            "Effect": "Allow",
            "Principal": {"Service": "omics.amazonaws.com"},
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer"
            ]
        })
    );
}

#[test]
fn our_statement_text_has_a_fixed_key_order_whatever_serde_json_features_are_on() {
    assert_eq!(
        Grant::omics_pull().policy_document(),
        "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    \
         {\"Sid\":\"omics workflow access\",\"Effect\":\"Allow\",\
         \"Principal\":{\"Service\":\"omics.amazonaws.com\"},\
         \"Action\":[\"ecr:BatchCheckLayerAvailability\",\"ecr:BatchGetImage\",\
         \"ecr:GetDownloadUrlForLayer\"]}\n  ]\n}"
    );
}

#[test]
fn a_fresh_policy_is_already_granted_on_the_next_merge() {
    let PolicyChange::Updated(text) = merge_omics_statement(None).unwrap() else {
        panic!("expected a new policy");
    };
    assert!(omics_grants(&text));
    assert_eq!(
        merge_omics_statement(Some(&text)).unwrap(),
        PolicyChange::Unchanged
    );
}

#[test]
fn empty_or_missing_statement_list_gets_ours_and_keeps_other_keys() {
    for existing in [
        r#"{"Version":"2008-10-17","Statement":[]}"#,
        r#"{"Version":"2008-10-17"}"#,
    ] {
        let policy = updated(merge_omics_statement(Some(existing)).unwrap());
        // An existing Version is not upgraded: that would change how policy variables in
        // other people's statements are read.
        assert_eq!(policy["Version"], "2008-10-17", "{existing}");
        assert_eq!(statements(&policy), vec![ours()], "{existing}");
    }
}

#[test]
fn other_statements_and_keys_are_kept_verbatim_and_in_order() {
    let existing = format!(
        r#"{{ "Id": "kept-id",  "Version" : "2012-10-17", "Statement": [ {OTHER_ACCOUNT_PULL},
           {{ "Sid" : "lambda",   "Effect":"Allow", "Principal":{{"Service":"lambda.amazonaws.com"}}, "Action":["ecr:BatchGetImage"] }} ] }}"#
    );
    let PolicyChange::Updated(text) = merge_omics_statement(Some(&existing)).unwrap() else {
        panic!("expected an update");
    };
    assert!(text.contains(OTHER_ACCOUNT_PULL), "{text}");
    assert!(text.contains(
        r#"{ "Sid" : "lambda",   "Effect":"Allow", "Principal":{"Service":"lambda.amazonaws.com"}, "Action":["ecr:BatchGetImage"] }"#
    ), "{text}");
    let id_at = text.find("\"Id\"").unwrap();
    let version_at = text.find("\"Version\"").unwrap();
    assert!(id_at < version_at, "top-level key order kept: {text}");

    let policy: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(policy["Id"], "kept-id");
    let statements = statements(&policy);
    assert_eq!(statements.len(), 3);
    assert_eq!(statements[0]["Sid"], "cross account");
    assert_eq!(statements[1]["Sid"], "lambda");
    assert_eq!(statements[2], ours());
}

#[test]
fn a_single_statement_object_becomes_a_list_with_ours_after_it() {
    let existing = format!(r#"{{"Version":"2012-10-17","Statement":{OTHER_ACCOUNT_PULL}}}"#);
    let policy = updated(merge_omics_statement(Some(&existing)).unwrap());
    let statements = statements(&policy);
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0]["Sid"], "cross account");
    assert_eq!(statements[1], ours());
}

#[test]
fn existing_grants_in_any_spelling_leave_the_policy_unchanged() {
    let table = [
        // Exactly ours.
        r#"{"Statement":[{"Sid":"omics workflow access","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
        // Another Sid, actions in another order and case, service as an array.
        r#"{"Statement":[{"Sid":"HealthOmics","Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","omics.amazonaws.com"]},"Action":["ecr:getdownloadurlforlayer","ecr:BatchGetImage","ecr:BatchCheckLayerAvailability","ecr:ListImages"]}]}"#,
        // No Sid, ecr:* as a single string, single statement object.
        r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*"}}"#,
        // Wildcards in the action names, split over two statements.
        r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:Batch*"},{"Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:Get?ownloadUrlForLayer"}]}"#,
        // Everyone.
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*"}]}"#,
        r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["ecr:*"]}]}"#,
        // Everything except pushing.
        r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"NotAction":["ecr:PutImage"]}]}"#,
        // A condition chosen by the owner is respected, not widened.
        r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*","Condition":{"StringEquals":{"aws:SourceAccount":"123456789012"}}}]}"#,
    ];
    for existing in table {
        assert_eq!(
            merge_omics_statement(Some(existing)),
            Ok(PolicyChange::Unchanged),
            "{existing}"
        );
        assert!(omics_grants(existing), "{existing}");
    }
}

#[test]
fn grants_that_fall_short_get_our_statement() {
    let table = [
        // Two of the three actions.
        r#"{"Statement":[{"Sid":"x","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
        // Another service.
        r#"{"Statement":[{"Sid":"x","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"ecr:*"}]}"#,
        // An account principal is not the omics service.
        r#"{"Statement":[{"Sid":"x","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"ecr:*"}]}"#,
        // NotPrincipal excluding omics.
        r#"{"Statement":[{"Sid":"x","Effect":"Allow","NotPrincipal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*"}]}"#,
        // NotAction excluding a needed action.
        r#"{"Statement":[{"Sid":"x","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"NotAction":"ecr:BatchGetImage"}]}"#,
        // Another service's wildcard.
        r#"{"Statement":[{"Sid":"x","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"s3:*"}]}"#,
        // An effect IAM would reject is no grant.
        r#"{"Statement":[{"Sid":"x","Effect":"allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*"}]}"#,
    ];
    for existing in table {
        assert!(!omics_grants(existing), "{existing}");
        let policy = updated(merge_omics_statement(Some(existing)).unwrap());
        let statements = statements(&policy);
        assert_eq!(statements.len(), 2, "{existing}");
        assert_eq!(
            statements[0]["Sid"], "x",
            "the other statement is kept: {existing}"
        );
        assert_eq!(statements[1], ours(), "{existing}");
    }
}

#[test]
fn our_sid_lacking_an_action_is_replaced_in_place() {
    let existing = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"omics workflow access","Effect":"Allow","Principal":{{"Service":"omics.amazonaws.com"}},"Action":["ecr:BatchGetImage"]}},{OTHER_ACCOUNT_PULL}]}}"#
    );
    let policy = updated(merge_omics_statement(Some(&existing)).unwrap());
    let statements = statements(&policy);
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0], ours());
    assert_eq!(statements[1]["Sid"], "cross account");
}

#[test]
fn a_duplicate_of_our_sid_is_dropped_because_ecr_rejects_duplicate_sids() {
    let short = r#"{"Sid":"omics workflow access","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:BatchGetImage"}"#;
    let existing = format!(r#"{{"Statement":[{short},{OTHER_ACCOUNT_PULL},{short}]}}"#);
    let policy = updated(merge_omics_statement(Some(&existing)).unwrap());
    let statements = statements(&policy);
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[0], ours());
    assert_eq!(statements[1]["Sid"], "cross account");
}

#[test]
fn an_unconditional_deny_against_omics_is_reported_not_overridden() {
    let table = [
        (
            r#"{"Statement":[{"Sid":"no omics","Effect":"Deny","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:BatchGetImage"}]}"#,
            Some("no omics"),
            vec!["ecr:BatchGetImage"],
        ),
        (
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*"},{"Effect":"Deny","Principal":"*","Action":["ecr:Get*"]}]}"#,
            None,
            vec!["ecr:GetDownloadUrlForLayer"],
        ),
        (
            r#"{"Statement":[{"Sid":"only admins","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:role/admin"},"Action":"ecr:*"}]}"#,
            Some("only admins"),
            OMICS_PULL_ACTIONS.to_vec(),
        ),
        (
            r#"{"Statement":[{"Sid":"omics workflow access","Effect":"Deny","Principal":{"Service":"omics.amazonaws.com"},"Action":"*"}]}"#,
            Some("omics workflow access"),
            OMICS_PULL_ACTIONS.to_vec(),
        ),
    ];
    for (existing, sid, actions) in &table {
        let expected = PolicyError::DeniedByExisting {
            sid: sid.map(str::to_string),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        assert_eq!(
            merge_omics_statement(Some(existing)),
            Err(expected),
            "{existing}"
        );
        assert!(!omics_grants(existing), "{existing}");
    }
    let message = merge_omics_statement(Some(table[0].0))
        .unwrap_err()
        .to_string();
    assert!(message.contains("\"no omics\""), "{message}");
    assert!(message.contains("ecr:BatchGetImage"), "{message}");
}

#[test]
fn a_conditional_deny_or_a_deny_on_other_actions_does_not_block() {
    let table = [
        r#"{"Statement":[{"Sid":"deputy","Effect":"Deny","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*","Condition":{"StringNotEquals":{"aws:SourceAccount":"123456789012"}}}]}"#,
        r#"{"Statement":[{"Sid":"deputy","Effect":"Deny","Principal":"*","Action":["ecr:PutImage","ecr:DeleteRepository"]}]}"#,
        r#"{"Statement":[{"Sid":"deputy","Effect":"Deny","Principal":{"Service":"lambda.amazonaws.com"},"Action":"ecr:*"}]}"#,
    ];
    for existing in table {
        let policy = updated(merge_omics_statement(Some(existing)).unwrap());
        let statements = statements(&policy);
        assert_eq!(statements[0]["Sid"], "deputy", "{existing}");
        assert_eq!(statements[1], ours(), "{existing}");
    }
}

#[test]
fn malformed_policies_are_errors_that_say_why() {
    let invalid_json = ["{", "not json", r#"{"Statement":[}"#, r#"{"a":1} trailing"#];
    for existing in invalid_json {
        let error = merge_omics_statement(Some(existing)).unwrap_err();
        assert!(
            matches!(error, PolicyError::InvalidJson(_)),
            "{existing}: {error:?}"
        );
        assert!(error
            .to_string()
            .starts_with("the existing policy is not valid JSON"));
        assert!(!omics_grants(existing));
    }
    let not_a_policy = [
        ("[]", "not a JSON object"),
        ("42", "not a JSON object"),
        (r#"{"Statement":"ecr:*"}"#, "neither an object nor an array"),
        (r#"{"Statement":[1]}"#, "statement 0 is not a JSON object"),
        (r#"{"Statement":[],"Statement":[]}"#, "appears twice"),
    ];
    for (existing, reason) in not_a_policy {
        let error = merge_omics_statement(Some(existing)).unwrap_err();
        assert!(
            matches!(error, PolicyError::NotAPolicy(_)),
            "{existing}: {error:?}"
        );
        assert!(error.to_string().contains(reason), "{existing}: {error}");
    }
}

#[test]
fn registry_statement_targets_the_prefix_in_the_right_partition() {
    assert_eq!(
        Grant::omics_import("us-east-1", "123456789012", "docker-hub").statement(),
        json!({
            "Sid": "omics pull through cache",
            "Effect": "Allow",
            "Principal": {"Service": "omics.amazonaws.com"},
            "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
            "Resource": ["arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*"]
        })
    );
    assert_eq!(
        repository_prefix_arn("cn-north-1", "123456789012", "/quay/"),
        "arn:aws-cn:ecr:cn-north-1:123456789012:repository/quay/*"
    );
    assert_eq!(
        repository_prefix_arn("us-gov-west-1", "123456789012", "quay"),
        "arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/quay/*"
    );
    assert_eq!(
        Partition::of_region("cn-northwest-1").dns_suffix(),
        "amazonaws.com.cn"
    );
    assert_eq!(
        Partition::of_region("eu-west-1").dns_suffix(),
        "amazonaws.com"
    );
}

#[test]
fn registry_merge_adds_prefixes_to_our_statement_and_is_idempotent() {
    let merge = |existing: Option<&str>, prefix: &str| {
        merge_omics_registry_statement(existing, "us-east-1", "123456789012", prefix)
    };
    let PolicyChange::Updated(first) = merge(None, "docker-hub").unwrap() else {
        panic!("expected a new registry policy");
    };
    assert_eq!(
        merge(Some(&first), "docker-hub").unwrap(),
        PolicyChange::Unchanged
    );

    let second = updated(merge(Some(&first), "quay").unwrap());
    let statements = statements(&second);
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0]["Resource"],
        json!([
            "arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*",
            "arn:aws:ecr:us-east-1:123456789012:repository/quay/*"
        ])
    );
    let second = serde_json::to_string(&second).unwrap();
    assert_eq!(
        merge(Some(&second), "docker-hub").unwrap(),
        PolicyChange::Unchanged
    );
    assert_eq!(
        merge(Some(&second), "quay").unwrap(),
        PolicyChange::Unchanged
    );
}

#[test]
fn registry_grants_are_checked_against_resources() {
    let merge = |existing: &str| {
        merge_omics_registry_statement(Some(existing), "us-east-1", "123456789012", "quay")
    };
    // The whole registry covers the prefix.
    let everything = r#"{"Statement":[{"Sid":"all","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":["ecr:CreateRepository","ecr:BatchImportUpstreamImage"],"Resource":"arn:aws:ecr:us-east-1:123456789012:repository/*"}]}"#;
    assert_eq!(merge(everything).unwrap(), PolicyChange::Unchanged);
    // Another prefix, a narrower pattern, or no Resource at all does not.
    for existing in [
        r#"{"Statement":[{"Sid":"other","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*","Resource":"arn:aws:ecr:us-east-1:123456789012:repository/docker-hub/*"}]}"#,
        r#"{"Statement":[{"Sid":"other","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*","Resource":"arn:aws:ecr:us-east-1:123456789012:repository/quay/?"}]}"#,
        r#"{"Statement":[{"Sid":"other","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*"}]}"#,
    ] {
        let statements = statements(&updated(merge(existing).unwrap()));
        assert_eq!(statements.len(), 2, "{existing}");
        assert_eq!(statements[0]["Sid"], "other");
        assert_eq!(statements[1]["Sid"], OMICS_REGISTRY_SID);
    }
    // A Deny on the prefix blocks; one on another prefix does not.
    let denied = r#"{"Statement":[{"Sid":"no import","Effect":"Deny","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:BatchImportUpstreamImage","Resource":"arn:aws:ecr:*:*:repository/quay/*"}]}"#;
    assert_eq!(
        merge(denied),
        Err(PolicyError::DeniedByExisting {
            sid: Some("no import".to_string()),
            actions: vec!["ecr:BatchImportUpstreamImage".to_string()],
        })
    );
    let elsewhere = r#"{"Statement":[{"Sid":"no import","Effect":"Deny","Principal":{"Service":"omics.amazonaws.com"},"Action":"ecr:*","Resource":"arn:aws:ecr:*:*:repository/docker-hub/*"}]}"#;
    assert!(merge(elsewhere).is_ok());
}

#[test]
fn wildcards_follow_iam_rules() {
    assert!(wildcard_match("*", ""));
    assert!(wildcard_match("ecr:*", "ecr:batchgetimage"));
    assert!(wildcard_match("ecr:*image", "ecr:batchgetimage"));
    assert!(wildcard_match("e?r:*", "ecr:x"));
    assert!(wildcard_match("a*b*c", "aXXbYYbZc"));
    assert!(!wildcard_match("ecr:*", "s3:getobject"));
    assert!(!wildcard_match("a*b", "aXXbY"));
    assert!(!wildcard_match("ecr:?", "ecr:"));
    assert!(wildcard_match("repo/*", "repo/quay/*"));
    assert!(!wildcard_match("repo/quay/?", "repo/quay/*"));
}

#[test]
fn the_created_by_tag_is_the_one_the_tool_has_always_used() {
    assert_eq!(CREATED_BY_TAG, ("createdBy", "omx-ecr-helper"));
}

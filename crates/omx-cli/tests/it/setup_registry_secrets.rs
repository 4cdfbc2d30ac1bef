//! `setup --credential-file`: the secrets of the registries HealthOmics copies from itself, kept
//! in Secrets Manager (moto) idempotently, with ECR (the stand-in) set up as before, and the
//! tokens never shown.

use std::path::Path;

use omx_core::strategy::SecretArn;
use omx_testenv::OmxOutput;
use omx_testenv::{EcrStandIn, Moto};
use serde_json::{json, Value};

use crate::util::text;

const NGC_TOKEN: &str = "nvapi-first-token-value";
const GAR_TOKEN: &str = "gar-service-account-token";

/// `setup --credential-file` with the two tokens in the environment (`ngc` for NGC).
fn setup(moto: &Moto, ecr: &EcrStandIn, home: &Path, extra: &[&str], ngc: &str) -> OmxOutput {
    let file = home.join("registry-credentials.json");
    let mut args = vec!["setup", "--credential-file", file.to_str().unwrap()];
    args.extend(extra);
    crate::util::moto_command(&args, moto, home)
        .env("AWS_ENDPOINT_URL_ECR", ecr.endpoint())
        .env("NGC_API_KEY", ngc)
        .env("GAR_TOKEN", GAR_TOKEN)
        .run()
}

fn secret_value(moto: &Moto, name: &str) -> Value {
    let answer = moto.aws_json_call(
        "secretsmanager",
        "secretsmanager.GetSecretValue",
        json!({ "SecretId": name }),
    );
    serde_json::from_str(answer["SecretString"].as_str().unwrap()).unwrap()
}

fn secret_names(moto: &Moto) -> Vec<String> {
    let answer = moto.aws_json_call("secretsmanager", "secretsmanager.ListSecrets", json!({}));
    let mut names: Vec<String> = answer["SecretList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// (prefix, action) of every credential-secret step of a JSON setup report.
fn secret_steps(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["resource"] == "credential-secret")
        .map(|step| {
            (
                step["prefix"].as_str().unwrap().to_string(),
                step["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn report_of(output: &OmxOutput) -> Value {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for token in [NGC_TOKEN, GAR_TOKEN, "nvapi-second"] {
        assert!(
            !stdout.contains(token) && !stderr.contains(token),
            "{stdout}\n{stderr}"
        );
    }
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn setup_keeps_registry_secrets_idempotently_and_never_shows_a_token() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let ecr = EcrStandIn::builder().start();
    let home = tempfile::tempdir().unwrap();
    let entries = json!({"registries": [
        {"host": "nvcr.io", "username": "$oauthtoken", "access_token_env": "NGC_API_KEY"},
        {"host": "us-central1-docker.pkg.dev", "username": "oauth2accesstoken", "access_token_env": "GAR_TOKEN"}
    ]});
    std::fs::write(
        home.path().join("registry-credentials.json"),
        entries.to_string(),
    )
    .unwrap();
    let json_format = ["--format", "json"];

    let first = report_of(&setup(&moto, &ecr, home.path(), &json_format, NGC_TOKEN));
    assert_eq!(
        secret_steps(&first),
        [
            ("nvcr".into(), "created".into()),
            ("gar".into(), "created".into())
        ]
    );
    // The ECR part of setup ran as before.
    assert!(first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|step| step["resource"] == "pull-through-cache-rule" && step["prefix"] == "quay"));
    assert_eq!(
        secret_names(&moto),
        [
            "omics-registry/nvcr.io",
            "omics-registry/us-central1-docker.pkg.dev"
        ]
    );
    assert_eq!(
        secret_value(&moto, "omics-registry/nvcr.io"),
        json!({"username": "$oauthtoken", "accessToken": NGC_TOKEN})
    );
    let credentials = first["credentials"].as_array().unwrap();
    assert_eq!(credentials[0]["host"], "nvcr.io");
    let nvcr_arn = credentials[0]["credential_arn"]
        .as_str()
        .unwrap()
        .to_string();
    SecretArn::parse(&nvcr_arn).unwrap();
    let described = moto.aws_json_call(
        "secretsmanager",
        "secretsmanager.DescribeSecret",
        json!({"SecretId": "omics-registry/nvcr.io"}),
    );
    assert_eq!(described["ARN"], nvcr_arn.as_str());
    assert_eq!(
        described["Tags"],
        json!([{"Key": "createdBy", "Value": "omx-ecr-helper"}])
    );

    // Again with the same tokens: nothing changes.
    let again = report_of(&setup(&moto, &ecr, home.path(), &json_format, NGC_TOKEN));
    assert_eq!(
        secret_steps(&again),
        [
            ("nvcr".into(), "unchanged".into()),
            ("gar".into(), "unchanged".into())
        ]
    );

    // A new NGC token: a dry run says it would update and changes nothing; a run updates it.
    let new_token = "nvapi-second-token-value";
    let dry = report_of(&setup(
        &moto,
        &ecr,
        home.path(),
        &["--format", "json", "--dry-run"],
        new_token,
    ));
    assert_eq!(
        secret_steps(&dry),
        [
            ("nvcr".into(), "would-update".into()),
            ("gar".into(), "unchanged".into())
        ]
    );
    assert_eq!(
        secret_value(&moto, "omics-registry/nvcr.io")["accessToken"],
        NGC_TOKEN
    );
    let table = setup(&moto, &ecr, home.path(), &[], new_token);
    let table_text = text(&table.stdout);
    assert!(table.status.success(), "{table_text}");
    assert!(!table_text.contains(new_token), "{table_text}");
    assert!(
        table_text.contains(&format!("--credential nvcr.io={nvcr_arn}")),
        "{table_text}"
    );
    assert_eq!(
        secret_value(&moto, "omics-registry/nvcr.io")["accessToken"],
        new_token
    );

    // The ARN setup printed is what map takes.
    let manifest = home.path().join("manifest.json");
    std::fs::write(
        &manifest,
        json!({"manifest": ["nvcr.io/nvidia/clara/parabricks:4.2.0-1"]}).to_string(),
    )
    .unwrap();
    // What setup keeps is found by name: map --from-region and pull, given no --credential,
    // make nvcr.io native with that secret.
    let on_ecr = |args: &[&str]| crate::util::on_ecr(args, &moto, &ecr, home.path());
    let manifest = manifest.to_str().unwrap();
    let map = on_ecr(&["map", manifest, "--format", "registry-map", "--from-region"]);
    assert!(map.status.success(), "{}", text(&map.stderr));
    let map: Value = serde_json::from_str(&text(&map.stdout)).unwrap();
    assert_eq!(
        map["registryMappings"],
        json!([{"upstreamRegistryUrl": "nvcr.io", "ecrRepositoryPrefix": "nvcr", "credentialArn": nvcr_arn}])
    );
    let offline = on_ecr(&["map", manifest, "--format", "registry-map"]);
    let offline: Value = serde_json::from_str(&text(&offline.stdout)).unwrap();
    assert_eq!(offline["registryMappings"], json!([]));
    let pull = on_ecr(&["pull", manifest, "--format", "json"]);
    let report: Value = serde_json::from_str(&text(&pull.stdout))
        .unwrap_or_else(|e| panic!("{e}: {}", text(&pull.stderr)));
    assert_eq!(report["images"][0]["status"], "NATIVE", "{report}");
    assert!(pull.status.success());

    // verify --registry-map: each mapping against the region, each image against the map.
    let missing_secret = nvcr_arn.replace("omics-registry/nvcr.io", "omics-registry/gone");
    let workflow_map = json!({"containerRegistryMap": {
        "registryMappings": [
            {"upstreamRegistryUrl": "nvcr.io", "ecrRepositoryPrefix": "nvcr", "credentialArn": nvcr_arn},
            {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay"},
            {"upstreamRegistryUrl": "public.ecr.aws", "ecrRepositoryPrefix": "elsewhere"},
            {"upstreamRegistryUrl": "gcr.io", "ecrRepositoryPrefix": "gcr", "credentialArn": missing_secret},
            {"upstreamRegistryUrl": "us-central1-docker.pkg.dev", "ecrRepositoryPrefix": "gar"}
        ]
    }});
    let map_file = home.path().join("workflow-map.json");
    std::fs::write(&map_file, workflow_map.to_string()).unwrap();
    let images = home.path().join("images.json");
    std::fs::write(
        &images,
        json!({"manifest": ["nvcr.io/nvidia/clara/parabricks:4.2.0-1",
                            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
                            "ghcr.io/owner/tool:1"]})
        .to_string(),
    )
    .unwrap();
    let verify = on_ecr(&[
        "verify",
        images.to_str().unwrap(),
        "--strategy",
        "native",
        "--registry-map",
        map_file.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stderr));
    let verified: Value = serde_json::from_str(&text(&verify.stdout)).unwrap();
    let checks: Vec<(String, String)> = verified["registry_map"]["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["status"].as_str().unwrap().to_string(),
                m["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        ("pass", "secretsmanager:GetSecretValue"),
        ("pass", "pull-through cache rule quay caches quay.io"),
        ("fail", "no pull-through cache rule for prefix elsewhere"),
        ("fail", "no secret"),
        ("fail", "only with a credentialArn"),
    ];
    for ((status, reason), (want_status, want_reason)) in checks.iter().zip(expect) {
        assert_eq!(status, want_status, "{reason}");
        assert!(reason.contains(want_reason), "{reason}");
    }
    assert_eq!(checks.len(), expect.len());
    let routes: Vec<&str> = verified["registry_map"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["pass", "pass", "fail"]);
}

#[test]
fn a_credential_file_naming_an_unset_variable_is_unusable_input() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("registry-credentials.json");
    let entries = json!({"registries": [
        {"host": "nvcr.io", "username": "$oauthtoken", "access_token_env": "OMX_TEST_UNSET_TOKEN"}
    ]});
    std::fs::write(&file, entries.to_string()).unwrap();
    // Unusable before any AWS call: no AWS is configured at all.
    let unusable = |args: &[&str]| {
        let output = crate::util::fresh_machine(args, home.path()).run();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        stderr
    };
    let stderr = unusable(&["setup", "--credential-file", file.to_str().unwrap()]);
    assert!(
        stderr.contains("registries[0] (nvcr.io): the environment variable OMX_TEST_UNSET_TOKEN"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // A registry map with a member the service does not know is unusable input too.
    let map_file = home.path().join("map.json");
    std::fs::write(
        &map_file,
        json!({"registryMappings": [{"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay", "colour": "red"}]})
            .to_string(),
    )
    .unwrap();
    let manifest = home.path().join("manifest.json");
    std::fs::write(
        &manifest,
        json!({"manifest": ["quay.io/x/y:1"]}).to_string(),
    )
    .unwrap();
    let stderr = unusable(&[
        "verify",
        manifest.to_str().unwrap(),
        "--registry-map",
        map_file.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("not a containerRegistryMap: unknown field `colour`"),
        "{stderr}"
    );
}

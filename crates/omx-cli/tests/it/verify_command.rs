//! Runs the built `omx-ecr-helper verify` against real parts: moto as the ECR control plane and a
//! `docker-registry` standing in for the ECR registry API, its htpasswd holding moto's token
//! (`AWS` / `123456789012-auth-token`), so the login is the real ECR flow.

use omx_testenv::{
    moto_ecr_password, Format, ImageFixture, LayerSpec, Moto, Registry, MOTO_ACCOUNT_ID,
};
use serde_json::{json, Value};

use crate::util::on_moto as omx;
use crate::util::text;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// Where the manifest's images come from; only their private names matter to `verify`.
const SOURCE: &str = "registry.example.org";

const OMICS_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"omics workflow access","Effect":"Allow","Principal":{"Service":"omics.amazonaws.com"},"Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;

/// A repository on moto, with the HealthOmics policy when `granted`.
fn repository(moto: &Moto, name: &str, granted: bool) {
    moto.ecr_call("CreateRepository", json!({"repositoryName": name}));
    if granted {
        moto.ecr_call(
            "SetRepositoryPolicy",
            json!({"repositoryName": name, "policyText": OMICS_POLICY}),
        );
    }
}

#[test]
fn verify_reports_each_failed_check_with_its_reason_and_fix() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let ecr_registry = Registry::builder()
        .basic_auth("AWS", moto_ecr_password(MOTO_ACCOUNT_ID))
        .start();
    let home = tempfile::tempdir().unwrap();

    let amd64 = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64")],
        &LayerSpec::distinct(31, 1, 10_000),
        Format::Oci,
    );
    let single_amd64 = ImageFixture::single(&LayerSpec::distinct(32, 1, 10_000), Format::Oci);
    amd64.push(&ecr_registry, &format!("{SOURCE}/team/good:1"));
    amd64.push(&ecr_registry, &format!("{SOURCE}/team/open:1"));
    repository(&moto, &format!("{SOURCE}/team/good"), true);
    repository(&moto, &format!("{SOURCE}/team/open"), false);
    // An index with only an arm64 child; a single image is judged by its config's platform.
    let arm = ImageFixture::index(
        &[("linux", "arm64")],
        &LayerSpec::distinct(33, 1, 10_000),
        Format::DockerV2,
    );
    arm.push(&ecr_registry, &format!("{SOURCE}/team/arm:1"));
    single_amd64.push(&ecr_registry, &format!("{SOURCE}/team/single:1"));
    repository(&moto, &format!("{SOURCE}/team/arm"), true);
    repository(&moto, &format!("{SOURCE}/team/single"), true);

    let manifest = home.path().join("manifest.json");
    let inputs: Vec<String> = ["good", "open", "arm", "single", "missing"]
        .iter()
        .map(|name| format!("{SOURCE}/team/{name}:1"))
        .collect();
    std::fs::write(&manifest, json!({ "manifest": inputs }).to_string()).unwrap();
    let manifest = manifest.to_str().unwrap();
    let endpoint = ecr_registry.host();
    let args = |format: &'static str| {
        vec![
            "verify",
            manifest,
            "--registry",
            "ecr://123456789012/us-east-1",
            "--ecr-registry-endpoint",
            &endpoint,
            "--format",
            format,
        ]
    };

    let output = omx(&args("json"), &moto, home.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let results: Vec<Vec<(String, String)>> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            image["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|check| {
                    (
                        check["status"].as_str().unwrap().to_string(),
                        check["fix"]["kind"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .collect();
    let check = |status: &str, fix: &str| (status.to_string(), fix.to_string());
    let pass = || check("pass", "");
    assert_eq!(
        results,
        vec![
            vec![pass(), pass(), pass(), pass()],
            vec![pass(), check("fail", "pull"), pass(), pass()],
            vec![pass(), pass(), check("fail", "amd64-image"), pass()],
            vec![pass(), pass(), pass(), pass()],
            vec![
                check("fail", "pull"),
                check("skip", ""),
                check("skip", ""),
                pass()
            ],
        ]
    );

    let output = omx(&args("table"), &moto, home.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    let fix = format!("fix: omx-ecr-helper pull {manifest}\n");
    for expected in [
        format!("{ECR_HOST}/{SOURCE}/team/good:1"),
        format!(
            "FAIL    repository {SOURCE}/team/open has no policy, so omics.amazonaws.com cannot \
             pull"
        ),
        "an index of linux/arm64; HealthOmics runs linux/amd64 only".to_string(),
        "use an image with a linux/amd64 variant, or rebuild it for linux/amd64".to_string(),
        format!("{ECR_HOST}/{SOURCE}/team/missing:1 is not in the registry"),
        fix,
        "2 of 5 image(s) ready for HealthOmics, 0 invalid entries".to_string(),
    ] {
        assert!(
            table.contains(&expected),
            "{expected:?} missing from:\n{table}"
        );
    }

    // Only the ready images: exit 0. Workflows in another region: every image fails there.
    let ready = home.path().join("ready.json");
    std::fs::write(
        &ready,
        json!({ "manifest": [&inputs[0], &inputs[3]] }).to_string(),
    )
    .unwrap();
    let ready = ready.to_str().unwrap();
    let mut ready_args = args("table");
    ready_args[1] = ready;
    let output = omx(&ready_args, &moto, home.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    ready_args.extend(["--region", "eu-west-1"]);
    let output = omx(&ready_args, &moto, home.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(
        table.contains("in us-east-1; HealthOmics in eu-west-1 pulls only from ECR in eu-west-1")
            && table.contains(&format!(
                "omx-ecr-helper pull {ready} --registry ecr --region eu-west-1"
            )),
        "{table}"
    );
}

#[test]
fn unusable_input_exits_2_before_any_aws_call() {
    let home = tempfile::tempdir().unwrap();
    let manifest = home.path().join("manifest.json");
    std::fs::write(&manifest, "{\"manifest\": [\"ubuntu:20.04\",]}").unwrap();
    let output = crate::util::binary()
        .args(["verify", manifest.to_str().unwrap()])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("line 1, column 30"),
        "{}",
        text(&output.stderr)
    );
}

//! Strategies per image (native, prime, copy) and the registry maps they give, checked against
//! HealthOmics' own API model: every map a test here makes is validated against the
//! `ContainerRegistryMap` shapes of botocore's omics model (`fixtures/`, with its provenance), by
//! a small validator of the model's rules (required members, no unknown members, lengths,
//! patterns matched whole).

use std::path::Path;

use omx_testenv::OmxOutput;
use omx_testenv::{EcrStandIn, Format, ImageFixture, LayerSpec, Moto, Registry};
use serde_json::{json, Map, Value};

use crate::util::text;

const MODEL: &str = include_str!("../fixtures/omics_container_registry_map_shapes.json");
const ECR: &str = "ecr://123456789012/us-east-1";
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:omics-registry/{name}-AbCdEf")
}

/// What the model says is wrong with `value` as a `shape`, one line per fault (empty: valid).
fn model_faults(value: &Value, shape: &str) -> Vec<String> {
    let model: Value = serde_json::from_str(MODEL).unwrap();
    let mut faults = Vec::new();
    check_value(&model["shapes"], shape, value, "$", &mut faults);
    faults
}

fn check_value(shapes: &Value, name: &str, value: &Value, at: &str, faults: &mut Vec<String>) {
    let shape = &shapes[name];
    match shape["type"].as_str().unwrap() {
        "structure" => {
            let Some(object) = value.as_object() else {
                return faults.push(format!("{at}: {name} must be an object"));
            };
            check_structure(shapes, name, object, at, faults);
        }
        "list" => {
            let Some(items) = value.as_array() else {
                return faults.push(format!("{at}: {name} must be a list"));
            };
            let member = shape["member"]["shape"].as_str().unwrap();
            for (index, item) in items.iter().enumerate() {
                check_value(shapes, member, item, &format!("{at}[{index}]"), faults);
            }
        }
        "string" => {
            let Some(text) = value.as_str() else {
                return faults.push(format!("{at}: {name} must be a string"));
            };
            let length = text.chars().count() as u64;
            let min = shape["min"].as_u64().unwrap_or(0);
            let max = shape["max"].as_u64().unwrap_or(u64::MAX);
            if !(min..=max).contains(&length) {
                faults.push(format!("{at}: {name} is {length} long, not {min}..{max}"));
            }
            if let Some(pattern) = shape["pattern"].as_str() {
                // Matched whole, as the service does. In the Java-style class of `Uri`, `||` is
                // two literal '|' characters, which the regex crate reads the same way.
                let whole = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
                if !whole.is_match(text) {
                    faults.push(format!("{at}: {name} {text:?} does not match {pattern}"));
                }
            }
        }
        other => faults.push(format!("{at}: the validator has no rule for type {other}")),
    }
}

fn check_structure(
    shapes: &Value,
    name: &str,
    object: &Map<String, Value>,
    at: &str,
    faults: &mut Vec<String>,
) {
    let shape = &shapes[name];
    let members = shape["members"].as_object().unwrap();
    for required in shape["required"].as_array().into_iter().flatten() {
        let required = required.as_str().unwrap();
        if !object.contains_key(required) {
            faults.push(format!("{at}: {name} lacks required {required}"));
        }
    }
    for (key, value) in object {
        match members.get(key) {
            Some(member) => check_value(
                shapes,
                member["shape"].as_str().unwrap(),
                value,
                &format!("{at}.{key}"),
                faults,
            ),
            None => faults.push(format!("{at}: {name} has no member {key}")),
        }
    }
}

/// Fails the test unless the model accepts `map` as a ContainerRegistryMap.
fn assert_model_accepts(map: &Value) {
    let faults = model_faults(map, "ContainerRegistryMap");
    assert!(faults.is_empty(), "{faults:#?}\nin {map:#}");
}

#[test]
fn the_validator_holds_maps_to_the_models_rules() {
    let good = json!({
        "registryMappings": [
            {"upstreamRegistryUrl": "nvcr.io", "ecrRepositoryPrefix": "nvcr", "credentialArn": arn("nvcr")},
            {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay", "ecrAccountId": "123456789012"}
        ],
        "imageMappings": [{"sourceImage": "ubuntu:22.04", "destinationImage": format!("{HOST}/dockerhub/ubuntu:22.04")}]
    });
    assert_model_accepts(&good);
    let faults_of = |map: Value| model_faults(&map, "ContainerRegistryMap").join("\n");
    let one = |mapping: Value| json!({"registryMappings": [mapping]});
    for (map, fault) in [
        (
            one(json!({"ecrRepositoryPrefix": "x"})),
            "lacks required upstreamRegistryUrl",
        ),
        (
            one(json!({"upstreamRegistryUrl": "a.io", "ecrRepositoryPrefix": "x", "colour": 1})),
            "has no member colour",
        ),
        (
            one(json!({"upstreamRegistryUrl": "a.io", "ecrRepositoryPrefix": ""})),
            "is 0 long, not 1..256",
        ),
        (
            one(
                json!({"upstreamRegistryUrl": "a.io", "ecrRepositoryPrefix": "x", "credentialArn": "omics-registry/nvcr"}),
            ),
            "does not match arn:aws",
        ),
        (
            one(
                json!({"upstreamRegistryUrl": "a.io", "ecrRepositoryPrefix": "x", "credentialArn": format!("{} x", arn("n"))}),
            ),
            "does not match arn:aws",
        ),
        (
            one(
                json!({"upstreamRegistryUrl": "a.io", "ecrRepositoryPrefix": "x", "ecrAccountId": "12345"}),
            ),
            "is 5 long, not 12..12",
        ),
        (
            one(json!({"upstreamRegistryUrl": "a\u{7}b", "ecrRepositoryPrefix": "x"})),
            "does not match",
        ),
        (
            json!({"imageMappings": {"sourceImage": "a"}}),
            "must be a list",
        ),
    ] {
        let faults = faults_of(map.clone());
        assert!(faults.contains(fault), "{map}: {faults}");
    }
}

/// A manifest with every kind of upstream: pull-through cache (quay, ecr-public), copied only
/// (Docker Hub), and the registries HealthOmics copies from itself.
const MIXED: [&str; 7] = [
    "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
    "public.ecr.aws/lts/ubuntu:22.04",
    "ubuntu:22.04",
    "nvcr.io/nvidia/clara/parabricks:4.2.0-1",
    "us-central1-docker.pkg.dev/proj/repo/tool:2",
    "community.wave.seqera.io/library/samtools:1.20--b5dfbd93de237464",
    "gcr.io/google-containers/busybox:1.27",
];

fn offline(args: &[&str], home: &Path) -> OmxOutput {
    let manifest = home.join("manifest.json");
    std::fs::write(&manifest, json!({ "manifest": MIXED }).to_string()).unwrap();
    let mut all = vec![args[0], manifest.to_str().unwrap(), "--registry", ECR];
    all.extend(&args[1..]);
    crate::util::fresh_machine(&all, home).run()
}

fn stdout_json(output: &OmxOutput) -> Value {
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    serde_json::from_str(&text(&output.stdout)).unwrap()
}

fn credentials() -> Vec<String> {
    vec![
        "--credential".into(),
        format!("nvcr.io={}", arn("nvcr")),
        "--credential".into(),
        format!("US-CENTRAL1-docker.pkg.dev={}", arn("gar")),
        "--credential".into(),
        format!("community.wave.seqera.io={}", arn("wave")),
    ]
}

fn upstreams(map: &Value) -> Vec<(String, String, Option<String>)> {
    map["registryMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["upstreamRegistryUrl"].as_str().unwrap().to_string(),
                m["ecrRepositoryPrefix"].as_str().unwrap().to_string(),
                m["credentialArn"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn sources(map: &Value) -> Vec<String> {
    map["imageMappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sourceImage"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn registry_maps_with_and_without_credentials_are_what_the_model_accepts() {
    let home = tempfile::tempdir().unwrap();
    let cache = |url: &str, prefix: &str| (url.to_string(), prefix.to_string(), None);

    // No credential: the registries HealthOmics copies from are copied by the tool, as before.
    let plain = stdout_json(&offline(&["map", "--format", "registry-map"], home.path()));
    assert_model_accepts(&plain);
    assert_eq!(
        upstreams(&plain),
        vec![
            cache("quay.io", "quay"),
            cache("public.ecr.aws", "ecr-public")
        ]
    );
    assert!(sources(&plain).contains(&"nvcr.io/nvidia/clara/parabricks:4.2.0-1".to_string()));

    // With credentials, those three registries are native: one registry mapping each, carrying
    // its secret, and no image mapping; gcr.io has no credential and stays copied.
    let creds = credentials();
    let mut args = vec!["map", "--format", "registry-map"];
    args.extend(creds.iter().map(String::as_str));
    let native = stdout_json(&offline(&args, home.path()));
    assert_model_accepts(&native);
    assert_eq!(
        upstreams(&native),
        vec![
            cache("quay.io", "quay"),
            cache("public.ecr.aws", "ecr-public"),
            ("nvcr.io".into(), "nvcr".into(), Some(arn("nvcr"))),
            (
                "us-central1-docker.pkg.dev".into(),
                "gar".into(),
                Some(arn("gar"))
            ),
            (
                "community.wave.seqera.io".into(),
                "community.wave.seqera.io".into(),
                Some(arn("wave"))
            ),
        ]
    );
    assert_eq!(
        sources(&native),
        vec![
            "ubuntu:22.04",
            "docker.io/library/ubuntu:22.04",
            "gcr.io/google-containers/busybox:1.27",
        ]
    );

    // --format json carries the same map; --strategy copy ignores the credentials; native
    // leaves the same mappings (the cache's are there either way).
    args[2] = "json";
    let json_map = stdout_json(&offline(&args, home.path()));
    assert_model_accepts(&json_map["containerRegistryMap"]);
    assert_eq!(json_map["containerRegistryMap"], native);
    let mut copy = args.clone();
    copy.extend(["--strategy", "copy"]);
    copy[2] = "registry-map";
    assert_eq!(stdout_json(&offline(&copy, home.path())), plain);
    let mut all_native = args.clone();
    all_native.extend(["--strategy", "native"]);
    all_native[2] = "registry-map";
    let all_native = stdout_json(&offline(&all_native, home.path()));
    assert_model_accepts(&all_native);
    assert_eq!(all_native, native);
}

#[test]
fn plan_shows_each_images_strategy() {
    let home = tempfile::tempdir().unwrap();
    let creds = credentials();
    let mut args = vec!["plan", "--format", "json"];
    args.extend(creds.iter().map(String::as_str));
    let plan = stdout_json(&offline(&args, home.path()));
    let strategies: Vec<&str> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        strategies,
        ["prime", "prime", "copy", "native", "native", "native", "copy"]
    );
    args[2] = "table";
    args.extend(["--strategy", "native"]);
    let table = offline(&args, home.path());
    let table_text = text(&table.stdout);
    assert!(table.status.success(), "{table_text}");
    assert!(table_text.contains("STRATEGY"), "{table_text}");
    let quay_line = table_text
        .lines()
        .find(|line| line.starts_with("quay.io/"))
        .unwrap();
    assert!(quay_line.contains(" native "), "{quay_line}");
    // Native was asked for: the images HealthOmics cannot fetch say why they are copied.
    assert!(
        table_text.contains("HealthOmics needs a credential to fetch from gcr.io"),
        "{table_text}"
    );
    assert!(
        table_text.contains("HealthOmics cannot fetch from docker.io itself"),
        "{table_text}"
    );
}

#[test]
fn a_bad_credential_is_unusable_input_naming_the_reason() {
    let home = tempfile::tempdir().unwrap();
    for (value, reason) in [
        (
            "nvcr.io=arn:aws:secretsmanager:us-east-1:1234:secret:x".to_string(),
            "12 digits",
        ),
        (format!("quay.io={}", arn("q")), "is not one"),
        ("nvcr.io".to_string(), "HOST=SECRET_ARN"),
    ] {
        let output = offline(
            &["map", "--format", "registry-map", "--credential", &value],
            home.path(),
        );
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{value}: {stderr}");
        assert!(stderr.contains("--credential"), "{value}: {stderr}");
        assert!(stderr.contains(reason), "{value}: {stderr}");
        assert!(output.stdout.is_empty(), "{value}");
    }
}

fn status_of<'a>(report: &'a Value, input: &str) -> &'a str {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|image| image["input"] == input)
        .unwrap_or_else(|| panic!("{input} not in {report}"))["status"]
        .as_str()
        .unwrap()
}

#[test]
fn pull_copies_nothing_for_native_images_and_maps_every_kind() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    let (Some(cache_upstream), Some(source)) = (Registry::try_start(), Registry::try_start())
    else {
        return;
    };
    let (cache, src) = (cache_upstream.host(), source.host());
    let ecr = EcrStandIn::builder().upstream(&cache, &cache).start();
    let home = tempfile::tempdir().unwrap();
    let namespaces = home.path().join("namespaces.json");
    let rules =
        json!({"rules": [{"hosts": [cache], "namespace": "lab", "method": "pull-through-cache"}]});
    std::fs::write(&namespaces, rules.to_string()).unwrap();
    let namespaces = namespaces.to_str().unwrap().to_string();
    let fixture = |seed| ImageFixture::single(&LayerSpec::distinct(seed, 2, 20_000), Format::Oci);
    fixture(1).push(&cache_upstream, "bio/primed:1");
    fixture(2).push(&cache_upstream, "bio/left:1");
    fixture(3).push(&source, "team/tool:1");

    let setup = crate::util::on_ecr(
        &["setup", "--namespaces", &namespaces],
        &moto,
        &ecr,
        home.path(),
    );
    assert!(setup.status.success(), "{}", text(&setup.stderr));

    // nvcr.io is out of reach here: a pull that tried to copy it would fail.
    let nvcr = "nvcr.io/nvidia/clara/parabricks:4.2.0-1";
    let (primed, copied) = (
        format!("{cache}/bio/primed:1"),
        format!("{src}/team/tool:1"),
    );
    let manifest = home.path().join("manifest.json");
    std::fs::write(
        &manifest,
        json!({"manifest": [&primed, &copied, nvcr]}).to_string(),
    )
    .unwrap();
    let map_file = home.path().join("map.json");
    let nvcr_credential = format!("nvcr.io={}", arn("nvcr"));
    let pull = |manifest: &Path, strategy: &str| {
        crate::util::on_ecr(
            &[
                "pull",
                manifest.to_str().unwrap(),
                "--namespaces",
                &namespaces,
                "--strategy",
                strategy,
                "--credential",
                &nvcr_credential,
                "--format",
                "json",
                "--output-map",
                map_file.to_str().unwrap(),
            ],
            &moto,
            &ecr,
            home.path(),
        )
    };
    let report = stdout_json(&pull(&manifest, "auto"));
    assert_eq!(status_of(&report, &primed), "SUCCEEDED");
    assert_eq!(status_of(&report, &copied), "SUCCEEDED");
    assert_eq!(status_of(&report, nvcr), "NATIVE");
    assert!(ecr.repository("nvcr/nvidia/clara/parabricks").is_none());
    assert!(ecr.repository("lab/bio/primed").is_some());
    let output_map: Value =
        serde_json::from_str(&std::fs::read_to_string(&map_file).unwrap()).unwrap();
    let map = &output_map["containerRegistryMap"];
    assert_model_accepts(map);
    assert_eq!(
        upstreams(map),
        vec![
            (cache.clone(), "lab".to_string(), None),
            ("nvcr.io".into(), "nvcr".into(), Some(arn("nvcr")))
        ]
    );
    assert_eq!(sources(map), vec![copied.clone()]);
    let mapped: Vec<&str> = output_map["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["input"].as_str().unwrap())
        .collect();
    assert_eq!(mapped, vec![primed.as_str(), copied.as_str(), nvcr]);

    // --strategy native: the cache is left to HealthOmics too, and nothing is primed.
    let left = format!("{cache}/bio/left:1");
    std::fs::write(&manifest, json!({"manifest": [&left, nvcr]}).to_string()).unwrap();
    let report = stdout_json(&pull(&manifest, "native"));
    assert_eq!(status_of(&report, &left), "NATIVE");
    assert!(ecr.repository("lab/bio/left").is_none());
    let output_map: Value =
        serde_json::from_str(&std::fs::read_to_string(&map_file).unwrap()).unwrap();
    assert_model_accepts(&output_map["containerRegistryMap"]);
    assert_eq!(
        upstreams(&output_map["containerRegistryMap"]),
        vec![
            (cache.clone(), "lab".to_string(), None),
            ("nvcr.io".into(), "nvcr".into(), Some(arn("nvcr")))
        ]
    );

    // map --from-region: the region's rule names the prefix of the cache mapping,
    // even where the namespace file calls that upstream otherwise.
    let renamed = home.path().join("renamed.json");
    let rules = json!({"rules": [{"hosts": [cache], "namespace": "elsewhere", "method": "pull-through-cache"}]});
    std::fs::write(&renamed, rules.to_string()).unwrap();
    let map_args = |online: bool| {
        let mut args = vec![
            "map",
            manifest.to_str().unwrap(),
            "--registry",
            ECR,
            "--namespaces",
            renamed.to_str().unwrap(),
            "--format",
            "registry-map",
        ];
        if online {
            args.push("--from-region");
        }
        crate::util::on_ecr(&args, &moto, &ecr, home.path())
    };
    let offline_map = stdout_json(&map_args(false));
    assert_model_accepts(&offline_map);
    assert_eq!(
        upstreams(&offline_map),
        vec![(cache.clone(), "elsewhere".to_string(), None)]
    );
    let online_map = stdout_json(&map_args(true));
    assert_model_accepts(&online_map);
    assert_eq!(
        upstreams(&online_map),
        vec![(cache, "lab".to_string(), None)]
    );
}

//! The ECR stand-in behaves as real ECR is documented to (the sources are cited in
//! `src/ecr/`), seen from plain HTTP and from skopeo.

use std::time::Duration;

use omx_testenv::{
    base64_encode, http_request, push_layout, EcrStandIn, Format, ImageFixture, LayerSpec,
    PushTarget, Registry, RepositoryOrigin,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn password(ecr: &EcrStandIn) -> String {
    let (status, answer) = ecr.call("GetAuthorizationToken", json!({}));
    assert_eq!(status, 200, "{answer}");
    let data = &answer["authorizationData"][0];
    let expires_at = data["expiresAt"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expires_at - now - 12.0 * 3600.0).abs() < 60.0,
        "claims 12 h"
    );
    let token = data["authorizationToken"].as_str().unwrap();
    let decoded = decode(token);
    decoded.strip_prefix("AWS:").unwrap().to_string()
}

fn decode(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

fn auth(password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("AWS:{password}").as_bytes())
    )
}

fn get(ecr: &EcrStandIn, password: &str, method: &str, path: &str) -> omx_testenv::HttpResponse {
    let authorization = auth(password);
    http_request(
        &ecr.host(),
        method,
        path,
        &[
            ("Authorization", &authorization),
            (
                "Accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json",
            ),
        ],
        &[],
    )
    .unwrap()
}

fn push(
    ecr: &EcrStandIn,
    password: &str,
    fixture: &ImageFixture,
    repo_and_tag: &str,
) -> Result<String, String> {
    let target = PushTarget {
        host: ecr.host(),
        credentials: Some(("AWS".to_string(), password.to_string())),
        cert_dir: None,
        tls_verify: false,
    };
    push_layout(fixture.layout_dir(), &target, repo_and_tag).map_err(|e| e.to_string())
}

fn image(seed: u64) -> ImageFixture {
    ImageFixture::single(&LayerSpec::distinct(seed, 2, 20_000), Format::Oci)
}

fn error_code(response: &omx_testenv::HttpResponse) -> String {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn basic_auth_with_its_own_tokens_and_403_once_they_expire() {
    let Some(ecr) = EcrStandIn::try_start() else {
        return;
    };
    let anonymous = http_request(&ecr.host(), "GET", "/v2/", &[], &[]).unwrap();
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    let password = password(&ecr);
    assert_eq!(get(&ecr, &password, "GET", "/v2/").status, 200);
    ecr.expire_tokens();
    let expired = get(&ecr, &password, "GET", "/v2/");
    assert_eq!(expired.status, 403);
    assert!(
        expired
            .text()
            .contains("Your authorization token has expired"),
        "{}",
        expired.text()
    );
    assert_eq!(get(&ecr, &self::password(&ecr), "GET", "/v2/").status, 200);
}

#[test]
fn pushes_need_a_repository_and_what_is_pushed_is_what_describe_images_reports() {
    let Some(ecr) = EcrStandIn::try_start() else {
        return;
    };
    let password = password(&ecr);
    let fixture = image(1);
    let refused = push(&ecr, &password, &fixture, "team/tool:1").unwrap_err();
    assert!(
        refused.contains("NAME_UNKNOWN") || refused.contains("does not exist"),
        "{refused}"
    );
    assert!(
        ecr.repository_names().is_empty(),
        "a refused push creates nothing"
    );

    let (status, created) = ecr.call("CreateRepository", json!({"repositoryName": "team/tool"}));
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["repository"]["repositoryUri"],
        format!("{}/team/tool", ecr.registry_host())
    );
    let digest = push(&ecr, &password, &fixture, "team/tool:1").unwrap();
    let (status, described) = ecr.call(
        "DescribeImages",
        json!({"repositoryName": "team/tool", "imageIds": [{"imageTag": "1"}]}),
    );
    assert_eq!(status, 200, "{described}");
    assert_eq!(described["imageDetails"][0]["imageDigest"], digest);
    let (status, missing) = ecr.call(
        "DescribeImages",
        json!({"repositoryName": "team/tool", "imageIds": [{"imageTag": "2"}]}),
    );
    assert_eq!(
        (status, missing["__type"].as_str()),
        (400, Some("ImageNotFoundException"))
    );
    let (_, batch) = ecr.call(
        "BatchGetImage",
        json!({"repositoryName": "team/tool", "imageIds": [{"imageTag": "1"}]}),
    );
    let manifest = batch["images"][0]["imageManifest"].as_str().unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(manifest.as_bytes()))
        ),
        digest
    );
    let (status, bad) = ecr.call("CreateRepository", json!({"repositoryName": "Team/Tool"}));
    assert_eq!(
        (status, bad["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
}

#[test]
fn create_on_push_templates_and_immutable_tags() {
    let Some(ecr) = EcrStandIn::try_start() else {
        return;
    };
    let password = password(&ecr);
    let policy = json!({"Version": "2012-10-17", "Statement": []}).to_string();
    let (status, answer) = ecr.call(
        "CreateRepositoryCreationTemplate",
        json!({"prefix": "pushed", "appliedFor": ["CREATE_ON_PUSH"], "repositoryPolicy": policy,
               "imageTagMutability": "IMMUTABLE",
               "resourceTags": [{"Key": "createdBy", "Value": "test"}]}),
    );
    assert_eq!(status, 200, "{answer}");
    push(&ecr, &password, &image(2), "pushed/tool:1").unwrap();
    let repository = ecr.repository("pushed/tool").unwrap();
    assert_eq!(repository.origin, RepositoryOrigin::CreateOnPush);
    assert_eq!(repository.policy.as_deref(), Some(policy.as_str()));
    assert_eq!(
        repository.resource_tags,
        vec![("createdBy".into(), "test".into())]
    );
    // Any push to an existing immutable tag is refused, even of the same image.
    let refused = push(&ecr, &password, &image(2), "pushed/tool:1").unwrap_err();
    assert!(refused.contains("immutable"), "{refused}");
    assert_eq!(ecr.counters().immutable_refusals, 1);
}

#[test]
fn pull_through_cache_imports_on_a_pull_by_tag_never_by_digest() {
    let Some(upstream) = Registry::try_start() else {
        return;
    };
    let index = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64")],
        &LayerSpec::distinct(3, 1, 10_000),
        Format::Oci,
    );
    let digest = index.push(&upstream, "biocontainers/tool:1");
    let ecr = EcrStandIn::builder()
        .upstream("quay.io", &upstream.host())
        .index_children_delay(Duration::from_secs(4))
        .start();
    let password = password(&ecr);
    ecr.call(
        "CreatePullThroughCacheRule",
        json!({"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}),
    );
    ecr.call(
        "CreateRepositoryCreationTemplate",
        json!({"prefix": "quay", "appliedFor": ["PULL_THROUGH_CACHE"],
               "resourceTags": [{"Key": "createdBy", "Value": "omx-ecr-helper"}]}),
    );
    let by_digest = get(
        &ecr,
        &password,
        "GET",
        &format!("/v2/quay/biocontainers/tool/manifests/{digest}"),
    );
    assert_eq!(by_digest.status, 404, "an uncached digest is not imported");
    assert!(ecr.repository_names().is_empty());

    let by_tag = get(
        &ecr,
        &password,
        "GET",
        "/v2/quay/biocontainers/tool/manifests/1",
    );
    assert_eq!(by_tag.status, 200, "{}", by_tag.text());
    let repository = ecr.repository("quay/biocontainers/tool").unwrap();
    assert_eq!(repository.origin, RepositoryOrigin::PullThroughCache);
    assert_eq!(
        repository.resource_tags,
        vec![("createdBy".into(), "omx-ecr-helper".into())]
    );
    assert_eq!(repository.digests.len(), 3, "the index and both children");
    let child = index.images()[0].manifest.digest.clone();
    let child_path = format!("/v2/quay/biocontainers/tool/manifests/{child}");
    assert_eq!(
        get(&ecr, &password, "GET", &child_path).status,
        404,
        "children readable a little later"
    );
    // Readable once the delay has passed (polled: a loaded machine may be slow to get here).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get(&ecr, &password, "GET", &child_path).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never became readable"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        get(
            &ecr,
            &password,
            "GET",
            &format!("/v2/quay/biocontainers/tool/manifests/{digest}")
        )
        .status,
        200,
        "a cached digest is served"
    );
    // Upstream moves: within the re-check interval the cache keeps the old image.
    let moved = ImageFixture::single(&LayerSpec::distinct(9, 1, 5_000), Format::Oci);
    moved.push(&upstream, "biocontainers/tool:1");
    let again = get(
        &ecr,
        &password,
        "HEAD",
        "/v2/quay/biocontainers/tool/manifests/1",
    );
    assert_eq!(again.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(ecr.counters().imports, 1);
}

#[test]
fn put_image_is_rate_limited_with_429_and_no_retry_after() {
    let Some(ecr) = EcrStandIn::try_start() else {
        return;
    };
    let password = password(&ecr);
    ecr.call("CreateRepository", json!({"repositoryName": "team/tool"}));
    push(&ecr, &password, &image(4), "team/tool:base").unwrap();
    let manifest = get(&ecr, &password, "GET", "/v2/team/tool/manifests/base");
    ecr.set_put_image_rate(Some(2.0));
    let authorization = auth(&password);
    let media_type = manifest.header("content-type").unwrap().to_string();
    let statuses: Vec<(u16, Option<String>, String)> = (0..6)
        .map(|n| {
            let response = http_request(
                &ecr.host(),
                "PUT",
                &format!("/v2/team/tool/manifests/t{n}"),
                &[
                    ("Authorization", &authorization),
                    ("Content-Type", &media_type),
                ],
                &manifest.body,
            )
            .unwrap();
            let code = error_code(&response);
            (
                response.status,
                response.header("retry-after").map(str::to_string),
                code,
            )
        })
        .collect();
    let throttled: Vec<_> = statuses
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    assert!(!throttled.is_empty(), "{statuses:?}");
    assert!(throttled
        .iter()
        .all(|(_, retry_after, code)| retry_after.is_none() && code == "TOOMANYREQUESTS"));
    assert_eq!(ecr.counters().puts_throttled as usize, throttled.len());
}

#[test]
fn chunked_uploads_answer_201_with_a_stale_range_and_refuse_small_parts() {
    let Some(ecr) = EcrStandIn::try_start() else {
        return;
    };
    let password = password(&ecr);
    ecr.call("CreateRepository", json!({"repositoryName": "team/tool"}));
    let authorization = auth(&password);
    let part = 5 * 1024 * 1024;
    let blob: Vec<u8> = (0..part * 2 + 1000).map(|i| (i % 251) as u8).collect();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let start = |ecr: &EcrStandIn| {
        let started = http_request(
            &ecr.host(),
            "POST",
            "/v2/team/tool/blobs/uploads/",
            &[("Authorization", &authorization)],
            &[],
        )
        .unwrap();
        assert_eq!(started.status, 202);
        started
            .header("location")
            .unwrap()
            .replacen(&format!("http://{}", ecr.host()), "", 1)
    };
    let patch = |location: &str, body: &[u8]| {
        http_request(
            &ecr.host(),
            "PATCH",
            location,
            &[
                ("Authorization", &authorization),
                ("Content-Type", "application/octet-stream"),
            ],
            body,
        )
        .unwrap()
    };
    let mut location = start(&ecr);
    let first = patch(&location, &blob[..part]);
    assert_eq!(first.status, 201, "ECR answers a part with 201");
    assert_eq!(
        first.header("range"),
        Some(format!("0-{}", part - 1).as_str())
    );
    location = first
        .header("location")
        .unwrap()
        .replacen(&format!("http://{}", ecr.host()), "", 1);
    let second = patch(&location, &blob[part..part * 2]);
    assert_eq!(second.status, 201);
    assert_eq!(
        second.header("range"),
        Some(format!("0-{}", part - 1).as_str()),
        "Range stops advancing"
    );
    location =
        second
            .header("location")
            .unwrap()
            .replacen(&format!("http://{}", ecr.host()), "", 1);
    let separator = if location.contains('?') { '&' } else { '?' };
    let done = http_request(
        &ecr.host(),
        "PUT",
        &format!("{location}{separator}digest={digest}"),
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/octet-stream"),
        ],
        &blob[part * 2..],
    )
    .unwrap();
    assert_eq!(done.status, 201, "{}", done.text());
    let stored = get(
        &ecr,
        &password,
        "GET",
        &format!("/v2/team/tool/blobs/{digest}"),
    );
    assert_eq!(stored.body, blob, "every part was stored");

    let small = start(&ecr);
    let first = patch(&small, &blob[..1000]);
    assert_eq!(first.status, 201);
    let next = first
        .header("location")
        .unwrap()
        .replacen(&format!("http://{}", ecr.host()), "", 1);
    let refused = patch(&next, &blob[1000..2000]);
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains("LayerPartTooSmallException"),
        "{}",
        refused.text()
    );
}

#[test]
fn blob_mounts_only_when_enabled_and_a_manifest_of_from_references_the_blob() {
    let Some(ecr) = EcrStandIn::try_start() else {
        return;
    };
    let password = password(&ecr);
    for name in ["team/a", "team/b"] {
        ecr.call("CreateRepository", json!({"repositoryName": name}));
    }
    let fixture = image(5);
    push(&ecr, &password, &fixture, "team/a:1").unwrap();
    let layer = fixture.images()[0].layers[0].digest.clone();
    let authorization = auth(&password);
    let mount = |ecr: &EcrStandIn| {
        http_request(
            &ecr.host(),
            "POST",
            &format!("/v2/team/b/blobs/uploads/?mount={layer}&from=team/a"),
            &[("Authorization", &authorization)],
            &[],
        )
        .unwrap()
        .status
    };
    assert_eq!(mount(&ecr), 202, "blob mounting is off by default");
    ecr.call(
        "PutAccountSetting",
        json!({"name": "BLOB_MOUNTING", "value": "ENABLED"}),
    );
    assert_eq!(mount(&ecr), 201);
    let counters = ecr.counters();
    assert_eq!((counters.mounts_refused, counters.mounts_granted), (1, 1));
}

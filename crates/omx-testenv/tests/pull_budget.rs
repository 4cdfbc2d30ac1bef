//! The pull-budget stand-in behaves as Docker Hub's pull limits are documented (docker/docs,
//! `content/manuals/docker-hub/usage/pulls.md`): manifest GETs spend a per-identity budget,
//! HEADs and blobs do not, both carry the `ratelimit-*` headers, and a spent budget answers 429
//! `TOOMANYREQUESTS` with Docker Hub's message and no `Retry-After`.

use std::time::Duration;

use omx_testenv::{
    basic_auth_header, http_request, Format, HttpResponse, Identity, ImageFixture, LayerSpec,
    PullBudgetRegistry, Registry,
};
use serde_json::Value;

fn token(host: &str, credentials: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = credentials
        .map(|value| vec![("Authorization", value)])
        .unwrap_or_default();
    http_request(
        host,
        "GET",
        "/token?service=registry.docker.io&scope=repository:lib/tool:pull",
        &headers,
        &[],
    )
    .unwrap()
}

fn bearer(host: &str, credentials: Option<&str>) -> String {
    let answer = token(host, credentials);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    format!("Bearer {}", body["token"].as_str().unwrap())
}

fn manifest(host: &str, method: &str, authorization: &str) -> HttpResponse {
    http_request(
        host,
        method,
        "/v2/lib/tool/manifests/1",
        &[
            ("Authorization", authorization),
            (
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            ),
        ],
        &[],
    )
    .unwrap()
}

fn remaining(response: &HttpResponse) -> &str {
    response.header("ratelimit-remaining").unwrap_or("(none)")
}

#[test]
fn manifest_gets_spend_a_per_identity_budget_heads_and_blobs_do_not() {
    let Some(backing) = Registry::try_start() else {
        return;
    };
    ImageFixture::single(&LayerSpec::distinct(1, 1, 2_000), Format::Oci)
        .push(&backing, "lib/tool:1");
    let hub = PullBudgetRegistry::builder()
        .anonymous_limit(2)
        .authenticated_limit(3)
        .window(Duration::from_secs(3600))
        .user("alice", "s3cret")
        .start(&backing);
    let host = hub.host();

    // No token: Docker Hub's Bearer challenge, pointing at its token realm.
    let challenged = http_request(&host, "GET", "/v2/lib/tool/manifests/1", &[], &[]).unwrap();
    assert_eq!(challenged.status, 401);
    let challenge = challenged.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"http://{host}/token\""))
            && challenge.contains("scope=\"repository:lib/tool:pull\""),
        "{challenge}"
    );

    let anonymous = bearer(&host, None);
    let head = manifest(&host, "HEAD", &anonymous);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("ratelimit-limit"), Some("2;w=3600"));
    assert_eq!(remaining(&head), "2;w=3600");
    assert_eq!(head.header("docker-ratelimit-source"), Some("127.0.0.1"));
    assert_eq!(hub.pulls(&Identity::Anonymous), 0, "a HEAD is not a pull");

    let first = manifest(&host, "GET", &anonymous);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(remaining(&first), "1;w=3600");
    // The layer blob the manifest names: a blob download is not a pull.
    let layer = serde_json::from_slice::<Value>(&first.body).unwrap()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = http_request(
        &host,
        "GET",
        &format!("/v2/lib/tool/blobs/{layer}"),
        &[("Authorization", &anonymous)],
        &[],
    )
    .unwrap();
    assert_eq!(blob.status, 200);
    assert_eq!(manifest(&host, "GET", &anonymous).status, 200);
    assert_eq!(hub.pulls(&Identity::Anonymous), 2);

    // Spent: 429 with Docker Hub's code, message and headers, no Retry-After.
    let refused = manifest(&host, "GET", &anonymous);
    assert_eq!(refused.status, 429);
    assert_eq!(remaining(&refused), "0;w=3600");
    assert_eq!(refused.header("retry-after"), None);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert_eq!(
        body["errors"][0]["message"],
        "You have reached your unauthenticated pull rate limit. \
         https://www.docker.com/increase-rate-limit"
    );
    assert_eq!(
        hub.pulls(&Identity::Anonymous),
        2,
        "a refusal is not a pull"
    );
    // A HEAD still answers, with the spent budget.
    let head = manifest(&host, "HEAD", &anonymous);
    assert_eq!((head.status, remaining(&head)), (200, "0;w=3600"));

    // An account has its own, larger budget; wrong credentials get no token.
    assert_eq!(
        token(&host, Some(&basic_auth_header("alice", "wrong"))).status,
        401
    );
    let alice = bearer(&host, Some(&basic_auth_header("alice", "s3cret")));
    let pulled = manifest(&host, "GET", &alice);
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.header("ratelimit-limit"), Some("3;w=3600"));
    assert_eq!(remaining(&pulled), "2;w=3600");
    assert_eq!(pulled.header("docker-ratelimit-source"), Some("alice"));
    for _ in 0..2 {
        assert_eq!(manifest(&host, "GET", &alice).status, 200);
    }
    let refused = manifest(&host, "GET", &alice);
    assert_eq!(refused.status, 429);
    assert!(
        refused.text().contains("pull rate limit as 'alice'"),
        "{}",
        refused.text()
    );
    assert_eq!(hub.pulls(&Identity::User("alice".to_string())), 3);
    assert_eq!(hub.pulls(&Identity::Anonymous), 2);

    // Every manifest GET was recorded with whom it was counted against.
    assert_eq!(hub.manifest_gets(), 8);
    let refusals = hub
        .requests()
        .iter()
        .filter(|request| request.is_manifest_get() && request.status == 429)
        .count();
    assert_eq!(refusals, 2);
}

#[test]
fn a_spent_budget_is_whole_again_after_its_window() {
    let Some(backing) = Registry::try_start() else {
        return;
    };
    ImageFixture::single(&LayerSpec::distinct(2, 1, 1_000), Format::Oci)
        .push(&backing, "lib/tool:1");
    let hub = PullBudgetRegistry::builder()
        .anonymous_limit(1)
        .window(Duration::from_secs(1))
        .start(&backing);
    let host = hub.host();
    let anonymous = bearer(&host, None);
    assert_eq!(manifest(&host, "GET", &anonymous).status, 200);
    let refused = manifest(&host, "GET", &anonymous);
    assert_eq!((refused.status, remaining(&refused)), (429, "0;w=1"));
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(manifest(&host, "GET", &anonymous).status, 200);
}

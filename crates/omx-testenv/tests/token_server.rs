//! A token-auth registry and its token server enforce the Docker token flow end to end: the
//! registry itself verifies every token (signature, issuer, audience, lifetime, access).

use std::thread;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use omx_testenv::{
    basic_auth_header, http_request, HttpResponse, Registry, TokenRequest, TOKEN_ISSUER,
    TOKEN_SERVICE,
};
use serde_json::Value;

const USER: &str = "tokenuser";
const PASSWORD: &str = "t0ken-s3cret";

/// `GET /token` from the registry's token server, with optional Basic credentials.
fn fetch_token(
    registry: &Registry,
    query: &str,
    credentials: Option<(&str, &str)>,
) -> HttpResponse {
    let server = registry.token_server().expect("a token-auth registry");
    let header = credentials.map(|(user, password)| basic_auth_header(user, password));
    let headers: Vec<(&str, &str)> = header
        .iter()
        .map(|value| ("Authorization", value.as_str()))
        .collect();
    http_request(
        &server.host(),
        "GET",
        &format!("/token?{query}"),
        &headers,
        &[],
    )
    .expect("the token server answers")
}

fn token_of(response: &HttpResponse) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    let token = body["token"].as_str().expect("a token").to_string();
    assert_eq!(body["access_token"].as_str(), Some(token.as_str()));
    token
}

fn claims_of(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS: {token}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64, "r||s");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

fn registry_get(registry: &Registry, method: &str, path: &str, token: &str) -> HttpResponse {
    let bearer = format!("Bearer {token}");
    http_request(
        &registry.host(),
        method,
        path,
        &[("Authorization", &bearer)],
        &[],
    )
    .unwrap()
}

const PULL_PUSH_QUERY: &str = "service=omx-testenv&scope=repository%3Ans%2Fapp%3Apull%2Cpush";

#[test]
fn the_registry_challenges_for_tokens_that_grant_what_the_caller_may_do() {
    let Some(registry) = Registry::builder().token_auth(USER, PASSWORD).try_start() else {
        return;
    };
    let server = registry
        .token_server()
        .expect("token auth has a token server");
    assert_eq!(
        registry.credentials(),
        Some((USER.to_string(), PASSWORD.to_string()))
    );

    let anonymous =
        http_request(&registry.host(), "GET", "/v2/ns/app/tags/list", &[], &[]).unwrap();
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!(
            "Bearer realm=\"{}\",service=\"{TOKEN_SERVICE}\"",
            server.realm()
        )),
        "challenge {challenge:?}"
    );

    // Anonymous callers get pull only: reads pass the registry's check, an upload does not.
    let pull_only = token_of(&fetch_token(&registry, PULL_PUSH_QUERY, None));
    let claims = claims_of(&pull_only);
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "ns/app", "actions": ["pull"]}])
    );
    assert_eq!(
        registry_get(&registry, "GET", "/v2/ns/app/tags/list", &pull_only).status,
        404,
        "a pull token reads (the repository does not exist yet)"
    );
    let refused = registry_get(&registry, "POST", "/v2/ns/app/blobs/uploads/", &pull_only);
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.contains("insufficient_scope")),
        "{:?}",
        refused.headers
    );

    let full = token_of(&fetch_token(
        &registry,
        PULL_PUSH_QUERY,
        Some((USER, PASSWORD)),
    ));
    assert_eq!(claims_of(&full)["sub"], USER);
    let upload = registry_get(&registry, "POST", "/v2/ns/app/blobs/uploads/", &full);
    assert_eq!(upload.status, 202, "{}", upload.text());

    let wrong = fetch_token(&registry, PULL_PUSH_QUERY, Some((USER, "wrong")));
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("UNAUTHORIZED"), "{}", wrong.text());
    let other_service = fetch_token(
        &registry,
        "service=elsewhere&scope=repository%3Ax%3Apull",
        None,
    );
    assert_eq!(other_service.status, 400, "{}", other_service.text());

    let pull_push = "repository:ns/app:pull,push";
    assert_eq!(
        server.requests(),
        vec![
            TokenRequest {
                user: None,
                scopes: vec![pull_push.to_string()],
                status: 200
            },
            TokenRequest {
                user: Some(USER.to_string()),
                scopes: vec![pull_push.to_string()],
                status: 200
            },
            TokenRequest {
                user: Some(USER.to_string()),
                scopes: vec![pull_push.to_string()],
                status: 401
            },
            TokenRequest {
                user: None,
                scopes: vec!["repository:x:pull".to_string()],
                status: 400
            },
        ]
    );
    assert_eq!(server.requests_for(pull_push), 3);
    assert_eq!(server.request_count(), 4);
    server.clear_requests();
    assert_eq!(server.request_count(), 0);

    for debug in [format!("{registry:?}"), format!("{server:?}")] {
        assert!(
            !debug.contains(PASSWORD),
            "Debug leaks the password: {debug}"
        );
    }
}

#[test]
fn a_token_stops_working_when_its_lifetime_is_over_whatever_expires_in_claims() {
    let lifetime = Duration::from_secs(2);
    let Some(registry) = Registry::builder()
        .token_auth(USER, PASSWORD)
        .token_lifetime(lifetime)
        .token_claimed_lifetime(Duration::from_secs(600))
        .try_start()
    else {
        return;
    };
    let response = fetch_token(&registry, PULL_PUSH_QUERY, Some((USER, PASSWORD)));
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["expires_in"], 600);
    let token = token_of(&response);
    let claims = claims_of(&token);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );

    assert_eq!(
        registry_get(&registry, "GET", "/v2/ns/app/tags/list", &token).status,
        404,
        "a fresh token is accepted"
    );
    thread::sleep(lifetime + Duration::from_millis(1100));
    let expired = registry_get(&registry, "GET", "/v2/ns/app/tags/list", &token);
    assert_eq!(
        expired.status,
        401,
        "an expired token is refused: {}",
        expired.text()
    );
}

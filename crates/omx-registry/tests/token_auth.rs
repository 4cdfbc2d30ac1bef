//! The bearer-token flow against real `docker-registry` servers configured for Docker token
//! auth: the registry verifies every token its token server signs, so a copy succeeds only when
//! the client fetched, cached, scoped and renewed its tokens correctly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use omx_registry::{CopyOptions, Credential, NoProgress, StaticCredentials};
use omx_testenv::{FaultProxy, Format, ImageFixture, LayerSpec, Registry, TokenServer};

const USER: &str = "omx-pusher";
const PASSWORD: &str = "correct-horse-battery";

fn token_registry() -> Registry {
    Registry::builder().token_auth(USER, PASSWORD).start()
}

fn token_server(registry: &Registry) -> &TokenServer {
    registry.token_server().expect("a token-auth registry")
}

/// Credentials for each `(host, registry)`: the user and password that registry accepts.
fn credentials_for(registries: &[(&str, &Registry)]) -> Arc<StaticCredentials> {
    let mut credentials = StaticCredentials::new();
    for (host, registry) in registries {
        let (user, password) = registry.credentials().expect("an auth registry");
        credentials.insert(host, Credential::new(user, password));
    }
    Arc::new(credentials)
}

fn blob_count(fixture: &ImageFixture) -> usize {
    fixture.images().iter().map(|i| i.layers.len() + 1).sum()
}

#[tokio::test]
async fn anonymous_pull_from_a_token_auth_registry_uses_pull_tokens() {
    let source = token_registry();
    let target = Registry::start();
    let fixture = ImageFixture::single(&LayerSpec::distinct(1, 3, 100_000), Format::Oci);
    let pushed = digest(&fixture.push(&source, "public/app:1"));
    token_server(&source).clear_requests();

    let report = default_engine()
        .copy(
            &reference(&format!("{}/public/app:1", source.host())),
            &reference(&format!("{}/mirror/app:1", target.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));

    assert_eq!(report.digest, pushed);
    assert_eq!(report.blobs_copied, blob_count(&fixture));
    assert_eq!(
        skopeo_raw_digest(&target, &target.host(), "mirror/app:1"),
        pushed
    );
    let requests = token_server(&source).requests();
    assert!(
        requests.iter().all(|request| request.user.is_none()
            && request.status == 200
            && request.scopes == ["repository:public/app:pull"]),
        "an anonymous pull asks for pull tokens only: {requests:?}"
    );
    assert_eq!(
        requests.len(),
        1,
        "one pull token serves the manifest and every blob: {requests:?}"
    );
}

#[tokio::test]
async fn credentialed_copies_into_and_between_token_auth_registries_keep_digests() {
    let plain = Registry::start();
    let first = token_registry();
    let second = Registry::builder()
        .token_auth("second-user", "second-password")
        .start();
    let fixture = ImageFixture::index(
        &[("linux", "amd64"), ("linux", "arm64/v8")],
        &LayerSpec::distinct(2, 2, 120_000),
        Format::Oci,
    );
    let pushed = digest(&fixture.push(&plain, "src/multi:1"));
    let credentials = credentials_for(&[(&first.host(), &first), (&second.host(), &second)]);
    let engine = engine(config_with(credentials), CopyOptions::default());

    let into_first = engine
        .copy(
            &reference(&format!("{}/src/multi:1", plain.host())),
            &reference(&format!("{}/team/multi:1", first.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("plain -> token: {}", chain(&e)));
    assert_eq!(into_first.digest, pushed);
    assert_eq!(into_first.blobs_copied, blob_count(&fixture));
    assert_eq!(into_first.manifests_pushed, 3);
    assert_eq!(
        skopeo_raw_digest(&first, &first.host(), "team/multi:1"),
        pushed
    );

    let between = engine
        .copy(
            &reference(&format!("{}/team/multi:1", first.host())),
            &reference(&format!("{}/copy/multi:1", second.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("token -> token: {}", chain(&e)));
    assert_eq!(between.digest, pushed);
    assert_eq!(between.blobs_copied, blob_count(&fixture));
    assert_eq!(
        skopeo_raw_digest(&second, &second.host(), "copy/multi:1"),
        pushed
    );

    // Within one registry the blobs are mounted, which needs push on the target repository
    // and pull on the source repository in one token.
    let mounted = engine
        .copy(
            &reference(&format!("{}/copy/multi:1", second.host())),
            &reference(&format!("{}/other/multi:1", second.host())),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("mount within a token registry: {}", chain(&e)));
    assert_eq!(mounted.digest, pushed);
    assert_eq!(mounted.blobs_mounted, blob_count(&fixture));
    assert_eq!(
        skopeo_raw_digest(&second, &second.host(), "other/multi:1"),
        pushed
    );

    for (registry, user) in [(&first, USER), (&second, "second-user")] {
        let requests = token_server(registry).requests();
        assert!(
            requests
                .iter()
                .all(|r| r.user.as_deref() == Some(user) && r.status == 200),
            "every token request carried the registry's own credentials: {requests:?}"
        );
    }
    let mount_requests = token_server(&second)
        .requests()
        .into_iter()
        .filter(|r| r.scopes.len() == 2)
        .collect::<Vec<_>>();
    assert!(
        mount_requests.iter().any(|r| r.scopes
            == [
                "repository:copy/multi:pull",
                "repository:other/multi:pull,push"
            ]),
        "a mount asks for both repositories in one token: {mount_requests:?}"
    );
}

#[tokio::test]
async fn tokens_are_fetched_once_per_scope_however_many_blobs_move() {
    let source = token_registry();
    let target = token_registry();
    let first = ImageFixture::single(&LayerSpec::distinct(3, 16, 20_000), Format::DockerV2);
    let second = ImageFixture::single(&LayerSpec::distinct(4, 16, 20_000), Format::DockerV2);
    first.push(&source, "many/layers:1");
    second.push(&source, "many/layers:2");
    token_server(&source).clear_requests();
    let credentials = credentials_for(&[(&source.host(), &source), (&target.host(), &target)]);
    // More transfers at once than the default, so many requests miss the token cache together.
    let options = CopyOptions {
        jobs: 8,
        ..CopyOptions::default()
    };
    let engine = engine(config_with(credentials), options);

    let mut copied = Vec::new();
    for (fixture, tag) in [(&first, "1"), (&second, "2")] {
        let report = engine
            .copy(
                &reference(&format!("{}/many/layers:{tag}", source.host())),
                &reference(&format!("{}/many/layers:{tag}", target.host())),
                &NoProgress,
            )
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert_eq!(report.blobs_copied, blob_count(fixture));
        copied.push((tag, report.digest));
    }

    // 2 images of 17 blobs, 8 transfers at a time: one token per (registry, scope) in all.
    let source_tokens = token_server(&source);
    let target_tokens = token_server(&target);
    assert_eq!(
        (
            source_tokens.request_count(),
            source_tokens.requests_for("repository:many/layers:pull")
        ),
        (1, 1),
        "{:?}",
        source_tokens.requests()
    );
    assert_eq!(
        (
            target_tokens.request_count(),
            target_tokens.requests_for("repository:many/layers:pull"),
            target_tokens.requests_for("repository:many/layers:pull,push")
        ),
        (2, 1, 1),
        "{:?}",
        target_tokens.requests()
    );
    for (tag, digest) in copied {
        assert_eq!(
            skopeo_raw_digest(&target, &target.host(), &format!("many/layers:{tag}")),
            digest
        );
    }
}

#[tokio::test]
async fn a_token_refused_as_expired_is_fetched_anew_and_the_copy_goes_on() {
    let source = Registry::start();
    // The registry accepts each token for 6 s but the answer claims 10 minutes, so the client
    // keeps using cached tokens past their end: only the registry's 401 can tell it. (`exp` is
    // in whole seconds, and each copy must finish within one token's life for the counts below
    // to be exact, on a loaded 2-core CI machine too.)
    let lifetime = Duration::from_secs(6);
    let target = Registry::builder()
        .token_auth(USER, PASSWORD)
        .token_lifetime(lifetime)
        .token_claimed_lifetime(Duration::from_secs(600))
        .start();
    let proxy = FaultProxy::start(&target);
    let first = ImageFixture::single(&LayerSpec::distinct(5, 4, 50_000), Format::Oci);
    let second = ImageFixture::single(&LayerSpec::distinct(6, 4, 50_000), Format::Oci);
    let first_digest = digest(&first.push(&source, "app/refresh:1"));
    let second_digest = digest(&second.push(&source, "app/refresh:2"));
    let engine = engine(
        config_with(credentials_for(&[(&proxy.host(), &target)])),
        CopyOptions::default(),
    );
    let copy = |tag: &'static str| {
        let engine = &engine;
        let source = reference(&format!("{}/app/refresh:{tag}", source.host()));
        let target = reference(&format!("{}/app/refresh:{tag}", proxy.host()));
        async move { engine.copy(&source, &target, &NoProgress).await }
    };

    let report = copy("1").await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, first_digest);
    let tokens = token_server(&target);
    let push_scope = "repository:app/refresh:pull,push";
    let (pull_fetches, push_fetches) = (
        tokens.requests_for("repository:app/refresh:pull"),
        tokens.requests_for(push_scope),
    );
    assert_eq!(
        (pull_fetches, push_fetches),
        (1, 1),
        "{:?}",
        tokens.requests()
    );

    tokio::time::sleep(lifetime + Duration::from_millis(1100)).await;
    proxy.clear_requests();
    let report = copy("2").await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(report.digest, second_digest);
    assert_eq!(report.blobs_copied, blob_count(&second));

    let refused: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(_, _, status)| *status == 401)
        .collect();
    assert!(
        !refused.is_empty(),
        "the registry refused the expired tokens: {:?}",
        proxy.requests()
    );
    // The manifest HEAD and the 4 blob HEADs (side by side) were refused; each scope's token
    // is fetched anew once, not once per refused request.
    assert!(refused.len() >= 2, "{refused:?}");
    assert_eq!(
        (
            tokens.requests_for("repository:app/refresh:pull"),
            tokens.requests_for(push_scope)
        ),
        (pull_fetches + 1, push_fetches + 1),
        "{:?}",
        tokens.requests()
    );
    for (tag, digest) in [("1", first_digest), ("2", second_digest)] {
        assert_eq!(
            skopeo_raw_digest(&target, &target.host(), &format!("app/refresh:{tag}")),
            digest
        );
    }
}

#[tokio::test]
async fn wrong_credentials_name_the_registry_and_never_show_the_password() {
    let plain = Registry::start();
    let token = token_registry();
    let fixture = ImageFixture::single(&LayerSpec::distinct(7, 2, 10_000), Format::Oci);
    fixture.push(&plain, "app/creds:1");
    fixture.push(&token, "app/creds:1");
    token_server(&token).clear_requests();
    let wrong_password = "wrong-staple-guess";
    let wrong = Arc::new(
        StaticCredentials::new().with(&token.host(), Credential::new(USER, wrong_password)),
    );
    let engine = engine(config_with(wrong), CopyOptions::default());

    let into = engine
        .copy(
            &reference(&format!("{}/app/creds:1", plain.host())),
            &reference(&format!("{}/app/creds:1", token.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let out_of = engine
        .copy(
            &reference(&format!("{}/app/creds:1", token.host())),
            &reference(&format!("{}/app/creds:1", plain.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    for error in [&into, &out_of] {
        let message = chain(error);
        assert!(
            message.contains(&token.host())
                && message.contains(&format!("{USER:?}"))
                && message.contains("rejected"),
            "{message}"
        );
        assert!(!message.contains(wrong_password), "{message}");
        assert!(!format!("{error:?}").contains(wrong_password), "{error:?}");
    }
    let requests = token_server(&token).requests();
    assert!(
        !requests.is_empty()
            && requests
                .iter()
                .all(|r| r.user.as_deref() == Some(USER) && r.status == 401),
        "{requests:?}"
    );

    // No credentials at all: anonymous pull works, a push says what is missing.
    let anonymous = default_engine()
        .copy(
            &reference(&format!("{}/app/creds:1", plain.host())),
            &reference(&format!("{}/app/anonymous:1", token.host())),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let message = chain(&anonymous);
    assert!(
        message.contains(&format!(
            "no credentials are configured for {}",
            token.host()
        )),
        "{message}"
    );
}

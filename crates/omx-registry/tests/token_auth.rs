//! The bearer-token flow against real `docker-registry` servers configured for Docker token
//! auth: the registry verifies every token its token server signs, so a copy succeeds only when
//! the client fetched, cached, scoped and renewed its tokens correctly.

mod common;

use std::sync::Arc;

use common::*;
use omx_registry::{CopyOptions, Credential, NoProgress, StaticCredentials};
use omx_testenv::{Format, ImageFixture, LayerSpec, Registry, TokenServer};

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

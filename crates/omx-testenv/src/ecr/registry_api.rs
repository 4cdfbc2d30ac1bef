//! The registry API (`/v2`) as ECR serves it, in front of the docker-registry that stores the
//! bytes. Each rule below is where ECR differs from CNCF distribution, with its public source;
//! everything else is distribution's own answer, forwarded.

use std::io;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::import::{import, ImportError};
use super::state::{manifest_references, RepositoryOrigin, StoredImage, INDEX_MEDIA_TYPES};
use super::wire::{forward, Backing, BackingResponse, Connection, Request};
use super::{uploads, Shared};
use crate::http::http_request;

/// The largest manifest ECR takes: 4 MiB (ECR API Reference, PutImage `imageManifest`; ECR
/// service quotas).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

enum Route<'a> {
    Ping,
    Manifest(&'a str, &'a str),
    Blob(&'a str),
    UploadStart(&'a str),
    Upload(&'a str),
    /// Tags list, referrers: reads of an existing repository, forwarded.
    RepositoryRead(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Ping);
    }
    let rest = rest.strip_prefix('/')?;
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Some(Route::Manifest(name, reference));
    }
    if let Some((name, upload)) = rest.rsplit_once("/blobs/uploads") {
        return Some(if upload.trim_matches('/').is_empty() {
            Route::UploadStart(name)
        } else {
            Route::Upload(name)
        });
    }
    if let Some((name, _)) = rest.rsplit_once("/blobs/") {
        return Some(Route::Blob(name));
    }
    if let Some((name, _)) = rest.rsplit_once("/tags/list") {
        return Some(Route::RepositoryRead(name));
    }
    if let Some((name, _)) = rest.rsplit_once("/referrers/") {
        return Some(Route::RepositoryRead(name));
    }
    None
}

/// What a request's `Authorization` carries.
enum Caller {
    Authorized,
    Anonymous,
    Expired,
}

fn caller(shared: &Shared, request: &Request) -> Caller {
    let Some(password) = request
        .head
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| decode_base64(encoded.trim()))
        .and_then(|decoded| decoded.strip_prefix("AWS:").map(str::to_string))
    else {
        return Caller::Anonymous;
    };
    match shared.state().tokens.get(&password) {
        Some(until) if *until > Instant::now() => Caller::Authorized,
        Some(_) => Caller::Expired,
        None => Caller::Anonymous,
    }
}

/// Answers one `/v2` request.
pub(crate) fn handle(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
) -> io::Result<u16> {
    let head_only = request.method == "HEAD";
    match caller(shared, request) {
        Caller::Authorized => {}
        // ECR speaks Basic auth only, with no token service (ECR user guide, "Private registry
        // authentication").
        Caller::Anonymous => {
            connection.discard_body(request)?;
            let realm = format!(
                "Basic realm=\"https://{}/\",service=\"ecr.amazonaws.com\"",
                shared.state().registry_host()
            );
            connection.respond(
                401,
                &[("WWW-Authenticate", realm)],
                b"Not Authorized\n",
                head_only,
            )?;
            return Ok(401);
        }
        // A token outlives nothing: when the credentials it came from expire, ECR answers 403
        // (amazon-ecr-credential-helper #7, #679; awsdocs "common errors" for Docker).
        Caller::Expired => {
            connection.discard_body(request)?;
            shared.state().counters.expired_token_refusals += 1;
            connection.registry_error(
                403,
                "DENIED",
                "Your authorization token has expired. Reauthenticate and try again.",
                head_only,
            )?;
            return Ok(403);
        }
    }
    let Some(route) = route(&request.path) else {
        connection.discard_body(request)?;
        connection.registry_error(404, "NOT_FOUND", "unknown API path", head_only)?;
        return Ok(404);
    };
    match route {
        Route::Ping => {
            connection.respond(
                200,
                &[("Content-Type", "application/json".into())],
                b"{}",
                head_only,
            )?;
            Ok(200)
        }
        Route::Manifest(name, reference) => match request.method.as_str() {
            "GET" | "HEAD" => get_manifest(shared, connection, request, name, reference),
            "PUT" => put_manifest(shared, connection, request, name, reference),
            _ => pass_through(shared, connection, request, name),
        },
        Route::Blob(name) | Route::RepositoryRead(name) => {
            pass_through(shared, connection, request, name)
        }
        Route::UploadStart(name) => uploads::start_upload(shared, connection, request, name),
        Route::Upload(name) => match request.method.as_str() {
            "PATCH" => uploads::upload_part(shared, connection, request, name),
            "PUT" => uploads::complete_upload(shared, connection, request, name),
            _ => pass_through(shared, connection, request, name),
        },
    }
}

/// Answers `NAME_UNKNOWN` (and returns its status) when repository `name` does not exist: ECR's
/// answer to any read, upload or delete in a repository it does not have.
pub(crate) fn refuse_unknown_repository(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
) -> io::Result<Option<u16>> {
    if shared.state().repositories.contains_key(name) {
        return Ok(None);
    }
    name_unknown(shared, connection, request, name).map(Some)
}

pub(crate) fn name_unknown(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
) -> io::Result<u16> {
    connection.discard_body(request)?;
    let message = format!(
        "The repository with name '{name}' does not exist in the registry with id '{}'",
        shared.account()
    );
    connection.registry_error(404, "NAME_UNKNOWN", &message, request.method == "HEAD")?;
    Ok(404)
}

fn manifest_unknown(connection: &mut Connection, request: &Request) -> io::Result<u16> {
    connection.registry_error(
        404,
        "MANIFEST_UNKNOWN",
        "Requested image not found",
        request.method == "HEAD",
    )?;
    Ok(404)
}

pub(crate) fn backing<'a>(shared: &'a Shared) -> Backing<'a> {
    Backing {
        host: &shared.backing_host,
        public_host: &shared.public_host,
    }
}

/// ECR sends no `Docker-Upload-UUID` (distribution/distribution #2927).
pub(crate) fn strip_upload_uuid(response: &mut BackingResponse) {
    response
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("docker-upload-uuid"));
}

/// Reads of an existing repository (blobs, tags, referrers, upload status) and deletes: ECR
/// answers `NAME_UNKNOWN` for a repository that does not exist, else what is stored.
fn pass_through(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
) -> io::Result<u16> {
    if let Some(status) = refuse_unknown_repository(shared, connection, request, name)? {
        return Ok(status);
    }
    let (status, _) = forward(
        connection,
        &backing(shared),
        request,
        &request.target,
        &mut strip_upload_uuid,
    )?;
    Ok(status)
}

/// What a pull must do before the stored manifest can be served.
enum Pull {
    Serve,
    Import(super::state::PullThroughRule),
    NameUnknown,
    ManifestUnknown,
}

fn get_manifest(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
    reference: &str,
) -> io::Result<u16> {
    let by_digest = reference.contains(':');
    let pull =
        {
            let state = shared.state();
            let rule = state.rule_for(name).cloned();
            match (state.repositories.get(name), rule) {
                (None, None) => Pull::NameUnknown,
                // An image not yet cached, asked for by digest, is not imported: only a pull by tag
                // is (aws/containers-roadmap #2837, also for `tag@digest`).
                (None, Some(_)) if by_digest => Pull::ManifestUnknown,
                (None, Some(rule)) => Pull::Import(rule),
                (Some(repository), rule) => {
                    let cached_from_upstream =
                        repository.origin == RepositoryOrigin::PullThroughCache && rule.is_some();
                    if by_digest {
                        match repository.images.get(reference) {
                            // A child of a freshly imported index may not be readable yet.
                            Some(image) if image.readable_from > Instant::now() => {
                                Pull::ManifestUnknown
                            }
                            Some(_) => Pull::Serve,
                            None if cached_from_upstream => Pull::ManifestUnknown,
                            None => Pull::Serve,
                        }
                    } else {
                        match rule {
                            // ECR checks upstream on a pull by tag at most once per 24 hours
                            // (ECR user guide, "Sync an upstream registry"): a tag it checked
                            // within the interval is served as cached, even if upstream moved.
                            Some(rule) if cached_from_upstream => {
                                let fresh =
                                    repository.last_upstream_check.get(reference).is_some_and(
                                        |at| at.elapsed() < shared.settings.upstream_check_interval,
                                    );
                                if fresh && repository.image_tags.contains_key(reference) {
                                    Pull::Serve
                                } else {
                                    Pull::Import(rule)
                                }
                            }
                            _ => Pull::Serve,
                        }
                    }
                }
            }
        };
    match pull {
        Pull::NameUnknown => return name_unknown(shared, connection, request, name),
        Pull::ManifestUnknown => return manifest_unknown(connection, request),
        Pull::Import(rule) => match import(shared, name, &rule, reference) {
            Ok(()) => {}
            Err(ImportError::UpstreamMissing) => return manifest_unknown(connection, request),
            Err(ImportError::Failed(reason)) => {
                connection.registry_error(500, "UNKNOWN", &reason, request.method == "HEAD")?;
                return Ok(500);
            }
        },
        Pull::Serve => {}
    }
    let (status, _) = forward(
        connection,
        &backing(shared),
        request,
        &request.target,
        &mut |_| {},
    )?;
    Ok(status)
}

/// Makes sure repository `name` exists for a push: it must, unless a `CREATE_ON_PUSH` creation
/// template covers it (docker/cli #5275; ECR user guide, "Repository creation templates").
pub(crate) fn ensure_push_repository(shared: &Shared, name: &str) -> bool {
    let mut state = shared.state();
    if state.repositories.contains_key(name) {
        return true;
    }
    if state.template_for(name, "CREATE_ON_PUSH").is_none() {
        return false;
    }
    state.create_from_template(name, RepositoryOrigin::CreateOnPush, "CREATE_ON_PUSH");
    true
}

fn put_manifest(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
    reference: &str,
) -> io::Result<u16> {
    let Some(body) = connection.read_body(request, MAX_MANIFEST_BYTES)? else {
        connection.registry_error(
            400,
            "MANIFEST_INVALID",
            "manifest is larger than 4 MiB",
            false,
        )?;
        return Ok(400);
    };
    {
        let mut state = shared.state();
        if !state.put_image_bucket.take() {
            state.counters.puts_throttled += 1;
            drop(state);
            connection.registry_error(429, "TOOMANYREQUESTS", "Rate exceeded", false)?;
            return Ok(429);
        }
    }
    if !ensure_push_repository(shared, name) {
        return name_unknown(shared, connection, request, name);
    }
    let tag = (!reference.contains(':')).then_some(reference);
    if let Some(tag) = tag {
        let mut state = shared.state();
        let repository = &state.repositories[name];
        if repository.image_tags.contains_key(tag) && repository.tag_is_immutable(tag) {
            state.counters.immutable_refusals += 1;
            drop(state);
            let message = format!(
                "The image tag '{tag}' already exists in the '{name}' repository and cannot be overwritten because the tag is immutable."
            );
            connection.registry_error(400, "TAG_INVALID", &message, false)?;
            return Ok(400);
        }
    }
    let media_type = request
        .head
        .header("content-type")
        .unwrap_or_default()
        .to_string();
    let stored = http_request(
        &shared.backing_host,
        "PUT",
        &request.target,
        &[("Content-Type", &media_type)],
        &body,
    )?;
    if stored.status == 201 {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let (references, _) = manifest_references(&body);
        let mut state = shared.state();
        state.counters.puts_accepted += 1;
        if let Some(repository) = state.repositories.get_mut(name) {
            repository.record_image(
                &digest,
                StoredImage {
                    media_type: media_type.clone(),
                    size: body.len() as u64,
                    pushed_at: std::time::SystemTime::now(),
                    references,
                    readable_from: Instant::now(),
                },
                tag,
            );
        }
    }
    let mut headers: Vec<(&str, String)> = Vec::new();
    for key in ["Content-Type", "Docker-Content-Digest", "Location"] {
        if let Some(value) = stored.header(key) {
            let value = value.replacen(
                &format!("http://{}", shared.backing_host),
                &format!("http://{}", shared.public_host),
                1,
            );
            headers.push((key, value));
        }
    }
    connection.respond(stored.status, &headers, &stored.body, false)?;
    Ok(stored.status)
}

/// Whether `media_type` is that of an index (manifest list).
pub(crate) fn is_index(media_type: &str) -> bool {
    INDEX_MEDIA_TYPES.contains(&media_type)
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_registry_paths() {
        assert!(matches!(route("/v2/"), Some(Route::Ping)));
        assert!(matches!(
            route("/v2/a/b/manifests/1"),
            Some(Route::Manifest("a/b", "1"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart("a"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/uuid"),
            Some(Route::Upload("a"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob("a"))
        ));
        assert!(matches!(
            route("/v2/a/tags/list"),
            Some(Route::RepositoryRead("a"))
        ));
        assert!(route("/other").is_none());
    }
}

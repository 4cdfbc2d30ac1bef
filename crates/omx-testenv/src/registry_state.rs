//! What a registry itself holds, asked directly over HTTP (no proxy, no product code in
//! between): the checks tests make after a copy or a refusal.

use crate::{basic_auth_header, http_request, Registry};

/// The four manifest media types, so distribution 2.8 answers for OCI content too.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `HEAD path` on the registry, with its own credentials when it has basic auth.
fn head(registry: &Registry, path: &str, accept: Option<&str>) -> crate::HttpResponse {
    let authorization = registry
        .credentials()
        .map(|(user, password)| basic_auth_header(&user, &password));
    let mut headers = Vec::new();
    if let Some(accept) = accept {
        headers.push(("Accept", accept));
    }
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization.as_str()));
    }
    http_request(&registry.host(), "HEAD", path, &headers, &[]).expect("the registry answers")
}

/// Status and `Docker-Content-Digest` of a manifest (by tag or digest).
pub fn head_manifest(registry: &Registry, repository: &str, name: &str) -> (u16, Option<String>) {
    let response = head(
        registry,
        &format!("/v2/{repository}/manifests/{name}"),
        Some(MANIFEST_ACCEPT),
    );
    let digest = response.header("docker-content-digest").map(str::to_string);
    (response.status, digest)
}

/// The digest a registry serves for `repository:reference`, or `None` when it has no such
/// manifest; any other answer fails the test.
pub fn served_digest(registry: &Registry, repository: &str, reference: &str) -> Option<String> {
    match head_manifest(registry, repository, reference) {
        (200, digest) => Some(digest.expect("distribution sends Docker-Content-Digest")),
        (404, _) => None,
        (status, _) => panic!("HEAD {repository}:{reference} answered {status}"),
    }
}

/// Whether the registry holds blob `digest` in `repository`.
pub fn holds_blob(registry: &Registry, repository: &str, digest: &str) -> bool {
    let response = head(registry, &format!("/v2/{repository}/blobs/{digest}"), None);
    match response.status {
        200 => true,
        404 => false,
        status => panic!("HEAD blob {digest} in {repository} answered {status}"),
    }
}

/// Requests that write (blob uploads, mounts, manifest pushes) in the registry's access log.
pub fn writes_logged(registry: &Registry) -> usize {
    registry
        .log()
        .lines()
        .filter(|line| {
            line.contains("\"PUT /v2/")
                || line.contains("\"POST /v2/")
                || line.contains("\"PATCH /v2/")
        })
        .count()
}

//! Pull-through-cache imports: what ECR does on a first pull by tag through a rule. It fetches the
//! manifest from the upstream registry and, for an index, every manifest it lists, with their
//! blobs, into a repository it creates with the `PULL_THROUGH_CACHE` creation template's
//! settings (ECR user guide, "Sync an upstream registry with an Amazon ECR private registry" and
//! "Templates to control repositories created during a pull through cache ... action").
//!
//! Upstreams are other local registries: the rule's `upstreamRegistryUrl` (`quay.io`) is looked
//! up in the hosts the test gave ([`super::EcrBuilder::upstream`]). Images are held in memory
//! while they are copied: test images are small.

use std::time::{Instant, SystemTime};

use sha2::{Digest as _, Sha256};

use super::registry_api::is_index;
use super::state::{manifest_references, PullThroughRule, RepositoryOrigin, StoredImage};
use super::Shared;
use crate::http::http_request;

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

pub(crate) enum ImportError {
    /// Upstream has no such manifest (or repository).
    UpstreamMissing,
    Failed(String),
}

struct Fetched {
    media_type: String,
    bytes: Vec<u8>,
    digest: String,
}

/// Imports `name:tag` through `rule` (or re-checks it), then records it as the stand-in's state.
pub(crate) fn import(
    shared: &Shared,
    name: &str,
    rule: &PullThroughRule,
    tag: &str,
) -> Result<(), ImportError> {
    // One import at a time: concurrent first pulls of one image import it once.
    let _one_at_a_time = shared
        .import_lock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let upstream = shared
        .upstream_host(&rule.upstream_registry_url)
        .ok_or_else(|| {
            ImportError::Failed(format!(
                "the ECR stand-in has no local registry for upstream {}",
                rule.upstream_registry_url
            ))
        })?;
    let upstream_path = &name[rule.prefix.len() + 1..];
    let top = fetch_manifest(&upstream, upstream_path, tag)?;
    let already = shared
        .state()
        .repositories
        .get(name)
        .and_then(|repository| repository.image_tags.get(tag).cloned());
    let children_readable_from = Instant::now() + shared.settings.index_children_delay;
    let mut stored = Vec::new();
    if already.as_deref() != Some(top.digest.as_str()) {
        let (references, index) = manifest_references(&top.bytes);
        if index && is_index(&top.media_type) {
            for child in &references {
                let child_manifest = fetch_manifest(&upstream, upstream_path, child)?;
                copy_blobs(
                    shared,
                    &upstream,
                    upstream_path,
                    name,
                    &child_manifest.bytes,
                )?;
                put_manifest(shared, name, child, &child_manifest)?;
                stored.push((child_manifest, None, children_readable_from));
            }
        } else {
            copy_blobs(shared, &upstream, upstream_path, name, &top.bytes)?;
        }
        put_manifest(shared, name, tag, &top)?;
    }
    let mut state = shared.state();
    state.counters.imports += 1;
    if !state.repositories.contains_key(name) {
        state.create_from_template(
            name,
            RepositoryOrigin::PullThroughCache,
            "PULL_THROUGH_CACHE",
        );
    }
    let repository = state.repositories.get_mut(name).expect("created above");
    stored.push((top, Some(tag.to_string()), Instant::now()));
    for (manifest, tag, readable_from) in stored {
        let (references, _) = manifest_references(&manifest.bytes);
        repository.record_image(
            &manifest.digest,
            StoredImage {
                media_type: manifest.media_type,
                size: manifest.bytes.len() as u64,
                pushed_at: SystemTime::now(),
                references,
                readable_from,
            },
            tag.as_deref(),
        );
    }
    repository
        .last_upstream_check
        .insert(tag.to_string(), Instant::now());
    Ok(())
}

fn fetch_manifest(upstream: &str, path: &str, reference: &str) -> Result<Fetched, ImportError> {
    let response = http_request(
        upstream,
        "GET",
        &format!("/v2/{path}/manifests/{reference}"),
        &[("Accept", ACCEPT_MANIFESTS)],
        &[],
    )
    .map_err(|e| ImportError::Failed(format!("upstream {upstream} unreachable: {e}")))?;
    match response.status {
        200 => {}
        404 => return Err(ImportError::UpstreamMissing),
        status => {
            return Err(ImportError::Failed(format!(
                "upstream {upstream} answered {status} for {path}:{reference}"
            )))
        }
    }
    let media_type = response
        .header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&response.body)));
    Ok(Fetched {
        media_type,
        bytes: response.body,
        digest,
    })
}

fn failed(what: &str, status: u16) -> ImportError {
    ImportError::Failed(format!("{what} answered {status}"))
}

fn copy_blobs(
    shared: &Shared,
    upstream: &str,
    upstream_path: &str,
    name: &str,
    manifest: &[u8],
) -> Result<(), ImportError> {
    let io = |e: std::io::Error| ImportError::Failed(e.to_string());
    let (blobs, _) = manifest_references(manifest);
    for digest in blobs {
        let present = http_request(
            &shared.backing_host,
            "HEAD",
            &format!("/v2/{name}/blobs/{digest}"),
            &[],
            &[],
        )
        .map_err(io)?;
        if present.status == 200 {
            continue;
        }
        let blob = http_request(
            upstream,
            "GET",
            &format!("/v2/{upstream_path}/blobs/{digest}"),
            &[],
            &[],
        )
        .map_err(io)?;
        if blob.status != 200 {
            return Err(failed("upstream blob GET", blob.status));
        }
        let started = http_request(
            &shared.backing_host,
            "POST",
            &format!("/v2/{name}/blobs/uploads/"),
            &[],
            &[],
        )
        .map_err(io)?;
        let location = started
            .header("location")
            .ok_or_else(|| failed("upload POST without Location", started.status))?;
        let path = location
            .strip_prefix(&format!("http://{}", shared.backing_host))
            .unwrap_or(location);
        let separator = if path.contains('?') { '&' } else { '?' };
        let finished = http_request(
            &shared.backing_host,
            "PUT",
            &format!("{path}{separator}digest={}", digest.replace(':', "%3A")),
            &[("Content-Type", "application/octet-stream")],
            &blob.body,
        )
        .map_err(io)?;
        if finished.status != 201 {
            return Err(failed("blob upload PUT", finished.status));
        }
    }
    Ok(())
}

fn put_manifest(
    shared: &Shared,
    name: &str,
    reference: &str,
    manifest: &Fetched,
) -> Result<(), ImportError> {
    let stored = http_request(
        &shared.backing_host,
        "PUT",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Content-Type", &manifest.media_type)],
        &manifest.bytes,
    )
    .map_err(|e| ImportError::Failed(e.to_string()))?;
    if stored.status != 201 {
        return Err(ImportError::Failed(format!(
            "storing {name}:{reference} answered {}: {}",
            stored.status,
            stored.text()
        )));
    }
    Ok(())
}

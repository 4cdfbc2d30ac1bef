//! Blob uploads as ECR answers them: mounts only where ECR allows them, and chunked uploads
//! with ECR's 201, its stale `Range` and its minimum part size.

use std::io;

use super::registry_api::{
    backing, ensure_push_repository, name_unknown, refuse_unknown_repository, strip_upload_uuid,
};
use super::state::RepositoryOrigin;
use super::wire::{forward, Connection, Request};
use super::Shared;
use crate::proxy::Framing;

/// Every part of a chunked upload but the last must be at least 5 MiB, else ECR refuses it with
/// `LayerPartTooSmallException: All layer parts except the last part should be at least 5MB`
/// (dotnet/sdk-container-builds #279 and #424, read from CloudTrail).
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

pub(crate) fn start_upload(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
) -> io::Result<u16> {
    if !ensure_push_repository(shared, name) {
        return name_unknown(shared, connection, request, name);
    }
    let Some(digest) = request.query_value("mount") else {
        let (status, _) = forward(
            connection,
            &backing(shared),
            request,
            &request.target,
            &mut strip_upload_uuid,
        )?;
        return Ok(status);
    };
    // Blob mounting is opt-in per registry (`BLOB_MOUNTING` account setting), never from a
    // pull-through-cache repository, and only for a blob some manifest of `from` references;
    // otherwise ECR opens an upload session, 202 (ECR user guide, "Blob mounting in Amazon ECR";
    // aws/containers-roadmap #2860).
    let allowed = {
        let state = shared.state();
        state.blob_mounting_enabled()
            && request
                .query_value("from")
                .and_then(|from| state.repositories.get(from))
                .is_some_and(|from| {
                    from.origin != RepositoryOrigin::PullThroughCache
                        && from.references_blob(digest)
                })
    };
    let target = if allowed {
        request.target.clone()
    } else {
        format!("/v2/{name}/blobs/uploads/")
    };
    let (status, _) = forward(
        connection,
        &backing(shared),
        request,
        &target,
        &mut strip_upload_uuid,
    )?;
    let mut state = shared.state();
    if status == 201 {
        state.counters.mounts_granted += 1;
    } else {
        state.counters.mounts_refused += 1;
    }
    Ok(status)
}

/// Refuses a new part when the one before it, now known not to be the last, was too small.
fn previous_part_too_small(shared: &Shared, upload: &str) -> bool {
    let mut state = shared.state();
    let too_small = state
        .uploads
        .get(upload)
        .and_then(|parts| parts.sizes.last())
        .is_some_and(|size| *size < MIN_PART_BYTES);
    if too_small {
        state.counters.parts_too_small += 1;
    }
    too_small
}

fn refuse_small_part(connection: &mut Connection, request: &Request) -> io::Result<u16> {
    connection.discard_body(request)?;
    connection.registry_error(
        400,
        "BLOB_UPLOAD_INVALID",
        "LayerPartTooSmallException: All layer parts except the last part should be at least 5MB",
        false,
    )?;
    Ok(400)
}

pub(crate) fn upload_part(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
) -> io::Result<u16> {
    if let Some(status) = refuse_unknown_repository(shared, connection, request, name)? {
        return Ok(status);
    }
    let upload = request.path.clone();
    if previous_part_too_small(shared, &upload) {
        return refuse_small_part(connection, request);
    }
    let first_range = shared
        .state()
        .uploads
        .get(&upload)
        .and_then(|parts| parts.first_range.clone());
    let mut answered_range = None;
    let (status, sent) = forward(
        connection,
        &backing(shared),
        request,
        &request.target,
        &mut |response| {
            strip_upload_uuid(response);
            if response.status == 202 {
                // ECR acknowledges a part with 201, not the spec's 202
                // (dotnet/sdk-container-builds #279).
                response.status = 201;
                // ...and its `Range` stops advancing after the first part although every part is
                // stored (aws/containers-roadmap #2831).
                match &first_range {
                    Some(range) => response.set_header("Range", range.clone()),
                    None => answered_range = response.header("range").map(str::to_string),
                }
            }
        },
    )?;
    if status == 201 {
        let mut state = shared.state();
        let parts = state.uploads.entry(upload).or_default();
        parts.sizes.push(sent);
        if parts.first_range.is_none() {
            parts.first_range = answered_range;
        }
    }
    Ok(status)
}

pub(crate) fn complete_upload(
    shared: &Shared,
    connection: &mut Connection,
    request: &Request,
    name: &str,
) -> io::Result<u16> {
    if let Some(status) = refuse_unknown_repository(shared, connection, request, name)? {
        return Ok(status);
    }
    let upload = request.path.clone();
    let carries_a_part = !matches!(request.framing()?, Framing::Empty | Framing::Length(0));
    if carries_a_part && previous_part_too_small(shared, &upload) {
        return refuse_small_part(connection, request);
    }
    let (status, _) = forward(
        connection,
        &backing(shared),
        request,
        &request.target,
        &mut strip_upload_uuid,
    )?;
    if status == 201 {
        shared.state().uploads.remove(&upload);
    }
    Ok(status)
}

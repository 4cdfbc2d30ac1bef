//! Pinning a manifest's tags to digests (or checking the pins), upstream.

use std::sync::Arc;

use omx_core::lock::LockReport;
use omx_puller::Locker;
use omx_registry::{ClientConfig, DockerConfigCredentials, RegistryClient};

use crate::args::pull_manifest::plan_entries;
use crate::args::{PullManifestArgs, RegistryAccessArgs};

/// Locks the manifest `input` names (or, with `check`, checks its pins) against upstream.
pub async fn resolve(
    input: &PullManifestArgs,
    access: &RegistryAccessArgs,
    jobs: u16,
    check: bool,
) -> anyhow::Result<LockReport> {
    // The rules first: a bad rule file is named before the manifest is read, as for `plan`.
    input.namespace_table()?;
    let client = RegistryClient::new(ClientConfig {
        credentials: Arc::new(DockerConfigCredentials::from_environment()?),
        ..access.client_config()
    })?;
    resolve_with(input, client, jobs, check).await
}

/// [`resolve`] on `client`: a command that goes on to pull shares its client, so a manifest
/// read to lock (an index, by digest) is not pulled again.
pub async fn resolve_with(
    input: &PullManifestArgs,
    client: RegistryClient,
    jobs: u16,
    check: bool,
) -> anyhow::Result<LockReport> {
    let table = input.namespace_table()?;
    let entries = input.entries()?;
    let plan = plan_entries(&entries, &table, &input.registry);
    let locker = Locker::new(client, table, usize::from(jobs));
    Ok(match check {
        true => locker.check(&plan, &entries.entries).await,
        false => locker.lock(&plan, &entries.entries).await,
    })
}

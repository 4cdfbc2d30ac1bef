//! `omx-ecr-helper lock`: pins every image of a pull manifest to the digest its tag points at.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use omx_core::lock::{LockReport, LockStatus};
use omx_puller::Locker;
use omx_registry::{ClientConfig, DockerConfigCredentials, RegistryClient};

use crate::copy::RegistryAccessArgs;
use crate::exit::Outcome;
use crate::plan::{plan_entries, shown_path, PullManifestArgs};
use crate::table;

/// Pin every image of a pull manifest to the digest its tag points at upstream.
///
/// HealthOmics recommends pinning images by digest: a tag can move between two runs of a
/// workflow. Each tag is resolved with a manifest HEAD (not counted as a Docker Hub pull), and
/// the image must offer linux/amd64, the only platform HealthOmics runs. The locked manifest
/// keeps every entry's spelling and order and appends the digest (`ubuntu:20.04@sha256:…`);
/// `pull`, `verify` and `map` then work on exactly those images. Entries already pinned are
/// checked to exist and kept. Registry credentials come from the Docker config, as for `pull`.
///
/// With --check, MANIFEST is a locked manifest, which is left as it is: each pinned tag is
/// resolved again and the ones that moved are listed with the new digest and the pinned one.
///
/// Exit 0: every entry locked (with --check: no tag moved); 1: some entries failed (or moved);
/// 2: unusable input.
#[derive(Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    pub input: PullManifestArgs,

    /// MANIFEST is a locked manifest: exit 1 when a pinned tag now points at another digest.
    #[arg(long, conflicts_with = "output")]
    pub check: bool,

    /// Write the locked manifest to FILE (default: stdout, the table then goes to stderr).
    /// Entries that failed are written as they were.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Write the lock report to FILE as JSON: per entry its input, source, tag, digest,
    /// mediaType, the platforms found, status and reason.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Images resolved at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    #[command(flatten)]
    pub access: RegistryAccessArgs,
}

pub async fn run(args: LockArgs) -> anyhow::Result<Outcome> {
    let report = resolve(&args.input, &args.access, args.jobs, args.check).await?;

    if let Some(path) = &args.report {
        write_file(path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    let table = render_report(&report, args.check);
    match (&args.output, args.check) {
        (None, false) => {
            eprint!("{table}");
            crate::output::write_stdout(&report.locked_manifest())?;
        }
        (Some(path), false) => {
            write_file(path, &report.locked_manifest())?;
            crate::output::write_stdout(&table)?;
        }
        (_, true) => crate::output::write_stdout(&table)?,
    }
    Ok(if report.all_ok() {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

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

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", shown_path(path)))
}

pub(crate) fn render_report(report: &LockReport, check: bool) -> String {
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .map(|entry| {
            vec![
                entry.status.word().to_string(),
                entry.input.clone(),
                entry
                    .digest
                    .as_ref()
                    .map_or(String::new(), omx_core::Digest::short),
                entry.reason.clone(),
            ]
        })
        .collect();
    let mut out = table::render(&["STATUS", "ENTRY", "DIGEST", "REASON"], &rows);
    let count = |status| report.count(status);
    out.push('\n');
    out.push_str(&match check {
        true => format!(
            "{} unchanged, {} moved, {} failed\n",
            count(LockStatus::Unchanged),
            count(LockStatus::Moved),
            count(LockStatus::Failed)
        ),
        false => format!(
            "{} locked, {} kept, {} failed\n",
            count(LockStatus::Locked),
            count(LockStatus::Kept),
            count(LockStatus::Failed)
        ),
    });
    out
}

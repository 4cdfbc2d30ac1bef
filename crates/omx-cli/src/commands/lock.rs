//! `omx-ecr-helper lock`: pins every image of a pull manifest to the digest its tag points at.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::args::RegistryAccessArgs;
use crate::args::{shown_path, PullManifestArgs};
use crate::exit::Outcome;
use crate::render::lock_report::render_report;
use crate::steps::lock::resolve;

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

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", shown_path(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: LockArgs,
    }

    #[test]
    fn lock_takes_no_strategy_options_since_it_plans_no_strategies() {
        assert!(Harness::try_parse_from(["lock", "m.json"]).is_ok());
        for option in [["--strategy", "copy"], ["--credential", "nvcr.io=arn:x"]] {
            let error = Harness::try_parse_from(["lock", "m.json", option[0], option[1]])
                .err()
                .unwrap_or_else(|| panic!("lock took {}", option[0]));
            assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
        }
    }
}

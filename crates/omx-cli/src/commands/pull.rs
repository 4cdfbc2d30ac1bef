//! `omx-ecr-helper pull`: the main job. Every image of a manifest into the private registry.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use omx_core::namespace::NamespaceTable;
use omx_core::pull_plan::PullPlan;
use omx_core::registry_map::OutputMap;
use omx_core::report::RunReport;
use omx_core::strategy::NativeAccess;

use crate::args::PullManifestArgs;
use crate::args::PullRunArgs;
use crate::exit::Outcome;
use crate::output::Format;
use crate::render::image_report::render_report;
use crate::steps::pull::{execute, PullRun};

/// Bring every image of a pull manifest into ECR (or any OCI registry).
///
/// For each image, concurrently: create its repository with the tag createdBy=omx-ecr-helper
/// and a policy that lets HealthOmics pull (ECR), skip it when the target already has it, prime
/// it through ECR's pull-through cache (quay, ecr-public) or copy it registry to registry
/// (digests preserved, multi-arch kept), and verify the target's digest. Images whose strategy
/// is native (see --strategy) are not touched: they are reported NATIVE, and --output-map gives
/// their registry a mapping that HealthOmics fetches them through. One failing image never
/// stops the others. Before copying, the pulls the plan needs are counted against the budget a
/// source registry publishes (Docker Hub's pull limits): images that do not fit are reported
/// FAILED up front (--strict: nothing is copied), and a registry that answers 429 for a spent
/// limit fails its remaining images at once. Exit 0: all succeeded, skipped or native; 1: some
/// failed; 2: unusable input.
#[derive(Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    pub input: PullManifestArgs,

    #[command(flatten)]
    pub run: PullRunArgs,

    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write every image's private URI and a HealthOmics containerRegistryMap to FILE.
    #[arg(long, value_name = "FILE")]
    pub output_map: Option<PathBuf>,
}

pub async fn run(args: PullArgs) -> anyhow::Result<Outcome> {
    let PullRun {
        table,
        plan,
        report,
        access,
        ..
    } = execute(&args.input, &args.run).await?;
    crate::output::print_report(args.format, &report, render_report)?;
    if let Some(path) = &args.output_map {
        write_output_map(path, &plan, &report, &table, &access)?;
    }
    Ok(if report.all_ok() {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

fn write_output_map(
    path: &std::path::Path,
    plan: &PullPlan,
    report: &RunReport,
    table: &NamespaceTable,
    access: &NativeAccess,
) -> anyhow::Result<()> {
    let map = OutputMap::from_run(plan, report, table, access);
    let text = serde_json::to_string_pretty(&map)? + "\n";
    std::fs::write(path, text)
        .with_context(|| format!("cannot write {}", crate::args::shown_path(path)))
}

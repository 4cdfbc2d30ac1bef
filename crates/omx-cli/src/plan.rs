//! `omx-ecr-helper plan`: what `pull` would do, with no network access.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use omx_core::manifest::parse_pull_manifest;
use omx_core::namespace::NamespaceTable;
use omx_core::plan::{plan_pull, PullPlan, TargetRegistry};

use crate::exit::{Outcome, UnusableInput};
use crate::table;

/// What every command that reads a pull manifest takes.
#[derive(Args, Debug, Clone)]
pub struct PullManifestArgs {
    /// The pull manifest: {"manifest": ["ubuntu:20.04", "quay.io/biocontainers/bcftools:1.16--hfe4b78e_1", ...]}
    #[arg(required_unless_present = "single")]
    pub manifest: Option<PathBuf>,

    /// One image instead of a manifest (what the serverless stack's CodeBuild fallback runs).
    #[arg(long, value_name = "IMAGE", conflicts_with = "manifest")]
    pub single: Option<String>,

    /// Where images go: `ecr` (the account and region of the AWS credential chain),
    /// `ecr://ACCOUNT/REGION`, or the host[:port] of any OCI registry.
    #[arg(long, default_value = "ecr", value_name = "REGISTRY")]
    pub registry: TargetRegistry,

    /// A JSON file of namespace rules that extend or override the built-in table, e.g.
    /// {"rules": [{"hosts": ["community.wave.seqera.io"], "namespace": "wave"}]}
    #[arg(long, value_name = "FILE")]
    pub namespaces: Option<PathBuf>,
}

impl PullManifestArgs {
    /// The namespace table: built-in rules, with the user's file in front.
    pub fn namespace_table(&self) -> anyhow::Result<NamespaceTable> {
        let table = NamespaceTable::builtin();
        let Some(path) = &self.namespaces else {
            return Ok(table);
        };
        let text = read_input_file(path)?;
        table
            .with_user_rules(&text)
            .map_err(|e| UnusableInput(format!("{}: {e}", path.display())).into())
    }

    /// Reads and plans the manifest against `registry`.
    pub fn plan(&self, registry: &TargetRegistry) -> anyhow::Result<PullPlan> {
        let table = self.namespace_table()?;
        let entries = match (&self.single, &self.manifest) {
            (Some(image), _) => {
                parse_pull_manifest(&serde_json::json!({"manifest": [image]}).to_string())
                    .map_err(|e| UnusableInput(format!("--single: {e}")))?
            }
            (None, Some(path)) => {
                let text = read_input_file(path)?;
                parse_pull_manifest(&text)
                    .map_err(|e| UnusableInput(format!("{}: {e}", path.display())))?
            }
            (None, None) => unreachable!("clap requires a manifest or --single"),
        };
        let mut plan = plan_pull(&entries.entries, &table, registry);
        plan.errors.extend(entries.errors);
        plan.errors.sort_by_key(|e| e.index);
        Ok(plan)
    }
}

impl PullManifestArgs {
    /// Checks the manifest offline first, so bad input fails fast and before any AWS call; then
    /// resolves the target (account and region for ECR) and plans against it.
    pub async fn resolve_and_plan(
        &self,
        options: &omx_puller::TargetOptions,
    ) -> anyhow::Result<(NamespaceTable, omx_puller::ResolvedTarget, PullPlan)> {
        let table = self.namespace_table()?;
        self.plan(&self.registry)?;
        let target = omx_puller::ResolvedTarget::resolve(&self.registry, options).await?;
        let plan = self.plan(&target.registry)?;
        Ok((table, target, plan))
    }
}

/// Reads a user-named input file; failing to read it makes the whole run unusable (exit 2).
pub fn read_input_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(|e| UnusableInput(format!("{e:#}")).into())
}

/// Show what `pull` would do for a manifest, without touching any network.
///
/// Each image's fully-qualified source, its private repository and URI, and whether it will be
/// primed through ECR's pull-through cache or copied. Exit 0: every entry is valid; 1: some
/// entries are invalid (the valid ones are still listed); 2: the file cannot be used.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: PullManifestArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// One JSON object: {"images": [...], "errors": [...]}.
    Json,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Outcome> {
    let plan = args.input.plan(&args.input.registry)?;
    crate::output::print_report(args.format, &plan, render_table)?;
    Ok(if plan.has_errors() {
        Outcome::PartialFailure
    } else {
        Outcome::Success
    })
}

fn render_table(plan: &PullPlan) -> String {
    let rows: Vec<Vec<String>> = plan
        .images
        .iter()
        .map(|image| {
            vec![
                image.source.to_string(),
                image.method.to_string(),
                image.target.clone(),
            ]
        })
        .collect();
    let mut out = table::render(&["SOURCE", "METHOD", "TARGET"], &rows);
    for image in &plan.images {
        for warning in &image.warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
    }
    if !plan.errors.is_empty() {
        out.push('\n');
        for error in &plan.errors {
            out.push_str(&format!("error: {error}\n"));
        }
    }
    out.push_str(&format!(
        "\n{} image(s) planned, {} invalid entr{}\n",
        plan.images.len(),
        plan.errors.len(),
        if plan.errors.len() == 1 { "y" } else { "ies" }
    ));
    out
}

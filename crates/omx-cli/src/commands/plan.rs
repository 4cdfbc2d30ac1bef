//! `omx-ecr-helper plan`: what `pull` would do, with no network access.

use clap::Args;
use omx_core::pull_plan::PullPlan;

use crate::args::{PullManifestArgs, StrategyArgs};
use crate::exit::Outcome;
use crate::output::Format;
use crate::table;

/// Show what `pull` would do for a manifest, without touching any network.
///
/// Each image's fully-qualified source, its private repository and URI, and whether it will be
/// primed through ECR's pull-through cache or copied. When some image is native (left for
/// HealthOmics to fetch, see --strategy), a STRATEGY column says which (native, prime, copy);
/// --format json always has each image's strategy. Exit 0: every entry is valid; 1: some
/// entries are invalid (the valid ones are still listed); 2: the file cannot be used.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: PullManifestArgs,

    #[command(flatten)]
    pub strategy: StrategyArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Outcome> {
    let plan = args.input.plan(&args.strategy, &args.input.registry)?;
    crate::output::print_report(args.format, &plan, render_table)?;
    Ok(if plan.has_errors() {
        Outcome::PartialFailure
    } else {
        Outcome::Success
    })
}

fn render_table(plan: &PullPlan) -> String {
    // The method says what happens to an image unless HealthOmics is left to fetch it: the
    // strategy column is shown only when some image is native (--format json always has it).
    let any_native = plan
        .images
        .iter()
        .any(|image| image.strategy == omx_core::strategy::Strategy::Native);
    let rows: Vec<Vec<String>> = plan
        .images
        .iter()
        .map(|image| {
            let mut row = vec![image.source.to_string()];
            if any_native {
                row.push(image.strategy.to_string());
            }
            row.extend([image.method.to_string(), image.target.clone()]);
            row
        })
        .collect();
    let headers: &[&str] = if any_native {
        &["SOURCE", "STRATEGY", "METHOD", "TARGET"]
    } else {
        &["SOURCE", "METHOD", "TARGET"]
    };
    let mut out = table::render(headers, &rows);
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

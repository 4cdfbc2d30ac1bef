//! `omx-ecr-helper submit`: run a manifest on the deployed serverless stack and follow it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use omx_aws::{AwsContext, Execution, ExecutionStatus, StepFunctions};
use omx_core::manifest::{parse_build_manifest, parse_pull_manifest, EntryError};
use omx_core::namespace::NamespaceTable;
use omx_core::plan::{plan_pull, TargetRegistry};
use omx_core::report::{ImageReport, ImageStatus, RunReport};
use serde_json::Value;

use crate::exit::{Outcome, UnusableInput};
use crate::plan::{read_input_file, Format};
use crate::pull::render_report;

/// The state machines the stack deploys (infra/).
const PULLER: &str = "omx-container-puller";
const BUILDER: &str = "omx-container-builder";

/// Start an execution of the deployed state machine with a manifest and follow it to the end.
///
/// `omx-container-puller` takes the pull manifest, `omx-container-builder` (with --builder) the
/// build manifest. Invalid entries are reported and left out; the rest is submitted as is. The
/// report is the one `pull` prints. Exit 0: the execution succeeded; 1: it failed or some entries
/// were invalid; 2: unusable input.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The manifest: a pull manifest, or a build manifest with --builder.
    pub manifest: PathBuf,

    /// Submit a build manifest to omx-container-builder.
    #[arg(long)]
    pub builder: bool,

    /// The state machine's name, when it is not the stack's default.
    #[arg(long, value_name = "NAME")]
    pub state_machine: Option<String>,

    /// AWS region of the stack (default: the credential chain's region).
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile to use.
    #[arg(long)]
    pub profile: Option<String>,

    /// Seconds between status checks.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub poll_seconds: u64,

    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<Outcome> {
    let text = read_input_file(&args.manifest)?;
    let (entries, errors) = valid_entries(&text, args.builder)
        .map_err(|e| UnusableInput(format!("{}: {e}", args.manifest.display())))?;
    for error in &errors {
        eprintln!("invalid  {error}");
    }
    if entries.is_empty() {
        eprintln!("nothing to submit");
        return Ok(if errors.is_empty() {
            Outcome::Success
        } else {
            Outcome::PartialFailure
        });
    }

    let context = AwsContext::load(args.region.clone(), args.profile.clone()).await?;
    let step_functions = StepFunctions::new(context.sdk_config());
    let name = args
        .state_machine
        .clone()
        .unwrap_or_else(|| if args.builder { BUILDER } else { PULLER }.to_string());
    let state_machine = step_functions
        .state_machine_arn(&name)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "state machine {name} not found in {}: deploy the stack first (infra/README.md)",
                context.region()
            )
        })?;
    let input = serde_json::json!({ "manifest": entries }).to_string();
    let execution_arn = step_functions.start(&state_machine, &input).await?;
    let say = |line: &str| {
        if !args.quiet {
            eprintln!("{line}");
        }
    };
    say(&format!("started {execution_arn}"));

    let started = Instant::now();
    let execution = loop {
        let execution = step_functions.describe(&execution_arn).await?;
        if execution.status != ExecutionStatus::Running {
            break execution;
        }
        say(&format!("running ({}s)", started.elapsed().as_secs()));
        tokio::time::sleep(Duration::from_secs(args.poll_seconds)).await;
    };
    say(&format!(
        "{:?} after {}s",
        execution.status,
        started.elapsed().as_secs()
    ));

    let report = RunReport {
        images: items_of(&execution)?,
        errors,
    };
    crate::output::print_report(args.format, &report, render_report)?;
    if execution.status == ExecutionStatus::Failed && report.count(ImageStatus::Failed) == 0 {
        anyhow::bail!(
            "the execution failed: {}: {}",
            execution.error.as_deref().unwrap_or("no error"),
            execution.cause.as_deref().unwrap_or("no cause")
        );
    }
    Ok(
        if execution.status == ExecutionStatus::Succeeded && report.all_ok() {
            Outcome::Success
        } else {
            Outcome::PartialFailure
        },
    )
}

/// The entries to submit (as written) and the invalid ones, checked as `pull`/`build` would.
fn valid_entries(
    text: &str,
    builder: bool,
) -> Result<(Vec<Value>, Vec<EntryError>), omx_core::manifest::ManifestFileError> {
    if builder {
        let parsed = parse_build_manifest(text)?;
        let entries = parsed
            .entries
            .iter()
            .map(
                |e| serde_json::json!({"source_uri": e.source_uri, "target_image": e.target_image}),
            )
            .collect();
        return Ok((entries, parsed.errors));
    }
    let parsed = parse_pull_manifest(text)?;
    let placeholder = TargetRegistry::Ecr {
        account: None,
        region: None,
    };
    let plan = plan_pull(&parsed.entries, &NamespaceTable::builtin(), &placeholder);
    let mut errors = parsed.errors;
    errors.extend(plan.errors);
    errors.sort_by_key(|e| e.index);
    let entries = plan
        .images
        .iter()
        .map(|image| Value::String(image.input.clone()))
        .collect();
    Ok((entries, errors))
}

/// Every item's result: all of them from a succeeded execution's output, the failed ones from a
/// failed execution's cause (`N of M image(s) failed: [...]`).
fn items_of(execution: &Execution) -> anyhow::Result<Vec<ImageReport>> {
    let items: Vec<Value> = match execution.status {
        ExecutionStatus::Succeeded => {
            let output: Value = serde_json::from_str(execution.output.as_deref().unwrap_or("{}"))?;
            ["images", "builds"]
                .iter()
                .find_map(|key| output[key].as_array().cloned())
                .unwrap_or_default()
        }
        _ => execution
            .cause
            .as_deref()
            .and_then(|cause| cause.split_once(": ").map(|(_, list)| list))
            .and_then(|list| serde_json::from_str::<Vec<Value>>(list).ok())
            .unwrap_or_default(),
    };
    Ok(items.iter().map(item_report).collect())
}

fn item_report(item: &Value) -> ImageReport {
    let text = |key: &str| item[key].as_str().unwrap_or_default().to_string();
    let input = ["image", "target_image"]
        .iter()
        .map(|key| text(key))
        .find(|value| !value.is_empty())
        .unwrap_or_default();
    ImageReport {
        source: ["image", "source_uri"]
            .iter()
            .map(|key| text(key))
            .find(|value| !value.is_empty())
            .unwrap_or_default(),
        input,
        target: text("target"),
        digest: item["digest"].as_str().and_then(|d| d.parse().ok()),
        status: serde_json::from_value(item["status"].clone()).unwrap_or(ImageStatus::Failed),
        message: text("message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_come_from_the_output_or_the_failure_cause() {
        let succeeded = Execution {
            arn: "arn".into(),
            status: ExecutionStatus::Succeeded,
            output: Some(json!({"images": [{"image": "ubuntu:20.04", "status": "SKIPPED",
                "target": "1.dkr/x:1", "digest": null, "message": "already present", "too_large": false}],
                "total": 1}).to_string()),
            error: None,
            cause: None,
        };
        let items = items_of(&succeeded).unwrap();
        assert_eq!(items[0].input, "ubuntu:20.04");
        assert_eq!(items[0].status, ImageStatus::Skipped);

        let failed = Execution {
            arn: "arn".into(),
            status: ExecutionStatus::Failed,
            output: None,
            error: Some("OmxImagesFailed".into()),
            cause: Some(format!(
                "1 of 3 image(s) failed: {}",
                json!([{"image": "x:1",
                "status": "FAILED", "target": null, "digest": null, "message": "does not exist"}])
            )),
        };
        let items = items_of(&failed).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].status, ImageStatus::Failed);
        assert_eq!(items[0].message, "does not exist");
    }

    #[test]
    fn invalid_entries_are_reported_and_left_out() {
        let (entries, errors) = valid_entries(
            r#"{"manifest": ["ubuntu:20.04", "Bad", "ubuntu:20.04"]}"#,
            false,
        )
        .unwrap();
        assert_eq!(entries, vec![json!("ubuntu:20.04")]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].index, 1);
        let (entries, errors) = valid_entries(
            r#"{"manifest": [{"source_uri": "s3://b/x/", "target_image": "x:1"}, {"x": 1}]}"#,
            true,
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(errors[0].index, 1);
    }
}

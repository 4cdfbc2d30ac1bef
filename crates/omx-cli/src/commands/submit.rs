//! `omx-ecr-helper submit`: run a manifest on the deployed serverless stack and follow it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use omx_aws::{Execution, ExecutionStatus, StepFunctions};
use omx_core::excerpt::excerpt;
use omx_core::manifest_file::{parse_build_manifest, parse_pull_manifest, EntryError};
use omx_core::namespace::NamespaceTable;
use omx_core::pull_plan::{plan_pull, TargetRegistry};
use omx_core::report::{ImageReport, ImageStatus, RunReport};
use omx_core::state_machine::{
    failed_items_in_cause, results_in_output, BuildItem, ExecutionInput, ItemResult, ManifestItem,
};

use crate::args::read_input_file;
use crate::exit::{Outcome, UnusableInput};
use crate::output::Format;
use crate::render::image_report::render_report;

/// The state machines the stack deploys (infra/).
const PULLER: &str = "omx-container-puller";
const BUILDER: &str = "omx-container-builder";

/// Start executions of the deployed state machine with a manifest and follow them to the end.
///
/// `omx-container-puller` takes the pull manifest, `omx-container-builder` (with --builder) the
/// build manifest. Invalid entries are reported and left out; the rest is submitted in batches of
/// --batch-size entries, one execution each, all followed at once. The report is the one `pull`
/// prints, every entry in manifest order. Exit 0: every execution succeeded; 1: one failed or
/// some entries were invalid; 2: unusable input.
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

    /// Entries per execution. Step Functions caps an execution's input and output at 256 KiB and
    /// each entry's result takes about 300 bytes, so larger manifests are split.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=800))]
    pub batch_size: u64,

    #[command(flatten)]
    pub aws: crate::args::AwsArgs,

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

/// The state of the deployed state machines (infra/lib/manifest-state-machine.ts) whose output
/// holds every item's result before the execution succeeds or fails.
const RESULTS_STATE: &str = "Check Results";

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

    let context = args.aws.load().await?;
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
    let say = |line: &str| {
        if !args.quiet {
            eprintln!("{line}");
        }
    };
    let batches: Vec<&[ManifestItem]> = entries.chunks(args.batch_size as usize).collect();
    // One submission's executions share a prefix, so they are easy to find in the console.
    let submission = format!(
        "omx-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        std::process::id()
    );
    let mut executions = Vec::with_capacity(batches.len());
    for (number, batch) in batches.iter().enumerate() {
        let input = serde_json::to_string(&ExecutionInput {
            manifest: batch.to_vec(),
        })?;
        let name = format!("{submission}-{}of{}", number + 1, batches.len());
        let arn = step_functions.start(&state_machine, &name, &input).await?;
        say(&format!("started {arn} ({} entries)", batch.len()));
        executions.push(arn);
    }

    let started = Instant::now();
    let mut ended: Vec<Option<Execution>> = vec![None; executions.len()];
    loop {
        for (arn, slot) in executions.iter().zip(ended.iter_mut()) {
            if slot.is_none() {
                let execution = step_functions.describe(arn).await?;
                if execution.status != ExecutionStatus::Running {
                    say(&format!(
                        "{arn}: {:?} after {}s",
                        execution.status,
                        started.elapsed().as_secs()
                    ));
                    *slot = Some(execution);
                }
            }
        }
        let running = ended.iter().filter(|slot| slot.is_none()).count();
        if running == 0 {
            break;
        }
        say(&format!(
            "running: {running} of {} execution(s) ({}s)",
            executions.len(),
            started.elapsed().as_secs()
        ));
        tokio::time::sleep(Duration::from_secs(args.poll_seconds)).await;
    }

    let mut images = Vec::with_capacity(entries.len());
    for (execution, batch) in ended.into_iter().flatten().zip(&batches) {
        let results_output = match execution.status {
            ExecutionStatus::Succeeded => None,
            _ => {
                step_functions
                    .last_output_of_state(&execution.arn, RESULTS_STATE)
                    .await?
            }
        };
        images.extend(batch_reports(&execution, results_output.as_deref(), batch));
    }
    let all_succeeded = images.len() == entries.len()
        && images
            .iter()
            .all(|image| image.status != ImageStatus::Failed);
    let report = RunReport { images, errors };
    crate::output::print_report(args.format, &report, render_report)?;
    Ok(if all_succeeded && report.all_ok() {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

/// One report per entry of `batch` from its execution: every item's result from the output
/// of a succeeded execution, or from `results_output` (the results state's output) of one that
/// failed, else the failed items its cause lists. Entries no result speaks for (the execution
/// failed before its results, or was stopped) are FAILED with the execution's error.
fn batch_reports(
    execution: &Execution,
    results_output: Option<&str>,
    batch: &[ManifestItem],
) -> Vec<ImageReport> {
    let items = match execution.status {
        ExecutionStatus::Succeeded => execution.output.as_deref().and_then(results_in_output),
        _ => results_output
            .and_then(results_in_output)
            .or_else(|| execution.cause.as_deref().and_then(failed_items_in_cause)),
    }
    .unwrap_or_default();
    let mut reports: Vec<ImageReport> = items.iter().map(ItemResult::report).collect();
    let reported: HashSet<String> = reports.iter().map(|report| report.input.clone()).collect();
    let unreported: Vec<String> = batch
        .iter()
        .map(ManifestItem::input)
        .filter(|input| !reported.contains(*input))
        .map(str::to_string)
        .collect();
    if !unreported.is_empty() {
        let why = format!(
            "execution {} ended {:?}: {}: {}",
            execution.arn,
            execution.status,
            execution.error.as_deref().unwrap_or("no error"),
            execution.cause.as_deref().unwrap_or("no cause")
        );
        let why = excerpt(&why).into_owned();
        reports.extend(unreported.into_iter().map(|input| ImageReport {
            source: input.clone(),
            input,
            target: String::new(),
            digest: None,
            status: ImageStatus::Failed,
            message: why.clone(),
            bytes_copied: None,
        }));
    }
    // Back in manifest order (the results of a failed execution list only some entries).
    let position: HashMap<String, usize> = batch
        .iter()
        .enumerate()
        .map(|(position, entry)| (entry.input().to_string(), position))
        .collect();
    reports.sort_by_key(|report| position.get(&report.input).copied().unwrap_or(usize::MAX));
    reports
}

/// The entries to submit (as written) and the invalid ones, checked as `pull`/`build` would.
fn valid_entries(
    text: &str,
    builder: bool,
) -> Result<(Vec<ManifestItem>, Vec<EntryError>), omx_core::manifest_file::ManifestFileError> {
    if builder {
        let parsed = parse_build_manifest(text)?;
        let entries = parsed
            .entries
            .iter()
            .map(|e| {
                ManifestItem::Build(BuildItem {
                    source_uri: e.source_uri.clone(),
                    target_image: e.target_image.clone(),
                })
            })
            .collect();
        return Ok((entries, parsed.errors));
    }
    let parsed = parse_pull_manifest(text)?;
    let placeholder = TargetRegistry::Ecr {
        account: None,
        region: None,
        endpoint: Default::default(),
    };
    let plan = plan_pull(&parsed.entries, &NamespaceTable::builtin(), &placeholder);
    let mut errors = parsed.errors;
    errors.extend(plan.errors);
    errors.sort_by_key(|e| e.index);
    let entries = plan
        .images
        .iter()
        .map(|image| ManifestItem::Image(image.input.clone()))
        .collect();
    Ok((entries, errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn execution(
        status: ExecutionStatus,
        output: Option<Value>,
        cause: Option<String>,
    ) -> Execution {
        Execution {
            arn: "arn:aws:states:us-east-1:123456789012:execution:omx-container-puller:1".into(),
            status,
            output: output.map(|output| output.to_string()),
            error: (status != ExecutionStatus::Succeeded).then(|| "OmxImagesFailed".into()),
            cause,
        }
    }

    fn images(references: &[&str]) -> Vec<ManifestItem> {
        references
            .iter()
            .map(|reference| ManifestItem::Image(reference.to_string()))
            .collect()
    }

    fn result(image: &str, status: &str, message: &str) -> Value {
        json!({"image": image, "status": status, "target": null, "digest": null,
               "message": message, "too_large": false})
    }

    #[test]
    fn a_succeeded_execution_reports_every_entry_from_its_output() {
        let batch = images(&["ubuntu:20.04", "quay.io/x/y:1"]);
        let output = json!({"images": [result("ubuntu:20.04", "SKIPPED", "already present"),
            result("quay.io/x/y:1", "SUCCEEDED", "copied")], "total": 2});
        let reports = batch_reports(
            &execution(ExecutionStatus::Succeeded, Some(output), None),
            None,
            &batch,
        );
        let statuses: Vec<_> = reports
            .iter()
            .map(|r| (r.input.as_str(), r.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("ubuntu:20.04", ImageStatus::Skipped),
                ("quay.io/x/y:1", ImageStatus::Succeeded)
            ]
        );
    }

    #[test]
    fn a_failed_execution_reports_every_entry_from_its_results_state_else_its_cause() {
        let batch = images(&["a:1", "b:1", "c:1"]);
        let cause = format!(
            "1 of 3 image(s) failed: {}",
            json!([result("b:1", "FAILED", "does not exist")])
        );
        let failed = execution(ExecutionStatus::Failed, None, Some(cause));
        let results_state = json!({"images": [result("a:1", "SUCCEEDED", "copied"),
            result("b:1", "FAILED", "does not exist"), result("c:1", "SKIPPED", "already present")],
            "total": 3, "any_failed": true});
        let reports = batch_reports(&failed, Some(&results_state.to_string()), &batch);
        let statuses: Vec<_> = reports.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                ImageStatus::Succeeded,
                ImageStatus::Failed,
                ImageStatus::Skipped
            ]
        );
        assert_eq!(reports[1].message, "does not exist");

        // Without the history, the cause names the failed entry; the others cannot be
        // vouched for and are reported failed with the execution's error.
        let reports = batch_reports(&failed, None, &batch);
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[1].message, "does not exist");
        assert!(reports.iter().all(|r| r.status == ImageStatus::Failed));
        assert!(
            reports[0].message.contains("OmxImagesFailed"),
            "{}",
            reports[0].message
        );
    }

    #[test]
    fn entries_of_an_execution_stopped_before_its_results_fail_with_its_error() {
        let batch = [ManifestItem::Build(BuildItem {
            source_uri: "s3://b/x/".into(),
            target_image: "x:1".into(),
        })];
        let aborted = Execution {
            status: ExecutionStatus::Aborted,
            error: None,
            ..execution(ExecutionStatus::Aborted, None, None)
        };
        let reports = batch_reports(&aborted, None, &batch);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].input, "x:1");
        assert_eq!(reports[0].status, ImageStatus::Failed);
        assert!(
            reports[0].message.contains("ended Aborted"),
            "{}",
            reports[0].message
        );
    }

    #[test]
    fn invalid_entries_are_reported_and_left_out() {
        let (entries, errors) = valid_entries(
            r#"{"manifest": ["ubuntu:20.04", "Bad", "ubuntu:20.04"]}"#,
            false,
        )
        .unwrap();
        assert_eq!(entries, images(&["ubuntu:20.04"]));
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

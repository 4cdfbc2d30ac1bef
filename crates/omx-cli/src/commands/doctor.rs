//! `omx-ecr-helper doctor`: is this machine ready for `pull`? Each line is one thing the main job
//! needs, passed or failed, and a failure says what fixes it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use omx_aws::Ecr;
use omx_core::namespace::{Method, NamespaceTable};
use omx_core::pull_plan::{plan_pull, PlannedImage, TargetRegistry};
use omx_core::report::error_chain;
use omx_registry::{ClientConfig, DockerConfigCredentials, RegistryClient};
use serde::Serialize;

use crate::args::read_input_file;
use crate::args::RegistryAccessArgs;
use crate::exit::{Outcome, UnusableInput};
use crate::output::Format;
use crate::table;

/// Check what `pull` needs on this machine, and say how to fix what is missing.
///
/// AWS region and credentials (STS GetCallerIdentity), access to the ECR registry
/// (GetAuthorizationToken), the pull-through-cache rules the manifest's images need, that each
/// upstream registry of the manifest answers, and that the Docker config is readable. Only read
/// calls are made. Permissions beyond these calls are not simulated: a call `pull` is denied
/// names the IAM action and the statement that allows it. Exit 0: all passed; 1: some failed.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// A pull manifest: its upstream registries and pull-through-cache rules are checked too.
    pub manifest: Option<PathBuf>,

    /// Extra namespace rules (JSON), as for `pull`.
    #[arg(long, value_name = "FILE")]
    pub namespaces: Option<PathBuf>,

    #[command(flatten)]
    pub aws: crate::args::AwsArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    #[command(flatten)]
    pub access: RegistryAccessArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    Pass,
    Fail,
    /// Not checked: what it needs failed above, or nothing asks for it.
    Skip,
}

/// One line of the report: the detail of a failure ends with its fix.
#[derive(Debug, Serialize)]
struct Line {
    check: String,
    status: Status,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    checks: Vec<Line>,
}

impl Report {
    fn add(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.checks.push(Line {
            check: check.into(),
            status,
            detail: detail.into(),
        });
    }
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<Outcome> {
    let images = match &args.manifest {
        Some(path) => planned_images(path, args.namespaces.as_deref())?,
        None => Vec::new(),
    };
    let mut report = Report { checks: Vec::new() };
    let ecr = check_aws(&args, &mut report).await;
    check_pull_through_cache(ecr.as_ref(), &images, &mut report).await;
    check_upstreams(&args, &images, &mut report).await?;
    match DockerConfigCredentials::from_environment() {
        Ok(_) => report.add("docker config", Status::Pass, "readable, or absent"),
        Err(error) => report.add(
            "docker config",
            Status::Fail,
            format!(
                "{}: fix the file, or set DOCKER_CONFIG to a folder with a valid config.json",
                error_chain(&error)
            ),
        ),
    }

    let failed = report.checks.iter().any(|line| line.status == Status::Fail);
    crate::output::print_report(args.format, &report, render)?;
    Ok(if failed {
        Outcome::PartialFailure
    } else {
        Outcome::Success
    })
}

/// The manifest's images, planned for an ECR target so each knows whether it needs a
/// pull-through-cache rule (the account does not change that, so none is asked for).
fn planned_images(
    path: &std::path::Path,
    namespaces: Option<&std::path::Path>,
) -> anyhow::Result<Vec<PlannedImage>> {
    let mut table = NamespaceTable::builtin();
    if let Some(namespaces) = namespaces {
        table = table
            .with_user_rules(&read_input_file(namespaces)?)
            .map_err(|e| UnusableInput(format!("{}: {e}", namespaces.display())))?;
    }
    let text = read_input_file(path)?;
    let entries = omx_core::manifest_file::parse_pull_manifest(&text)
        .map_err(|e| UnusableInput(format!("{}: {e}", path.display())))?;
    let registry = TargetRegistry::Ecr {
        account: Some("000000000000".to_string()),
        region: Some("us-east-1".to_string()),
        endpoint: Default::default(),
    };
    Ok(plan_pull(&entries.entries, &table, &registry).images)
}

/// Region, credentials and ECR registry access; the ECR client once they all pass.
async fn check_aws(args: &DoctorArgs, report: &mut Report) -> Option<Ecr> {
    let context = match args.aws.load().await {
        Ok(context) => context,
        Err(error) => {
            report.add("AWS region", Status::Fail, error.to_string());
            report.add("AWS credentials", Status::Skip, "needs a region");
            report.add("ECR access", Status::Skip, "needs a region");
            return None;
        }
    };
    report.add("AWS region", Status::Pass, context.region());
    match context.account_id().await {
        Ok(account) => report.add(
            "AWS credentials",
            Status::Pass,
            format!("account {account}"),
        ),
        Err(error) => {
            report.add("AWS credentials", Status::Fail, error.to_string());
            report.add("ECR access", Status::Skip, "needs credentials");
            return None;
        }
    }
    let ecr = context.ecr();
    match ecr.authorization_token().await {
        Ok(_) => report.add("ECR access", Status::Pass, "registry token issued"),
        Err(error) => {
            report.add("ECR access", Status::Fail, error.to_string());
            return None;
        }
    }
    Some(ecr)
}

/// The pull-through-cache rule of each prefix the manifest's images are primed through.
async fn check_pull_through_cache(ecr: Option<&Ecr>, images: &[PlannedImage], report: &mut Report) {
    let mut prefixes: Vec<&str> = images
        .iter()
        .filter(|image| image.method == Method::PullThroughCache)
        .filter_map(|image| image.target_repository.split('/').next())
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    for prefix in prefixes {
        let check = format!("pull-through cache {prefix}");
        let Some(ecr) = ecr else {
            report.add(check, Status::Skip, "needs ECR access");
            continue;
        };
        match ecr.pull_through_cache_rule(prefix).await {
            Ok(Some(rule)) => {
                report.add(check, Status::Pass, format!("caches {}", rule.upstream_url))
            }
            Ok(None) => report.add(
                check,
                Status::Fail,
                format!(
                    "no rule for prefix {prefix}: run `omx-ecr-helper setup` (pull copies these \
                     images instead until then)"
                ),
            ),
            Err(error) => report.add(check, Status::Fail, error.to_string()),
        }
    }
}

/// One manifest lookup per upstream registry of the manifest, tried once.
async fn check_upstreams(
    args: &DoctorArgs,
    images: &[PlannedImage],
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut first_per_registry: Vec<&PlannedImage> = Vec::new();
    for image in images {
        if !first_per_registry
            .iter()
            .any(|seen| seen.source.domain() == image.source.domain())
        {
            first_per_registry.push(image);
        }
    }
    if first_per_registry.is_empty() {
        return Ok(());
    }
    let mut config: ClientConfig = args.access.client_config();
    config.retry.max_attempts = 1;
    config.credentials = Arc::new(DockerConfigCredentials::from_environment()?);
    let client = RegistryClient::new(config)?;
    for image in first_per_registry {
        let check = format!("upstream {}", image.source.domain());
        match client.head_manifest(&image.source).await {
            Ok(Some(_)) => report.add(check, Status::Pass, format!("{} found", image.source)),
            Ok(None) => report.add(
                check,
                Status::Fail,
                format!(
                    "answers, but {} does not exist: check the manifest entry",
                    image.source
                ),
            ),
            Err(error) => report.add(
                check,
                Status::Fail,
                format!(
                    "{}: check the network, a proxy, or the registry's credentials (docker login)",
                    error_chain(&error)
                ),
            ),
        }
    }
    Ok(())
}

fn render(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|line| {
            let status = match line.status {
                Status::Pass => "ok",
                Status::Fail => "FAILED",
                Status::Skip => "skipped",
            };
            vec![line.check.clone(), status.to_string(), line.detail.clone()]
        })
        .collect();
    let mut out = table::render(&["CHECK", "STATUS", "DETAIL"], &rows);
    out.push_str(
        "\nnot checked: IAM permissions beyond these calls (a call pull is denied names the IAM \
         action and the statement that allows it)\n",
    );
    out
}

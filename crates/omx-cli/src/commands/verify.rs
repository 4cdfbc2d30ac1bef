//! `omx-ecr-helper verify`: is every image of a manifest ready for HealthOmics?

use clap::Args;
use omx_core::registry_map::ContainerRegistryMap;
use omx_puller::{
    check_registry_map, CheckStatus, Fix, MapReport, TargetOptions, Verifier, VerifyReport,
};
use omx_registry::RegistryClient;
use serde::Serialize;

use crate::aws_args::AwsTargetArgs;
use crate::copy::RegistryAccessArgs;
use crate::exit::{Outcome, UnusableInput};
use crate::plan::{read_input_file, shown_path, Format, PullManifestArgs};
use crate::pull::target_client_config;
use crate::table;

/// Check that every image of a manifest is ready for HealthOmics, changing nothing.
///
/// For each image: it is in the private registry, or a pull-through-cache rule of its prefix will
/// fetch it on first pull; HealthOmics may pull it (its repository policy, or for an image not
/// cached yet the creation template of its prefix and the registry policy statement letting
/// HealthOmics import into it); it has a linux/amd64 variant (an index's
/// children, or a single image's config); and it is in the region the workflows run in
/// (--region, else the target's). An image whose strategy is native (see --strategy) is not
/// looked for in ECR: HealthOmics fetches it on first use, through what --registry-map checks.
/// Each failed check says why and what fixes it. Exit 0: all passed; 1: some check failed or an
/// entry is invalid; 2: unusable input.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub input: PullManifestArgs,

    /// Region (where HealthOmics workflows run, checked for every image), profile, ECR
    /// registry endpoint.
    #[command(flatten)]
    pub aws: AwsTargetArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Also check a workflow's containerRegistryMap (as CreateWorkflow takes it, or the
    /// --output-map file of pull) against the region: every registry mapping has the
    /// pull-through cache rule of its prefix caching its upstream, or, with a credentialArn, that
    /// secret exists; and every image of the manifest is reached by some mapping.
    #[arg(long, value_name = "FILE")]
    pub registry_map: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub access: RegistryAccessArgs,
}

/// What `verify` reports: the images' checks, and the registry map's when one was given.
#[derive(Serialize)]
pub(crate) struct Verified {
    #[serde(flatten)]
    pub(crate) report: VerifyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) registry_map: Option<MapReport>,
}

/// Reads --registry-map: a containerRegistryMap, or an object holding one under that key.
fn read_registry_map(path: &std::path::Path) -> anyhow::Result<ContainerRegistryMap> {
    let unusable = |why: String| UnusableInput(format!("{}: {why}", shown_path(path)));
    let value: serde_json::Value = serde_json::from_str(&read_input_file(path)?)
        .map_err(|e| unusable(format!("not valid JSON: {e}")))?;
    let map = value.get("containerRegistryMap").cloned().unwrap_or(value);
    serde_json::from_value(map)
        .map_err(|e| unusable(format!("not a containerRegistryMap: {e}")).into())
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let map = args
        .registry_map
        .as_deref()
        .map(read_registry_map)
        .transpose()?;
    let report = check(
        &args.input,
        &args.aws.target_options(),
        args.aws.region.clone(),
        &args.access,
        map.as_ref(),
    )
    .await?;
    crate::output::print_report(args.format, &report, |value| {
        let mut out = render(&value.report, &FixCommands::of(&args));
        if let Some(map) = &value.registry_map {
            out.push_str(&render_map(map));
        }
        out
    })?;
    let map_passed = report
        .registry_map
        .as_ref()
        .is_none_or(MapReport::all_passed);
    Ok(if report.report.all_passed() && map_passed {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

/// Checks every image of the manifest `input` names. The registry is looked at in its own
/// region; a `workflow_region` that differs is where workflows run, which the region check then
/// reports for every image.
pub async fn check(
    input: &PullManifestArgs,
    options: &TargetOptions,
    workflow_region: Option<String>,
    access: &RegistryAccessArgs,
    map: Option<&ContainerRegistryMap>,
) -> anyhow::Result<Verified> {
    let (table, target, plan, _) = input.resolve_and_plan(options).await?;
    let registry_map = match (map, &target.ecr, &target.secrets) {
        (None, _, _) => None,
        (Some(map), Some(ecr), Some(secrets)) => {
            Some(check_registry_map(ecr, secrets, map, &plan, &table).await)
        }
        (Some(_), _, _) => {
            return Err(UnusableInput(
                "--registry-map is checked against ECR: give --registry ecr (or \
                 ecr://ACCOUNT/REGION)"
                    .to_string(),
            )
            .into())
        }
    };
    let client = RegistryClient::new(target_client_config(&target, None, access)?)?;
    let verifier = Verifier::new(client, target, table, workflow_region);
    Ok(Verified {
        report: verifier.verify(&plan).await,
        registry_map,
    })
}

/// The commands that fix failed checks, spelled for the input this run was given.
pub(crate) struct FixCommands {
    /// The manifest (or `--single IMAGE`) and the options that decide the private names.
    input: String,
    /// `--region`/`--profile` as given.
    aws: String,
}

impl FixCommands {
    fn of(args: &VerifyArgs) -> FixCommands {
        FixCommands::for_input(
            &args.input,
            args.aws.profile.as_deref(),
            args.aws.region.as_deref(),
        )
    }

    /// The fixes for `input`, with `--profile`/`--region` as given.
    pub(crate) fn for_input(
        input_args: &PullManifestArgs,
        profile: Option<&str>,
        region: Option<&str>,
    ) -> FixCommands {
        let mut input = match (&input_args.single, &input_args.manifest) {
            (Some(image), _) => format!("--single {}", shell_word(image)),
            (None, Some(path)) => shell_word(&path.display().to_string()),
            (None, None) => String::new(),
        };
        if let Some(path) = &input_args.namespaces {
            input.push_str(&format!(
                " --namespaces {}",
                shell_word(&path.display().to_string())
            ));
        }
        let mut aws = String::new();
        if let Some(profile) = profile {
            aws.push_str(&format!(" --profile {}", shell_word(profile)));
        }
        let mut fixes = FixCommands { input, aws };
        if let Some(region) = region {
            fixes
                .aws
                .push_str(&format!(" --region {}", shell_word(region)));
        }
        fixes
    }

    fn command(&self, fix: &Fix) -> String {
        match fix {
            Fix::Pull => format!("omx-ecr-helper pull {}{}", self.input, self.aws),
            Fix::PullInto { region } => format!(
                "omx-ecr-helper pull {} --registry ecr --region {}",
                self.input,
                shell_word(region)
            ),
            Fix::Setup => format!("omx-ecr-helper setup{}", self.aws),
            Fix::Amd64Image => {
                "use an image with a linux/amd64 variant, or rebuild it for linux/amd64".to_string()
            }
        }
    }
}

/// `word` as one shell word: quoted when it holds anything but plain characters.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=+,".contains(c));
    if plain {
        word.to_string()
    } else {
        // Escaped first: a path holding an escape sequence must not reach the terminal raw.
        format!(
            "'{}'",
            omx_core::excerpt::escape(word).replace('\'', r"'\''")
        )
    }
}

fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Skip => "-",
    }
}

fn render_map(map: &MapReport) -> String {
    let mut rows: Vec<Vec<String>> = map
        .mappings
        .iter()
        .map(|m| {
            vec![
                format!(
                    "{} -> {}/",
                    m.upstream_registry_url, m.ecr_repository_prefix
                ),
                status_word(m.status).to_string(),
                m.reason.clone(),
            ]
        })
        .collect();
    rows.extend(map.images.iter().map(|image| {
        vec![
            image.input.clone(),
            status_word(image.status).to_string(),
            image.reason.clone(),
        ]
    }));
    let failed = map
        .mappings
        .iter()
        .map(|m| m.status)
        .chain(map.images.iter().map(|i| i.status))
        .filter(|status| *status == CheckStatus::Fail)
        .count();
    format!(
        "\n{}\nregistry map: {} mapping(s), {} image(s), {failed} failed\n",
        table::render(&["MAPPING / IMAGE", "RESULT", "REASON"], &rows),
        map.mappings.len(),
        map.images.len()
    )
}

pub(crate) fn render(report: &VerifyReport, fixes: &FixCommands) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for image in &report.images {
        for (position, check) in image.checks.iter().enumerate() {
            let first = if position == 0 {
                image.target.clone()
            } else {
                String::new()
            };
            rows.push(vec![
                first,
                check.kind.to_string(),
                status_word(check.status).to_string(),
                check.reason.clone(),
            ]);
            if let Some(fix) = &check.fix {
                let fix = format!("fix: {}", fixes.command(fix));
                rows.push(vec![String::new(), String::new(), String::new(), fix]);
            }
        }
    }
    let mut out = table::render(&["IMAGE", "CHECK", "RESULT", "REASON"], &rows);
    for error in &report.errors {
        out.push_str(&format!("invalid  {error}\n"));
    }
    let ready = report.images.iter().filter(|image| image.passed()).count();
    out.push_str(&format!(
        "\n{ready} of {} image(s) ready for HealthOmics, {} invalid entr{}\n",
        report.images.len(),
        report.errors.len(),
        if report.errors.len() == 1 { "y" } else { "ies" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: VerifyArgs,
    }

    #[test]
    fn fixes_name_the_input_as_given() {
        let harness = Harness::try_parse_from([
            "verify",
            "my manifest.json",
            "--namespaces",
            "ns.json",
            "--region",
            "eu-west-1",
            "--profile",
            "lab",
        ])
        .unwrap();
        let fixes = FixCommands::of(&harness.args);
        assert_eq!(
            fixes.command(&Fix::Pull),
            "omx-ecr-helper pull 'my manifest.json' --namespaces ns.json --profile lab --region eu-west-1"
        );
        assert_eq!(
            fixes.command(&Fix::Setup),
            "omx-ecr-helper setup --profile lab --region eu-west-1"
        );
        assert_eq!(
            fixes.command(&Fix::PullInto {
                region: "us-east-1".into()
            }),
            "omx-ecr-helper pull 'my manifest.json' --namespaces ns.json --registry ecr --region us-east-1"
        );
        let single = Harness::try_parse_from(["verify", "--single", "ubuntu:22.04"]).unwrap();
        assert_eq!(
            FixCommands::of(&single.args).command(&Fix::Pull),
            "omx-ecr-helper pull --single ubuntu:22.04"
        );
    }
}

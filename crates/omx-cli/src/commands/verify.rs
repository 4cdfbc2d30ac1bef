//! `omx-ecr-helper verify`: is every image of a manifest ready for HealthOmics?

use clap::Args;
use omx_core::registry_map::ContainerRegistryMap;
use omx_puller::MapReport;

use crate::args::{
    read_input_file, shown_path, AwsTargetArgs, PullManifestArgs, RegistryAccessArgs, StrategyArgs,
};
use crate::exit::{Outcome, UnusableInput};
use crate::output::Format;
use crate::render::verify_report::{render, render_map, FixCommands};
use crate::steps::verify::check;

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

    #[command(flatten)]
    pub strategy: StrategyArgs,

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

/// Reads --registry-map: a containerRegistryMap, or an object holding one under that key.
fn read_registry_map(path: &std::path::Path) -> anyhow::Result<ContainerRegistryMap> {
    let unusable = |why: String| UnusableInput(format!("{}: {why}", shown_path(path)));
    let value: serde_json::Value = serde_json::from_str(&read_input_file(path)?)
        .map_err(|e| unusable(format!("not valid JSON: {e}")))?;
    let map = value.get("containerRegistryMap").cloned().unwrap_or(value);
    serde_json::from_value(map)
        .map_err(|e| unusable(format!("not a containerRegistryMap: {e}")).into())
}

/// The commands that fix failed checks, for the input `args` name.
fn fix_commands(args: &VerifyArgs) -> FixCommands {
    FixCommands::for_input(&args.input, args.aws.profile(), args.aws.region())
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let map = args
        .registry_map
        .as_deref()
        .map(read_registry_map)
        .transpose()?;
    let report = check(
        &args.input,
        &args.strategy,
        &args.aws.target_options(),
        args.aws.region().map(str::to_string),
        &args.access,
        map.as_ref(),
    )
    .await?;
    crate::output::print_report(args.format, &report, |value| {
        let mut out = render(&value.report, &fix_commands(&args));
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use omx_puller::Fix;

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
        let fixes = fix_commands(&harness.args);
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
            fix_commands(&single.args).command(&Fix::Pull),
            "omx-ecr-helper pull --single ubuntu:22.04"
        );
    }
}

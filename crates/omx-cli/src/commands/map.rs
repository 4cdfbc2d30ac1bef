//! `omx-ecr-helper map`: how a workflow reaches the private images, worked out offline.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use omx_aws::AwsContext;
use omx_core::registry_map::{container_registry_map, OutputMap};
use omx_core::workflow_map::{private_uris, rewrite_wdl_inputs, ImageLookup};
use omx_puller::discover_registry_secrets;
use omx_workflow::scan_path;

use crate::args::{read_input_file, PullManifestArgs, StrategyArgs};
use crate::exit::{Outcome, UnusableInput};
use crate::steps::map::nextflow_config;

/// Write how a workflow reaches the private images of a manifest, without any network access
/// (unless --from-region asks the region for its pull-through cache rules and registry secrets).
///
/// The private URIs are the ones `pull` uses; with `--registry ecr` and no account, they show
/// <account> and <region> placeholders (give ecr://ACCOUNT/REGION for real ones).
///
/// registry-map: the HealthOmics containerRegistryMap for CreateWorkflow
/// (--container-registry-map): a registry mapping per pull-through-cache prefix, one with the
/// credentialArn of --credential for each registry whose images are native (see --strategy),
/// and an image mapping per spelling of every copied image.
///
/// nextflow (needs --workflow): a Nextflow configuration that sets the private container of
/// every process, to give last on the command line (`nextflow run ... -c FILE`). Nextflow runs the
/// exact image string a process ends up with, and a `docker.registry` setting cannot produce the
/// private names (Docker Hub images lose `library/`, images naming a registry are never
/// rewritten). So the workflow is scanned, and each container written in a process definition
/// becomes a `withName: 'PROCESS'` setting (these outrank the definition's own `container`);
/// one set in a configuration file keeps its `withName:`/`withLabel:` selector or
/// `process.container`. Private URIs name their registry, so `docker.registry` leaves them alone.
/// Containers it cannot place (computed at run time, not in the manifest, or outside any process)
/// are listed as comments, with a warning, and the exit code is 1. A process whose container a
/// configuration `withLabel` selector overrides is set by name here, which wins over the label.
///
/// wdl-inputs: with --inputs, that WDL inputs JSON with every string naming a manifest image
/// replaced by its private URI; without, {"<image>": "<private URI>"} for every spelling in the
/// manifest.
///
/// json: every image with its private URI, and the containerRegistryMap.
#[derive(Args, Debug)]
pub struct MapArgs {
    #[command(flatten)]
    pub input: PullManifestArgs,

    #[command(flatten)]
    pub strategy: StrategyArgs,

    /// What to write.
    #[arg(long, value_enum)]
    pub format: MapFormat,

    /// The workflow (a file or directory) whose processes get their containers
    /// (--format nextflow).
    #[arg(long, value_name = "PATH")]
    pub workflow: Option<PathBuf>,

    /// A WDL inputs JSON file to rewrite (--format wdl-inputs).
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,

    /// Ask the region (the only network calls map makes, and only with this flag) for its
    /// pull-through cache rules, so that a cache mapping names the prefix of the region's rule
    /// for its upstream rather than the namespace table's, and for the secrets `setup
    /// --credential-file` keeps (omics-registry/HOST) of the registries HealthOmics copies from
    /// that no --credential names.
    #[arg(long)]
    pub from_region: bool,

    /// AWS region to ask (--from-region; default: the credential chain's region).
    #[arg(long, requires = "from_region")]
    pub region: Option<String>,

    /// AWS profile to use (--from-region).
    #[arg(long, requires = "from_region")]
    pub profile: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFormat {
    /// The HealthOmics containerRegistryMap.
    RegistryMap,
    /// A Nextflow configuration setting each process's private container.
    Nextflow,
    /// A WDL inputs file with private URIs, or an image-to-URI object.
    WdlInputs,
    /// Every image with its private URI, and the containerRegistryMap.
    Json,
}

pub async fn run(args: MapArgs) -> anyhow::Result<Outcome> {
    check_options(&args)?;
    let table = args.input.namespace_table()?;
    let mut plan = args.input.plan(&args.strategy, &args.input.registry)?;
    let mut access = args.strategy.native_access();
    if args.from_region {
        let context = AwsContext::load(args.region.clone(), args.profile.clone()).await?;
        for rule in context.ecr().pull_through_cache_rules().await? {
            access = access.with_cache_prefix(&rule.upstream_url, &rule.prefix);
        }
        let hosts = plan.images.iter().map(|image| image.source.domain());
        let (found, warnings) =
            discover_registry_secrets(&context.secrets_manager(), hosts, access).await;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        access = found;
        plan = args
            .input
            .plan_with(args.strategy.strategy, &args.input.registry, &access)?;
    }
    for error in &plan.errors {
        eprintln!("error: {error}");
    }
    let mut complete = !plan.has_errors();
    let lookup = ImageLookup::new(&plan, &table);
    let output = match args.format {
        MapFormat::RegistryMap => {
            let images: Vec<_> = plan.images.iter().collect();
            json_text(&container_registry_map(&images, &table, &access))?
        }
        MapFormat::Json => json_text(&OutputMap::planned(&plan, &table, &access))?,
        MapFormat::WdlInputs => match &args.inputs {
            Some(path) => {
                let text = read_input_file(path)?;
                let inputs: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    UnusableInput(format!(
                        "{}: not valid JSON: {e}",
                        crate::args::shown_path(path)
                    ))
                })?;
                let (rewritten, rewrites) = rewrite_wdl_inputs(&inputs, &lookup);
                if rewrites.is_empty() {
                    eprintln!(
                        "warning: no value of {} names an image of the manifest",
                        crate::args::shown_path(path)
                    );
                }
                json_text(&rewritten)?
            }
            None => json_text(&private_uris(&plan))?,
        },
        MapFormat::Nextflow => {
            let workflow = args.workflow.as_deref().expect("checked above");
            let scan = scan_path(workflow, None).map_err(|e| UnusableInput(e.to_string()))?;
            let config = nextflow_config(&scan, &lookup);
            for unplaced in &config.unplaced {
                eprintln!(
                    "warning: {} ({}) is not set: {}",
                    unplaced.image, unplaced.location, unplaced.reason
                );
            }
            complete &= config.unplaced.is_empty();
            config.render()
        }
    };
    crate::output::write_stdout(&output)?;
    Ok(if complete {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

fn check_options(args: &MapArgs) -> Result<(), UnusableInput> {
    match (args.format, &args.workflow, &args.inputs) {
        (MapFormat::Nextflow, None, _) => Err(UnusableInput(
            "--format nextflow needs --workflow PATH: the configuration sets each process's \
             container, and the workflow says which process uses which image"
                .to_string(),
        )),
        (format, Some(_), _) if format != MapFormat::Nextflow => Err(UnusableInput(
            "--workflow is for --format nextflow".to_string(),
        )),
        (format, _, Some(_)) if format != MapFormat::WdlInputs => Err(UnusableInput(
            "--inputs is for --format wdl-inputs".to_string(),
        )),
        _ => Ok(()),
    }
}

fn json_text(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

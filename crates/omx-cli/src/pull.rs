//! `omx-ecr-helper pull`: the main job. Every image of a manifest into the private registry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use omx_core::namespace::NamespaceTable;
use omx_core::plan::PullPlan;
use omx_core::registry_map::OutputMap;
use omx_core::report::{ImageReport, ImageStatus, RunReport};
use omx_core::strategy::NativeAccess;
use omx_puller::{EcrCredentials, PullOptions, Puller, ResolvedTarget};
use omx_registry::{
    ChainCredentials, ClientConfig, CopyEngine, CopyOptions, CredentialProvider,
    DockerConfigCredentials, Platform, RegistryClient, Secret, StaticCredentials,
};

use crate::aws_args::AwsTargetArgs;
use crate::blob_cache::{BlobCacheArgs, RunCache};
use crate::copy::{command_line_credential, parse_secret, RegistryAccessArgs};
use crate::exit::{Outcome, UnusableInput};
use crate::plan::{Format, PullManifestArgs};
use crate::progress::{Mode, TerminalProgress};
use crate::table;

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

/// How a pull runs, whatever gives it the manifest (`pull` reads a file, `prepare` scans a
/// workflow).
#[derive(Args, Debug, Clone)]
pub struct PullRunArgs {
    #[command(flatten)]
    pub aws: AwsTargetArgs,

    /// Re-copy tags whose upstream now points at a different digest (default: an existing tag
    /// is skipped).
    #[arg(long)]
    pub refresh: bool,

    /// Plan and check what already exists; create, copy and change nothing. Checks are tried
    /// once each; what could not be checked is said, and --output-map is written all the same.
    #[arg(long)]
    pub dry_run: bool,

    /// When a source registry's published pull limit (Docker Hub's) does not cover the plan,
    /// copy nothing and exit 1 (default: copy the images that fit, report the rest FAILED).
    #[arg(long)]
    pub strict: bool,

    /// Copy only this platform of multi-arch images (the digest then differs from upstream's
    /// index). HealthOmics runs linux/amd64.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// Blob transfers in flight at once (up to four times as many images are worked on at once:
    /// most of an image's time is spent waiting on blobs other images share).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Also copy each copied image's referrers: OCI 1.1 referrers (signatures, attestations,
    /// SBOMs naming it as their subject, from the referrers API or its sha256-<hex> fallback
    /// tag) and cosign's sha256-<hex>.sig/.att/.sbom tags; for an index, its children's too.
    /// A target without the referrers API gets the fallback tag index (merged).
    #[arg(long)]
    pub with_referrers: bool,

    /// Credentials for a non-ECR target registry (ECR uses your AWS credentials).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_secret)]
    pub dest_creds: Option<Secret>,

    #[command(flatten)]
    pub access: RegistryAccessArgs,

    #[command(flatten)]
    pub blob_cache: BlobCacheArgs,

    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// How long a dry run waits for a registry to accept a connection.
const DRY_RUN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(args: PullArgs) -> anyhow::Result<Outcome> {
    let PullRun {
        table,
        plan,
        report,
        access,
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

/// What a pull did: the plan it followed (with the namespace table that made it) and the report
/// of every image, in the plan's order.
pub struct PullRun {
    pub table: NamespaceTable,
    pub plan: PullPlan,
    pub report: RunReport,
    /// What the plan's strategies were chosen with: credentials and the region's cache rules.
    pub access: NativeAccess,
}

/// Plans the manifest `input` names and brings its images over, with progress on the terminal.
pub async fn execute(input: &PullManifestArgs, args: &PullRunArgs) -> anyhow::Result<PullRun> {
    PullSession::open(input, args).await?.run(args).await
}

/// A pull resolved and planned, with the client it runs on, before anything is brought over. A
/// command that reads the registries first (`prepare` locks tags) shares the client, so what it
/// fetched (a manifest by digest, a token, a probed base URL) is not fetched again.
pub struct PullSession {
    table: NamespaceTable,
    target: ResolvedTarget,
    plan: PullPlan,
    access: NativeAccess,
    pub client: RegistryClient,
}

impl PullSession {
    pub async fn open(input: &PullManifestArgs, args: &PullRunArgs) -> anyhow::Result<PullSession> {
        let (table, mut target, plan, access) =
            input.resolve_and_plan(&args.aws.target_options()).await?;
        // A dry run asks AWS and each registry once and moves on: nothing it finds out is worth
        // waiting through retries for, and it must stay quick when they are out of reach.
        if args.dry_run {
            target.ecr = target.ecr.as_ref().map(omx_aws::Ecr::single_attempt);
        }
        let mut client_config =
            target_client_config(&target, args.dest_creds.as_ref(), &args.access)?;
        if args.dry_run {
            client_config.retry.max_attempts = 1;
            client_config.retry.throttle_window = Duration::ZERO;
            client_config.connect_timeout = DRY_RUN_CONNECT_TIMEOUT;
        }
        Ok(PullSession {
            table,
            target,
            plan,
            access,
            client: RegistryClient::new(client_config)?,
        })
    }

    /// Plans `input` instead, against the same target with the same credentials (a manifest
    /// whose images are the same ones, such as the locked one).
    pub fn replan(mut self, input: &PullManifestArgs) -> anyhow::Result<PullSession> {
        self.plan = input.plan_with(&self.target.registry, &self.access)?;
        Ok(self)
    }

    /// Brings the plan's images over.
    pub async fn run(self, args: &PullRunArgs) -> anyhow::Result<PullRun> {
        let PullSession {
            table,
            target,
            plan,
            access,
            client,
        } = self;
        let blob_cache = RunCache::open(&args.blob_cache, args.dry_run);
        let puller = Puller::new(
            blob_cache.attach(CopyEngine::new(
                client,
                CopyOptions {
                    jobs: usize::from(args.jobs),
                    platform: args.platform.clone(),
                    mount_needs_manifest: target.ecr.is_some(),
                    ..CopyOptions::default()
                },
            )),
            target,
            PullOptions {
                refresh: args.refresh,
                dry_run: args.dry_run,
                image_concurrency: usize::from(args.jobs) * 4,
                with_referrers: args.with_referrers,
            },
        );

        let progress = TerminalProgress::new(Mode::detect(args.quiet)).without_end_lines();
        for error in &plan.errors {
            progress.println(&format!("invalid  {error}"));
        }
        let on_done = |report: &ImageReport| progress.println(&status_line(report));
        // Before anything is copied: the pulls the plan needs against what the source registries
        // say is left (HEADs only, which pull limits do not count).
        let budget = puller.plan_budget(&plan).await;
        for registry in budget.registries.iter().filter(|r| r.is_over()) {
            let prefix = if args.dry_run { "dry run: " } else { "" };
            progress.println(&format!("{prefix}{}", registry.summary(args.strict)));
        }
        let report = if args.strict && budget.is_over() && !args.dry_run {
            let reason = "not copied: --strict, and the plan needs more pulls than a source \
                      registry's pull limit has left (see the pull limit line above)";
            RunReport {
                images: plan
                    .images
                    .iter()
                    .map(|image| puller.not_brought(image, reason))
                    .inspect(|report| on_done(report))
                    .collect(),
                errors: plan.errors.clone(),
            }
        } else if args.dry_run {
            puller.run(&plan, &progress, &on_done).await
        } else {
            puller.run_within(&plan, &budget, &progress, &on_done).await
        };
        progress.finish();
        blob_cache.save();
        if args.dry_run {
            let unchecked = report
                .images
                .iter()
                .filter(|image| image.message.contains(omx_puller::COULD_NOT_CHECK))
                .count();
            if unchecked > 0 {
                progress.println(&format!(
                    "dry run: {unchecked} of {} images could not be checked (see their messages); \
                 they are planned and in the map as if they will be brought over",
                    report.images.len()
                ));
            }
        }

        Ok(PullRun {
            table,
            plan,
            report,
            access,
        })
    }
}

/// A client for a run against `target`: explicit target credentials first, then ECR's token,
/// then the Docker config (sources and upstreams).
pub(crate) fn target_client_config(
    target: &ResolvedTarget,
    dest_creds: Option<&Secret>,
    access: &RegistryAccessArgs,
) -> anyhow::Result<ClientConfig> {
    let mut providers: Vec<Arc<dyn CredentialProvider>> = Vec::new();
    if let Some(value) = dest_creds {
        if target.ecr.is_some() {
            return Err(UnusableInput(
                "--dest-creds is for non-ECR targets; ECR uses your AWS credentials".into(),
            )
            .into());
        }
        let credential = command_line_credential("dest-creds", value)?;
        providers.push(Arc::new(
            StaticCredentials::new().with(&target.api_host, credential),
        ));
    }
    if let Some(ecr) = &target.ecr {
        providers.push(Arc::new(
            EcrCredentials::new(ecr.clone(), target.ecr_hosts()).with_other_registries(),
        ));
    }
    providers.push(Arc::new(DockerConfigCredentials::from_environment()?));
    Ok(ClientConfig {
        credentials: Arc::new(ChainCredentials::new(providers)),
        ..access.client_config()
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
        .with_context(|| format!("cannot write {}", crate::plan::shown_path(path)))
}

pub(crate) fn status_word(status: ImageStatus) -> &'static str {
    match status {
        ImageStatus::Skipped => "skipped",
        ImageStatus::Succeeded => "done",
        ImageStatus::Failed => "FAILED",
        ImageStatus::Planned => "planned",
        ImageStatus::Native => "NATIVE",
    }
}

/// One image's closing line, the same for every command that reports images.
pub(crate) fn status_line(report: &ImageReport) -> String {
    format!(
        "{:<8} {} -> {}: {}",
        status_word(report.status),
        report.source,
        report.target,
        report.message
    )
}

pub(crate) fn render_report(report: &RunReport) -> String {
    let rows: Vec<Vec<String>> = report
        .images
        .iter()
        .map(|image| {
            vec![
                status_word(image.status).to_string(),
                image.target.clone(),
                image
                    .digest
                    .as_ref()
                    .map_or(String::new(), omx_core::Digest::short),
                image.message.clone(),
            ]
        })
        .collect();
    let mut out = table::render(&["STATUS", "TARGET", "DIGEST", "MESSAGE"], &rows);
    for error in &report.errors {
        out.push_str(&format!("invalid  {error}\n"));
    }
    let count = |status| report.count(status);
    out.push_str(&format!(
        "\n{} succeeded, {} skipped, {} failed, {} planned, {} native, {} invalid entr{}\n",
        count(ImageStatus::Succeeded),
        count(ImageStatus::Skipped),
        count(ImageStatus::Failed),
        count(ImageStatus::Planned),
        count(ImageStatus::Native),
        report.errors.len(),
        if report.errors.len() == 1 { "y" } else { "ies" }
    ));
    out
}

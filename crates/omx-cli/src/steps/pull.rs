//! Bringing a planned manifest's images over, with progress on the terminal.

use std::time::Duration;

use omx_core::namespace::NamespaceTable;
use omx_core::pull_plan::PullPlan;
use omx_core::report::{ImageReport, RunReport};
use omx_core::strategy::NativeAccess;
use omx_puller::{PullOptions, Puller, ResolvedTarget};
use omx_registry::{CopyEngine, CopyOptions, RegistryClient};

use crate::args::pull_manifest::StrategyArg;
use crate::args::{PullManifestArgs, PullRunArgs};
use crate::blob_cache::RunCache;
use crate::progress::{Mode, TerminalProgress};
use crate::render::image_report::status_line;

/// How long a dry run waits for a registry to accept a connection.
const DRY_RUN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a pull did: the plan it followed (with the namespace table that made it) and the report
/// of every image, in the plan's order.
pub struct PullRun {
    pub table: NamespaceTable,
    pub plan: PullPlan,
    pub report: RunReport,
    /// What the plan's strategies were chosen with: credentials and the region's cache rules.
    pub access: NativeAccess,
    /// The target the images went to, and the client that took them there (with its tokens),
    /// for a command that goes on to check them (`prepare` verifies).
    pub target: ResolvedTarget,
    pub client: RegistryClient,
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
    strategy: StrategyArg,
    access: NativeAccess,
    pub client: RegistryClient,
}

impl PullSession {
    pub async fn open(input: &PullManifestArgs, args: &PullRunArgs) -> anyhow::Result<PullSession> {
        let (table, mut target, plan, access) = input
            .resolve_and_plan(&args.strategy, &args.aws.target_options())
            .await?;
        // A dry run asks AWS and each registry once and moves on: nothing it finds out is worth
        // waiting through retries for, and it must stay quick when they are out of reach.
        if args.dry_run {
            target.ecr = target.ecr.as_ref().map(omx_aws::Ecr::single_attempt);
        }
        let mut client_config = args
            .access
            .target_client_config(&target, args.dest_creds.as_ref())?;
        if args.dry_run {
            client_config.retry.max_attempts = 1;
            client_config.retry.throttle_window = Duration::ZERO;
            client_config.connect_timeout = DRY_RUN_CONNECT_TIMEOUT;
        }
        Ok(PullSession {
            table,
            target,
            plan,
            strategy: args.strategy.strategy,
            access,
            client: RegistryClient::new(client_config)?,
        })
    }

    /// Plans `input` instead, against the same target with the same credentials (a manifest
    /// whose images are the same ones, such as the locked one).
    pub fn replan(mut self, input: &PullManifestArgs) -> anyhow::Result<PullSession> {
        self.plan = input.plan_with(self.strategy, &self.target.registry, &self.access)?;
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
            ..
        } = self;
        let blob_cache = RunCache::open(&args.blob_cache, args.dry_run);
        let puller = Puller::new(
            blob_cache.attach(CopyEngine::new(
                client.clone(),
                CopyOptions {
                    jobs: usize::from(args.jobs),
                    platform: args.platform.clone(),
                    mount_needs_manifest: target.ecr.is_some(),
                    ..CopyOptions::default()
                },
            )),
            target.clone(),
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
        let on_done = |report: &ImageReport| {
            progress.println(&status_line(report));
            blob_cache.image_done();
        };
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
            target,
            client,
        })
    }
}

//! What every command that reads a pull manifest takes: the manifest (or one image), the target
//! registry, the namespace rules and the strategy choice; and the plan they make.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use omx_core::manifest_file::{parse_pull_manifest, Entries, PullEntry};
use omx_core::namespace::NamespaceTable;
use omx_core::pull_plan::{plan_pull, PullPlan, TargetRegistry};
use omx_core::strategy::{
    choose_strategies, parse_credential_arg, NativeAccess, SecretArn, StrategyChoice,
};

use crate::args::input_file::{read_input_file, shown_path};
use crate::exit::UnusableInput;

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
    #[arg(long, default_value = "ecr", value_name = "REGISTRY",
          value_parser = crate::exit::echoless(|text: &str| text.parse::<TargetRegistry>()))]
    pub registry: TargetRegistry,

    /// A JSON file of namespace rules that extend or override the built-in table, e.g.
    /// {"rules": [{"hosts": ["community.wave.seqera.io"], "namespace": "wave"}]}
    #[arg(long, value_name = "FILE")]
    pub namespaces: Option<PathBuf>,

    /// The manifest's text, when a command made it rather than read it (`prepare` scans a
    /// workflow); `manifest` then names where it is (or would be) written, for messages.
    #[arg(skip)]
    pub made: Option<String>,
}

/// How images reach HealthOmics (`--strategy`, `--credential`): what reads a manifest and what
/// scans a workflow take alike.
#[derive(Args, Debug, Clone, Default)]
pub struct StrategyArgs {
    /// How images reach HealthOmics. auto: images of a registry HealthOmics copies from itself
    /// (community.wave.seqera.io, wave.seqera.io, nvcr.io, gcr.io, REGION-docker.pkg.dev) are
    /// left to it (native: a registry mapping with the registry's credentialArn, nothing copied)
    /// when that registry's secret is known (--credential; for pull, verify and map
    /// --from-region also the omics-registry/HOST secret `setup --credential-file` keeps), else
    /// copied; pull-through cache images are primed now; the rest are copied. copy: no image is
    /// native (what earlier versions did). native: pull-through cache images are not primed either (HealthOmics pulls them through
    /// the cache on first use); images it cannot fetch are copied, with a warning saying why.
    /// Only an ECR target has native images.
    #[arg(long, value_enum, default_value_t = StrategyArg::Auto)]
    pub strategy: StrategyArg,

    /// The Secrets Manager secret HealthOmics signs in to a registry it copies from with, as
    /// HOST=SECRET_ARN, e.g.
    /// nvcr.io=arn:aws:secretsmanager:us-east-1:111122223333:secret:omics-registry/nvcr.io-AbCdEf.
    /// Repeatable. Makes that registry's images native under --strategy auto or native, and
    /// gives its registry mapping the credentialArn.
    #[arg(long = "credential", value_name = "HOST=SECRET_ARN",
          value_parser = crate::exit::echoless(|text: &str| {
              parse_credential_arg(text).map_err(|e| format!("invalid --credential: {e}"))
          }))]
    pub credentials: Vec<(String, SecretArn)>,
}

/// `--strategy`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StrategyArg {
    #[default]
    Auto,
    Copy,
    Native,
}

impl From<StrategyArg> for StrategyChoice {
    fn from(arg: StrategyArg) -> StrategyChoice {
        match arg {
            StrategyArg::Auto => StrategyChoice::Auto,
            StrategyArg::Copy => StrategyChoice::Copy,
            StrategyArg::Native => StrategyChoice::Native,
        }
    }
}

impl StrategyArgs {
    /// The credentials given with --credential.
    pub fn native_access(&self) -> NativeAccess {
        self.credentials
            .iter()
            .fold(NativeAccess::default(), |access, (host, arn)| {
                access.with_credential(host, arn.clone())
            })
    }
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
            .map_err(|e| UnusableInput(format!("{}: {e}", shown_path(path))).into())
    }

    /// Reads and plans the manifest against `registry`, with each image's strategy chosen as
    /// `strategy` says, for the credentials of its --credential.
    pub fn plan(
        &self,
        strategy: &StrategyArgs,
        registry: &TargetRegistry,
    ) -> anyhow::Result<PullPlan> {
        self.plan_with(strategy.strategy, registry, &strategy.native_access())
    }

    /// [`PullManifestArgs::plan`] with the credentials `access` knows.
    pub fn plan_with(
        &self,
        strategy: StrategyArg,
        registry: &TargetRegistry,
        access: &NativeAccess,
    ) -> anyhow::Result<PullPlan> {
        // The rules first: a bad rule file is named before the manifest is read.
        let table = self.namespace_table()?;
        let mut plan = plan_entries(&self.entries()?, &table, registry);
        choose_strategies(&mut plan, strategy.into(), access, registry.is_ecr());
        Ok(plan)
    }
    /// The manifest's entries (or `--single`'s one) and the errors of the unusable ones.
    pub fn entries(&self) -> anyhow::Result<Entries<PullEntry>> {
        Ok(match (&self.single, &self.manifest) {
            (Some(image), _) => {
                parse_pull_manifest(&serde_json::json!({"manifest": [image]}).to_string())
                    .map_err(|e| UnusableInput(format!("--single: {e}")))?
            }
            (None, Some(path)) => {
                let text = match &self.made {
                    Some(text) => text.clone(),
                    None => read_input_file(path)?,
                };
                parse_pull_manifest(&text)
                    .map_err(|e| UnusableInput(format!("{}: {e}", shown_path(path))))?
            }
            (None, None) => unreachable!("clap requires a manifest or --single"),
        })
    }
}

/// Plans `entries` against `registry`, with the entries' own errors among the plan's.
pub fn plan_entries(
    entries: &Entries<PullEntry>,
    table: &NamespaceTable,
    registry: &TargetRegistry,
) -> PullPlan {
    let mut plan = plan_pull(&entries.entries, table, registry);
    plan.errors.extend(entries.errors.iter().cloned());
    plan.errors.sort_by_key(|e| e.index);
    plan
}

impl PullManifestArgs {
    /// Checks the manifest offline first, so bad input fails fast and before any AWS call; then
    /// resolves the target (account and region for ECR) and plans against it. The credentials
    /// are --credential's and, for the registries HealthOmics copies from that it does not name,
    /// the secrets `setup --credential-file` keeps in the target's region.
    pub async fn resolve_and_plan(
        &self,
        strategy: &StrategyArgs,
        options: &omx_puller::TargetOptions,
    ) -> anyhow::Result<(
        NamespaceTable,
        omx_puller::ResolvedTarget,
        PullPlan,
        NativeAccess,
    )> {
        let table = self.namespace_table()?;
        let offline = self.plan(strategy, &self.registry)?;
        let target = omx_puller::ResolvedTarget::resolve(&self.registry, options).await?;
        let mut access = strategy.native_access();
        if let (Some(secrets), false) = (&target.secrets, strategy.strategy == StrategyArg::Copy) {
            let hosts = offline.images.iter().map(|image| image.source.domain());
            let (found, warnings) =
                omx_puller::discover_registry_secrets(secrets, hosts, access).await;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            access = found;
        }
        let plan = self.plan_with(strategy.strategy, &target.registry, &access)?;
        Ok((table, target, plan, access))
    }
}

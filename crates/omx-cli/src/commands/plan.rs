//! `omx-ecr-helper plan`: what `pull` would do, with no network access.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use omx_core::manifest::{parse_pull_manifest, Entries, PullEntry};
use omx_core::namespace::NamespaceTable;
use omx_core::plan::{plan_pull, PullPlan, TargetRegistry};
use omx_core::strategy::{
    choose_strategies, parse_credential_arg, NativeAccess, SecretArn, StrategyChoice,
};

use crate::exit::{Outcome, UnusableInput};
use crate::table;

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

    #[command(flatten)]
    pub strategy: StrategyArgs,
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

    /// The credentials given with --credential.
    pub fn native_access(&self) -> NativeAccess {
        self.strategy
            .credentials
            .iter()
            .fold(NativeAccess::default(), |access, (host, arn)| {
                access.with_credential(host, arn.clone())
            })
    }

    /// Reads and plans the manifest against `registry`, with each image's strategy chosen for
    /// the credentials of --credential.
    pub fn plan(&self, registry: &TargetRegistry) -> anyhow::Result<PullPlan> {
        self.plan_with(registry, &self.native_access())
    }

    /// [`PullManifestArgs::plan`] with the credentials `access` knows.
    pub fn plan_with(
        &self,
        registry: &TargetRegistry,
        access: &NativeAccess,
    ) -> anyhow::Result<PullPlan> {
        // The rules first: a bad rule file is named before the manifest is read.
        let table = self.namespace_table()?;
        let mut plan = plan_entries(&self.entries()?, &table, registry);
        choose_strategies(
            &mut plan,
            self.strategy.strategy.into(),
            access,
            registry.is_ecr(),
        );
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
        options: &omx_puller::TargetOptions,
    ) -> anyhow::Result<(
        NamespaceTable,
        omx_puller::ResolvedTarget,
        PullPlan,
        NativeAccess,
    )> {
        let table = self.namespace_table()?;
        let offline = self.plan(&self.registry)?;
        let target = omx_puller::ResolvedTarget::resolve(&self.registry, options).await?;
        let mut access = self.native_access();
        if let (Some(secrets), false) =
            (&target.secrets, self.strategy.strategy == StrategyArg::Copy)
        {
            let hosts = offline.images.iter().map(|image| image.source.domain());
            let (found, warnings) =
                omx_puller::discover_registry_secrets(secrets, hosts, access).await;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            access = found;
        }
        let plan = self.plan_with(&target.registry, &access)?;
        Ok((table, target, plan, access))
    }
}

/// The most of an input file read: the manifests' own limit (the largest of our inputs). Far
/// more than any real manifest, rule file or workflow file; it exists so that `/dev/zero`, a
/// disk image or an endless pipe fail at once instead of filling memory.
pub const MAX_INPUT_FILE_BYTES: usize = omx_core::manifest::MAX_MANIFEST_BYTES;

/// Reads a user-named input file, at most [`MAX_INPUT_FILE_BYTES`] and only a regular one (see
/// [`omx_registry::input::read_user_file`]); failing to read it makes the whole run unusable
/// (exit 2).
pub fn read_input_file(path: &std::path::Path) -> anyhow::Result<String> {
    omx_registry::input::read_user_text(path, MAX_INPUT_FILE_BYTES)
        .map_err(|e| UnusableInput(format!("cannot read {}: {e}", shown_path(path))).into())
}

/// A user-named path as every message shows it: escaped, so that a name holding escape
/// sequences or line breaks prints as one inert line.
pub fn shown_path(path: &std::path::Path) -> String {
    omx_core::excerpt::escape(&path.display().to_string()).into_owned()
}

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

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// One JSON object: {"images": [...], "errors": [...]}.
    Json,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Outcome> {
    let plan = args.input.plan(&args.input.registry)?;
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

#[cfg(test)]
mod tests {
    //! The manifest file reader as a fuzzing target: arbitrary bytes in, never a panic, the text
    //! exactly when it is UTF-8 within the limit, else one line naming the file. 256 cases by
    //! default; `PROPTEST_CASES` sets more.

    use super::*;
    use proptest::prelude::*;

    fn error_of(result: anyhow::Result<String>) -> String {
        let error = result.unwrap_err();
        assert!(error.downcast_ref::<UnusableInput>().is_some(), "{error:#}");
        format!("{error:#}")
    }

    proptest! {
        #[test]
        fn any_file_reads_back_exactly_or_fails_naming_it(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2_000),
                "\\PC{0,400}".prop_map(String::into_bytes),
            ],
            name in "[a-z]{1,6}[\u{0}-\u{1f}\u{7f}\u{202e}]?\\.json",
        ) {
            // A file name cannot hold NUL.
            prop_assume!(!name.contains('\0'));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(&name);
            std::fs::write(&path, &bytes).unwrap();
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    let read = read_input_file(&path).unwrap();
                    prop_assert_eq!(read.as_str(), text);
                    // What reads it next must not panic either.
                    let _ = omx_core::manifest::parse_pull_manifest(&read);
                }
                Err(_) => {
                    let message = error_of(read_input_file(&path));
                    prop_assert!(message.contains("not valid UTF-8"), "{message}");
                    prop_assert!(message.contains(&shown_path(&path)), "{message}");
                    prop_assert!(!message.chars().any(char::is_control), "{message:?}");
                }
            }
        }
    }

    #[test]
    fn the_limit_is_exact_and_only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = dir.path().join("at-limit.json");
        std::fs::write(&at_limit, vec![b' '; MAX_INPUT_FILE_BYTES]).unwrap();
        assert_eq!(
            read_input_file(&at_limit).unwrap().len(),
            MAX_INPUT_FILE_BYTES
        );
        let over = dir.path().join("over.json");
        std::fs::write(&over, vec![b' '; MAX_INPUT_FILE_BYTES + 1]).unwrap();
        assert!(error_of(read_input_file(&over)).contains("the limit is"));
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&at_limit, &link).unwrap();
        assert!(read_input_file(&link).is_ok());
        for (special, kind) in [("/dev/null", "a device"), ("/", "a directory")] {
            let message = error_of(read_input_file(std::path::Path::new(special)));
            assert!(message.contains(kind), "{message}");
        }
    }
}

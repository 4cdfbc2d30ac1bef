//! `omx-ecr-helper build`: images from Dockerfile bundles, into ECR or any OCI registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use omx_aws::{AwsContext, CodeBuild, S3};
use omx_builder::{
    safe_relative_path, BuildOptions, BuildPlan, BuildProgress, Buildah, Builder, CodeBuildEngine,
    Docker, Engine, DEFAULT_CODEBUILD_PROJECT,
};
use omx_core::manifest_file::{parse_build_manifest, single_build};
use omx_core::pull_plan::TargetRegistry;
use omx_core::registry_map::OutputMap;
use omx_core::report::ImageReport;
use omx_core::{Platform, Secret};
use omx_puller::ResolvedTarget;

use crate::args::read_input_file;
use crate::args::{parse_secret, RegistryAccessArgs};
use crate::exit::{Outcome, UnusableInput};
use crate::output::Format;
use crate::progress::{Mode, TerminalProgress};
use crate::render::image_report::{render_report, status_line};

/// Build the images of a build manifest and push them to ECR (or any OCI registry).
///
/// The manifest: {"manifest": [{"source_uri": "s3://bucket/dir/", "target_image": "foo:omics"}]}.
/// A source is an S3 folder (every object under the prefix), an S3 .zip, a local folder or a
/// local .zip (relative paths start at the manifest's folder); the Dockerfile sits at the
/// bundle's root unless --dockerfile names another path in it. A target names a tag, and may
/// hold a namespace (team/tool:1.0).
///
/// Each image records a digest of its sources (files, executable bits, build arguments,
/// platform, Dockerfile path) in the label org.omx-ecr-helper.source-digest; an image whose
/// target already carries the same digest is skipped (--force builds it anyway). ECR
/// repositories get the tag createdBy=omx-ecr-helper and a policy that lets HealthOmics pull
/// before anything is pushed. Every build's log is kept in --log-dir. One failing image never
/// stops the others. Exit 0: all succeeded or skipped; 1: some failed; 2: unusable input.
///
/// Zip bundles are extracted safely: entries that would land outside the bundle, symbolic links
/// and archives that expand too far are refused. Files from S3 folders carry no modes (none is
/// executable); a zip keeps executable bits. S3 buckets must be in the AWS region used. The
/// build engine gets the target's login and your Docker config's logins for the registries of
/// the Dockerfile's base images through a temporary private file, never on a command line; with
/// --engine docker, which registries are reached over HTTP and which CAs are trusted is the
/// Docker daemon's configuration.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The build manifest (container_build_manifest.json).
    #[arg(required_unless_present = "source")]
    pub manifest: Option<PathBuf>,

    /// One bundle instead of a manifest (what the serverless stack's CodeBuild project runs):
    /// its source_uri; goes with --target.
    #[arg(
        long,
        value_name = "URI",
        conflicts_with = "manifest",
        requires = "target"
    )]
    pub source: Option<String>,

    /// The target_image of the --source bundle.
    #[arg(long, value_name = "IMAGE", requires = "source")]
    pub target: Option<String>,

    /// Where images go: `ecr` (the account and region of the AWS credential chain),
    /// `ecr://ACCOUNT/REGION`, or the host[:port] of any OCI registry.
    #[arg(long, default_value = "ecr", value_name = "REGISTRY")]
    pub registry: TargetRegistry,

    /// What builds: buildah (daemonless, chroot isolation, vfs storage), docker (a running
    /// daemon) or codebuild (an AWS CodeBuild project; S3 sources and ECR targets only).
    /// Default: buildah when installed, else docker when its daemon answers.
    #[arg(long, value_enum)]
    pub engine: Option<EngineChoice>,

    /// A build argument for every image; repeatable. NAME alone takes the value of the
    /// environment variable NAME.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, String)>,

    /// The platform to build for. HealthOmics runs linux/amd64.
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Platform,

    /// Build and push even when the target already carries the same source digest.
    #[arg(long)]
    pub force: bool,

    /// The Dockerfile's path inside each bundle.
    #[arg(long, default_value = "Dockerfile", value_name = "PATH")]
    pub dockerfile: String,

    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write every image's private URI and a HealthOmics containerRegistryMap to FILE.
    #[arg(long, value_name = "FILE")]
    pub output_map: Option<PathBuf>,

    /// Images built at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,

    /// Where each image's build log is written (<repository>_<tag>.log).
    #[arg(long, default_value = "omx-build-logs", value_name = "DIR")]
    pub log_dir: PathBuf,

    /// Where bundles from S3 and zips are unpacked while they build (default: the system's
    /// temporary folder). Each bundle's folder is removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// buildah's image store (layers are cached there between runs; delete it any time).
    /// Default: $XDG_DATA_HOME/omx-ecr-helper/buildah or ~/.local/share/omx-ecr-helper/buildah.
    #[arg(long, value_name = "DIR")]
    pub storage_root: Option<PathBuf>,

    /// The CodeBuild project that runs the builds (--engine codebuild). It needs privileged
    /// mode, and a role that reads the bundles and pushes to ECR.
    #[arg(long, default_value = DEFAULT_CODEBUILD_PROJECT, value_name = "NAME")]
    pub codebuild_project: String,

    /// Run the CodeBuild project's own buildspec instead of the one this tool sends (it gets
    /// the same OMX_* environment variables).
    #[arg(long)]
    pub codebuild_project_buildspec: bool,

    /// Seconds between two looks at a running CodeBuild build.
    #[arg(long, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub codebuild_poll_interval: u64,

    /// Region (of the ECR target, S3 bundles and CodeBuild), profile, ECR registry endpoint.
    #[command(flatten)]
    pub aws: crate::args::AwsTargetArgs,

    /// Credentials for a non-ECR target registry (ECR uses your AWS credentials).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_secret)]
    pub dest_creds: Option<Secret>,

    #[command(flatten)]
    pub access: RegistryAccessArgs,

    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Buildah,
    Docker,
    Codebuild,
}

/// `NAME=VALUE`, or `NAME` with the value of the environment variable NAME.
fn parse_build_arg(text: &str) -> Result<(String, String), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, value.to_string()),
        None => (
            text,
            std::env::var(text).map_err(|_| {
                format!("{text:?} has no =VALUE and no environment variable {text} is set")
            })?,
        ),
    };
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(format!("{name:?} is not a build argument name"));
    }
    Ok((name.to_string(), value))
}

pub async fn run(args: BuildArgs) -> anyhow::Result<Outcome> {
    // Everything that can be checked offline is, before any AWS call or build.
    let (entries, base) = match (&args.manifest, &args.source, &args.target) {
        (Some(manifest), _, _) => {
            let text = read_input_file(manifest)?;
            let entries = parse_build_manifest(&text)
                .map_err(|e| UnusableInput(format!("{}: {e}", manifest.display())))?;
            (entries, manifest_folder(manifest))
        }
        (None, Some(source), Some(target)) => (single_build(source, target), PathBuf::from(".")),
        _ => unreachable!("clap requires a manifest or --source with --target"),
    };
    safe_relative_path(&args.dockerfile)
        .ok()
        .filter(|path| !path.as_os_str().is_empty())
        .ok_or_else(|| {
            UnusableInput(format!(
                "--dockerfile {:?} must be a relative path inside the bundle",
                args.dockerfile
            ))
        })?;
    let codebuild = args.engine == Some(EngineChoice::Codebuild);
    if codebuild && !args.registry.is_ecr() {
        return Err(UnusableInput(format!(
            "--engine codebuild pushes to ECR only, not to {}",
            args.registry
        ))
        .into());
    }
    let needs_aws = args.registry.is_ecr()
        || codebuild
        || BuildPlan::new(&entries, &args.registry, &base)
            .builds
            .iter()
            .any(|build| build.source.is_s3());
    let local_engine = match args.engine {
        Some(EngineChoice::Codebuild) => None,
        choice => Some(local_engine(choice, &args).await?),
    };

    let (target, aws) = resolve_target(&args, needs_aws).await?;
    let engine = match local_engine {
        Some(engine) => engine,
        None => Engine::CodeBuild(CodeBuildEngine {
            client: CodeBuild::new(aws.as_ref().expect("codebuild loads AWS").sdk_config()),
            project: args.codebuild_project.clone(),
            poll_interval: Duration::from_secs(args.codebuild_poll_interval),
            project_buildspec: args.codebuild_project_buildspec,
        }),
    };
    let mut plan = BuildPlan::new(&entries, &target.registry, &base);
    if codebuild {
        plan.require_s3_sources(
            "CodeBuild builds bundles from S3; upload it first (aws s3 sync DIR s3://BUCKET/PREFIX/)",
        );
    }
    let s3 = aws.as_ref().map(|context| S3::new(context.sdk_config()));
    let client = args
        .access
        .target_client_config(&target, args.dest_creds.as_ref())?;
    let builder = Builder::new(engine, target, client, s3, build_options(&args))
        .map_err(|e| UnusableInput(e.to_string()))?;

    let progress = TerminalProgress::new(Mode::detect(args.quiet)).without_end_lines();
    for error in &plan.errors {
        progress.println(&format!("invalid  {error}"));
    }
    let report = builder.run(&plan, &LineProgress(&progress)).await;
    progress.finish();

    crate::output::print_report(args.format, &report, render_report)?;
    if let Some(path) = &args.output_map {
        let text = serde_json::to_string_pretty(&OutputMap::from_build_report(&report))? + "\n";
        std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", crate::args::shown_path(path)))?;
    }
    Ok(if report.all_ok() {
        Outcome::Success
    } else {
        Outcome::PartialFailure
    })
}

/// The folder relative sources are read from.
fn manifest_folder(manifest: &Path) -> PathBuf {
    match manifest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

async fn local_engine(choice: Option<EngineChoice>, args: &BuildArgs) -> anyhow::Result<Engine> {
    let unusable = |message: &str| anyhow::Error::from(UnusableInput(message.to_string()));
    let engine = match choice {
        Some(EngineChoice::Buildah) => Buildah::find()
            .map(Engine::Buildah)
            .ok_or_else(|| unusable("--engine buildah: buildah is not installed"))?,
        Some(EngineChoice::Docker) => {
            Docker::find().await.map(Engine::Docker).ok_or_else(|| {
                unusable("--engine docker: the Docker daemon does not answer `docker info`")
            })?
        }
        _ => Engine::detect().await.ok_or_else(|| {
            unusable(
                "no build engine: install buildah, start Docker, or use --engine codebuild \
                 (S3 bundles)",
            )
        })?,
    };
    Ok(match engine {
        Engine::Buildah(buildah) => Engine::Buildah(Buildah {
            storage: args.storage_root.clone().or_else(default_storage_root),
            ..buildah
        }),
        other => other,
    })
}

/// `$XDG_DATA_HOME/omx-ecr-helper/buildah`, else `~/.local/share/omx-ecr-helper/buildah`.
fn default_storage_root() -> Option<PathBuf> {
    crate::xdg::tool_dir("XDG_DATA_HOME", ".local/share", "buildah")
}

/// The target with ECR's account and region filled in, and the AWS configuration when the
/// run needs one (ECR, S3 bundles, CodeBuild).
async fn resolve_target(
    args: &BuildArgs,
    needs_aws: bool,
) -> anyhow::Result<(ResolvedTarget, Option<AwsContext>)> {
    if !needs_aws {
        return Ok((ResolvedTarget::registry(&args.registry.host()), None));
    }
    let (account, registry_region) = match &args.registry {
        TargetRegistry::Ecr {
            account, region, ..
        } => (account.clone(), region.clone()),
        TargetRegistry::Oci { .. } => (None, None),
    };
    let region = registry_region
        .clone()
        .or_else(|| args.aws.aws.region.clone());
    let context = AwsContext::load(region, args.aws.aws.profile.clone()).await?;
    if !args.registry.is_ecr() {
        return Ok((
            ResolvedTarget::registry(&args.registry.host()),
            Some(context),
        ));
    }
    // The target keeps a context of its own; both share one configuration (and its cached
    // credentials).
    let target = ResolvedTarget::for_ecr(
        AwsContext::from_config(context.sdk_config().clone())?,
        account,
        registry_region,
        &args.aws.target_options(),
    )
    .await?;
    Ok((target, Some(context)))
}

/// Explicit target credentials first, then ECR's token, then the Docker config (base images).
fn build_options(args: &BuildArgs) -> BuildOptions {
    BuildOptions {
        build_args: args.build_args.iter().cloned().collect::<BTreeMap<_, _>>(),
        platform: args.platform.clone(),
        dockerfile: args.dockerfile.clone(),
        force: args.force,
        jobs: usize::from(args.jobs),
        log_dir: args.log_dir.clone(),
        work_dir: args.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        ..BuildOptions::default()
    }
}

/// Each image's steps and its end as lines (above the bars on a terminal).
struct LineProgress<'a>(&'a TerminalProgress);

impl BuildProgress for LineProgress<'_> {
    fn step(&self, target: &str, message: &str) {
        self.0.println(&format!("{target}: {message}"));
    }

    fn done(&self, report: &ImageReport) {
        self.0.println(&status_line(report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: BuildArgs,
    }

    #[test]
    fn parses_every_option() {
        let harness = Harness::try_parse_from([
            "build",
            "manifest.json",
            "--registry",
            "127.0.0.1:5000",
            "--engine",
            "buildah",
            "--build-arg",
            "A=1",
            "--build-arg",
            "B=x=y",
            "--platform",
            "linux/arm64",
            "--force",
            "--dockerfile",
            "docker/Dockerfile.prod",
            "--format",
            "json",
            "--output-map",
            "map.json",
            "--insecure-registry",
            "r.lan:5000",
            "--jobs",
            "3",
            "--log-dir",
            "logs",
            "--codebuild-project",
            "p",
        ])
        .unwrap();
        let args = harness.args;
        assert_eq!(args.engine, Some(EngineChoice::Buildah));
        assert_eq!(
            args.build_args,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(args.platform, Platform::new("linux", "arm64", None));
        assert!(args.force);
        assert_eq!(args.access.insecure_registries, ["r.lan:5000"]);
        let options = build_options(&args);
        assert_eq!(options.dockerfile, "docker/Dockerfile.prod");
        assert_eq!(options.jobs, 3);
        assert_eq!(options.build_args.len(), 2);
    }

    #[test]
    fn build_args_from_the_environment_and_bad_ones() {
        assert_eq!(
            parse_build_arg("PATH"),
            Ok(("PATH".to_string(), std::env::var("PATH").unwrap()))
        );
        assert!(parse_build_arg("OMX_SURELY_UNSET_VARIABLE")
            .unwrap_err()
            .contains("no environment variable"));
        assert!(parse_build_arg("=x").is_err());
        assert!(parse_build_arg("A B=x").is_err());
        assert!(Harness::try_parse_from(["build", "m.json", "--jobs", "0"]).is_err());
    }

    #[test]
    fn relative_sources_start_at_the_manifest_folder() {
        assert_eq!(manifest_folder(Path::new("m.json")), PathBuf::from("."));
        assert_eq!(
            manifest_folder(Path::new("conf/m.json")),
            PathBuf::from("conf")
        );
    }
}

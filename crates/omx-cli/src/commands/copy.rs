//! `omx-ecr-helper copy SRC DST`: one image, registry to registry, digests preserved.

use std::sync::Arc;

use clap::Args;
use omx_aws::AwsContext;
use omx_core::namespace::is_ecr_private_host;
use omx_core::pull_plan::TargetRegistry;
use omx_core::Reference;
use omx_puller::{prepare_repository, CredentialChain, EcrReach, ResolvedTarget, TargetOptions};
use omx_registry::{
    ClientConfig, CopyEngine, CopyOptions, CredentialProvider, Platform, RegistryClient, Secret,
    StaticCredentials,
};

use crate::args::registry_access::{command_line_credential, ecr_registry_endpoint};
use crate::args::{parse_secret, RegistryAccessArgs};
use crate::blob_cache::{BlobCacheArgs, RunCache};
use crate::exit::{echoless, Outcome, UnusableInput};
use crate::progress::{Mode, TerminalProgress};

/// Copy one image (a whole multi-arch index by default) between registries.
///
/// Prints the digest of what DST now holds on stdout. Credentials come from --src-creds and
/// --dest-creds, else from the Docker config (~/.docker/config.json or $DOCKER_CONFIG, including
/// credential helpers). ECR private registries (source or destination) use your AWS credentials;
/// an ECR destination repository is created when missing, as pull does: tagged
/// createdBy=omx-ecr-helper, with a policy that lets HealthOmics pull.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source image, e.g. quay.io/biocontainers/samtools:1.19--h50ea8bc_0 or ubuntu@sha256:...
    #[arg(value_name = "SRC")]
    pub source: String,

    /// Destination image; without a tag the source's tag is kept.
    #[arg(value_name = "DST")]
    pub destination: String,

    /// Copy only this platform out of a multi-arch index (the destination digest then differs
    /// from the source index digest).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,

    /// Blob transfers in flight at once (a blob whose bytes are all sent makes way for the next
    /// while the registry commits it).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Also copy the image's referrers: OCI 1.1 referrers (from the referrers API or its
    /// sha256-<hex> fallback tag, which a target without the API gets, merged) and cosign's
    /// sha256-<hex>.sig/.att/.sbom tags; for an index, its children's too.
    #[arg(long)]
    pub with_referrers: bool,

    /// Credentials for the source registry.
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_secret)]
    pub src_creds: Option<Secret>,

    /// Credentials for the destination registry (they win when both images share a registry).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_secret)]
    pub dest_creds: Option<Secret>,

    /// AWS profile for ECR registries.
    #[arg(long)]
    pub profile: Option<String>,

    /// A registry endpoint (host[:port]) that receives the registry API calls for an ECR
    /// destination instead of its ECR host (emulators, VPC endpoints).
    #[arg(long, value_name = "HOST", value_parser = echoless(ecr_registry_endpoint))]
    pub ecr_registry_endpoint: Option<String>,

    #[command(flatten)]
    pub access: RegistryAccessArgs,

    #[command(flatten)]
    pub blob_cache: BlobCacheArgs,

    /// No progress output; only the digest (stdout) and errors (stderr).
    #[arg(short, long)]
    pub quiet: bool,
}

/// The error already quotes the input, with any `user:password@` replaced: the raw text is not
/// repeated here, since it may hold a password.
fn parse_reference(role: &str, text: &str) -> anyhow::Result<Reference> {
    Reference::parse(text).map_err(|e| {
        UnusableInput(format!("the {role} image is not a valid reference: {e}")).into()
    })
}

/// Explicit credentials first, then ECR tokens (for any ECR registry: the destination's and,
/// when an AWS context is needed, a source's), then the Docker config.
async fn credentials(
    args: &CopyArgs,
    source: &Reference,
    destination: &Reference,
    ecr_target: Option<&ResolvedTarget>,
) -> anyhow::Result<Arc<dyn CredentialProvider>> {
    let mut explicit = StaticCredentials::new();
    if let Some(value) = &args.src_creds {
        explicit.insert(
            source.domain(),
            command_line_credential("src-creds", value)?,
        );
    }
    if let Some(value) = &args.dest_creds {
        explicit.insert(
            destination.domain(),
            command_line_credential("dest-creds", value)?,
        );
    }
    let chain = CredentialChain::explicit(explicit);
    let chain = match ecr_target {
        Some(target) => chain.then_ecr(target, EcrReach::AnyRegistry),
        // A source in ECR needs an AWS context only then: it is loaded lazily for no one else.
        None if is_ecr_private_host(source.domain()) => {
            let context = AwsContext::load(None, args.profile.clone()).await?;
            chain.then_ecr_of(context.ecr(), Vec::new(), EcrReach::AnyRegistry)
        }
        None => chain,
    };
    Ok(chain.then_docker_config()?.build())
}

/// The ECR registry of `destination`, resolved (its control plane, and the host its registry
/// API is reached on), when it is one.
async fn ecr_destination(
    args: &CopyArgs,
    destination: &Reference,
) -> anyhow::Result<Option<ResolvedTarget>> {
    if !is_ecr_private_host(destination.domain()) {
        return Ok(None);
    }
    let registry: TargetRegistry = destination
        .domain()
        .parse()
        .map_err(|e| UnusableInput(format!("the destination registry: {e}")))?;
    let options = TargetOptions {
        region: None,
        profile: args.profile.clone(),
        ecr_registry_endpoint: args.ecr_registry_endpoint.clone(),
    };
    Ok(Some(ResolvedTarget::resolve(&registry, &options).await?))
}

pub async fn run(args: CopyArgs) -> anyhow::Result<Outcome> {
    let source = parse_reference("source", &args.source)?;
    let destination = parse_reference("destination", &args.destination)?;
    let ecr_target = ecr_destination(&args, &destination).await?;
    // Registry API calls for an ECR destination go to its API host (an endpoint standing in).
    let api_destination = match &ecr_target {
        Some(target) => Reference::new(
            &target.api_host,
            destination.path(),
            destination.tag(),
            destination.digest().cloned(),
        )?,
        None => destination.clone(),
    };
    let config = ClientConfig {
        credentials: credentials(&args, &source, &api_destination, ecr_target.as_ref()).await?,
        ..args.access.client_config()
    };
    let client = RegistryClient::new(config)?;
    let blob_cache = RunCache::open(&args.blob_cache, false);
    let engine = blob_cache.attach(CopyEngine::new(
        client,
        CopyOptions {
            jobs: usize::from(args.jobs),
            platform: args.platform.clone(),
            // As pull does: ECR mounts only blobs a manifest of the other repository references.
            mount_needs_manifest: ecr_target.is_some(),
            ..CopyOptions::default()
        },
    ));
    if let Some(ecr) = ecr_target.as_ref().and_then(|target| target.ecr.as_ref()) {
        // As pull does: a repository only for an image that exists.
        if engine.client().head_manifest(&source).await?.is_none() {
            return Err(anyhow::anyhow!("source image {source} does not exist"));
        }
        prepare_repository(ecr, destination.path(), false).await?;
    }
    let progress = TerminalProgress::new(Mode::detect(args.quiet));
    let result = engine.copy(&source, &api_destination, &progress).await;
    let referrers = match (&result, args.with_referrers) {
        (Ok(report), true) => Some(
            engine
                .copy_referrers(&source, &api_destination, &report.digest, &progress)
                .await,
        ),
        _ => None,
    };
    progress.finish();
    blob_cache.save();
    let report = result?;
    if let Some(count) = referrers.transpose()? {
        if !args.quiet {
            eprintln!("referrers: {count}");
        }
    }
    for warning in &report.warnings {
        // Warnings matter even with --quiet: an arm64-only image will not run on HealthOmics.
        eprintln!("warning: {warning}");
    }
    crate::output::write_stdout(&format!("{}\n", report.digest))?;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: CopyArgs,
    }

    #[test]
    fn parses_every_option_and_never_shows_passwords() {
        let harness = Harness::try_parse_from([
            "copy",
            "quay.io/a/b:1",
            "127.0.0.1:5000/quay/a/b",
            "--platform",
            "linux/arm64/v8",
            "--jobs",
            "8",
            "--src-creds",
            "me:src-secret",
            "--dest-creds",
            "AWS:dst:secret",
            "--insecure-registry",
            "registry.lan:5000",
            "--insecure-registry",
            "other.lan",
            "--ca-cert",
            "/tmp/ca.pem",
            "--quiet",
        ])
        .unwrap();
        let args = harness.args;
        assert_eq!(
            args.platform,
            Some(Platform::new("linux", "arm64", Some("v8")))
        );
        assert_eq!(args.jobs, 8);
        let dest =
            command_line_credential("dest-creds", args.dest_creds.as_ref().unwrap()).unwrap();
        assert_eq!(dest.username, "AWS");
        assert_eq!(dest.password.expose(), "dst:secret");
        assert_eq!(
            args.access.insecure_registries,
            ["registry.lan:5000", "other.lan"]
        );
        assert!(args.quiet);
        let shown = format!("{args:?}");
        assert!(
            !shown.contains("src-secret") && !shown.contains("dst:secret"),
            "{shown}"
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            vec!["copy", "a", "b", "--platform", "amd64"],
            vec!["copy", "a", "b", "--jobs", "0"],
        ] {
            assert!(Harness::try_parse_from(&bad).is_err(), "{bad:?}");
        }
        let error = command_line_credential("src-creds", &Secret::new("nocolonsecret"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--src-creds") && !error.contains("nocolonsecret"),
            "{error}"
        );
    }
}

//! How a pull runs, whatever gives it the manifest.

use clap::Args;
use omx_registry::{Platform, Secret};

use crate::args::{parse_secret, AwsTargetArgs, RegistryAccessArgs, StrategyArgs};
use crate::blob_cache::BlobCacheArgs;

/// How a pull runs, whatever gives it the manifest (`pull` reads a file, `prepare` scans a
/// workflow).
#[derive(Args, Debug, Clone)]
pub struct PullRunArgs {
    #[command(flatten)]
    pub strategy: StrategyArgs,

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
    /// most of an image's time is spent waiting on blobs other images share). A blob whose
    /// bytes are all sent makes way for the next while the registry commits it.
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

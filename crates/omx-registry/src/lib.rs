//! OCI Distribution API client and image copy engine.
//!
//! [`RegistryClient`] speaks the registry HTTP API (manifests, blobs, uploads, mounts) with
//! bearer-token and Basic authentication, retries and TLS. [`CopyEngine`] copies images between
//! registries with it: digests preserved, multi-arch indexes kept whole (or one platform
//! selected), blobs streamed and verified before any upload is committed, each blob moved at
//! most once per run and mounted across repositories where the target registry allows.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use omx_registry::{ClientConfig, CopyEngine, CopyOptions, NoProgress, RegistryClient};
//! let client = RegistryClient::new(ClientConfig::default())?;
//! let engine = CopyEngine::new(client, CopyOptions::default());
//! let source = omx_core::Reference::parse("quay.io/biocontainers/samtools:1.19--h50ea8bc_0")?;
//! let target = omx_core::Reference::parse("127.0.0.1:5000/quay/biocontainers/samtools")?;
//! let report = engine.copy(&source, &target, &NoProgress).await?;
//! println!("{}", report.digest);
//! # Ok(()) }
//! ```

pub mod auth;
pub mod client;
pub mod copy;
pub mod error;
pub mod input;
pub mod manifest;
/// Platforms are pure values: they live in omx-core, re-exported where callers found them.
pub use omx_core::platform;
pub mod progress;
pub mod rate_limit;
pub mod retry;
mod transport;

pub use auth::credentials::{
    Anonymous, ChainCredentials, Credential, CredentialError, CredentialProvider, DockerConfig,
    DockerConfigCredentials, StaticCredentials,
};
pub use client::{
    ClientConfig, ManifestDescriptor, ManifestRef, Referrers, RegistryClient, Repository,
};
pub use copy::{BlobCache, CopyEngine, CopyError, CopyOptions, CopyReport, CopyWarning, Known};
pub use error::RegistryError;
pub use manifest::{Descriptor, Manifest, ManifestKind};
pub use omx_core::Secret;
pub use platform::Platform;
pub use progress::{ImageId, NoProgress, ProgressEvent, ProgressSink};
pub use rate_limit::PullBudget;
pub use retry::RetryPolicy;

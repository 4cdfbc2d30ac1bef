//! The builder: container images from Dockerfile bundles, pushed to ECR or any OCI registry.
//!
//! A build manifest names bundles (an S3 folder or zip, a local folder or zip) and the images to
//! make of them. For each image, [`Builder`] puts the bundle on disk ([`Fetcher`]: zips extracted
//! safely within [`Limits`]), computes its [`source_digest`], skips the image when the target tag
//! already carries that digest in its `org.omx-ecr-helper.source-digest` label, then builds with
//! buildah or Docker here, or with CodeBuild in AWS ([`Engine`]), prepares the ECR repository
//! before anything is pushed (tagged `createdBy=omx-ecr-helper`, HealthOmics allowed to pull),
//! pushes, and checks that the target now holds an image with that label. Each image's build log
//! is kept; one failing image never stops the others, and the
//! [`omx_core::report::RunReport`] says what happened to each.

mod build_plan;
mod builder;
mod bundle;
mod codebuild;
mod digest;
mod dockerfile;
mod engine;
mod extract;
mod login;
mod published;
mod source;

pub use build_plan::{BuildPlan, BuildTarget, PlannedBuild};
pub use builder::{Assessment, BuildError, BuildOptions, BuildProgress, Builder};
pub use bundle::{safe_relative_path, Bundle, BundleError, Fetcher, Limits};
pub use digest::{source_digest, BuildInputs};
pub use dockerfile::base_image_registries;
pub use engine::{Buildah, CodeBuildEngine, Docker, Engine, DEFAULT_CODEBUILD_PROJECT};
pub use published::{published, source_digest_label, Published, SOURCE_DIGEST_LABEL};
pub use source::BundleSource;

//! The argument groups commands share (flattened into theirs).

pub mod aws_target;
pub mod input_file;
pub mod pull_manifest;
pub mod pull_run;
pub mod registry_access;

pub use aws_target::{AwsArgs, AwsTargetArgs};
pub use input_file::{read_input_file, shown_path};
pub use pull_manifest::{PullManifestArgs, StrategyArgs};
pub use pull_run::PullRunArgs;
pub use registry_access::{parse_secret, RegistryAccessArgs};

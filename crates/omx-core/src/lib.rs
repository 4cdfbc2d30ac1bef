//! The pure core of omx-ecr-helper.
//!
//! Everything here is a function of its inputs: no network, no file system, no AWS, no terminal.
//! The registry client, the AWS adapters and the CLI build on these types, so the rules that decide
//! *what* happens (how an image reference is read, which private repository it lands in, what the
//! repository policy must say) are tested once, here, without any service running.

pub mod digest;
pub mod ecr_host;
pub mod excerpt;
pub mod lock;
pub mod manifest_file;
pub mod mutability;
pub mod namespace;
pub mod platform;
pub mod policy;
pub mod pull_plan;
pub mod reference;
pub mod registry_host;
pub mod registry_map;
pub mod report;
pub mod repository;
pub mod secret;
pub mod state_machine;
pub mod strategy;
pub mod workflow_map;

pub use digest::Digest;
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
pub use registry_host::RegistryHost;
pub use repository::Repository;
pub use secret::Secret;

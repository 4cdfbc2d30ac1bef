//! The puller: brings every image of a pull plan into the private registry.
//!
//! For each planned image, concurrently: make sure its repository exists with the
//! `createdBy=omx-ecr-helper` tag and a policy that lets HealthOmics pull (ECR targets), skip it when
//! the target already holds it, prime it through ECR's pull-through cache or copy it with the copy
//! engine, and verify that the target serves the source's digest. One image failing never stops
//! the others; the [`omx_core::report::RunReport`] says what happened to each.
//!
//! The CLI (`omx-ecr-helper pull`) and the Step Functions Lambda both run this code.
//!
//! [`setup_registry`] prepares a region's registry for pull-through caches (rules, creation
//! templates, the registry policy), and [`Verifier`] checks, with read calls only, that a plan's
//! images are ready for HealthOmics.

mod budget;
mod credential_chain;
mod ecr_credentials;
mod lock;
mod map_check;
mod platforms;
mod puller;
mod registry_secrets;
mod setup;
mod target;
mod verify;

pub use budget::{BudgetPlan, RegistryBudget};
pub use credential_chain::{CredentialChain, EcrReach};
pub use ecr_credentials::EcrCredentials;
pub use lock::Locker;
pub use map_check::{check_registry_map, MapReport, MappingCheck, RouteCheck};
pub use platforms::{platforms_of, Platforms};
pub use puller::{
    prepare_repository, reports_in_order, PullError, PullOptions, Puller, COULD_NOT_CHECK,
};
pub use registry_secrets::{
    discover_registry_secrets, read_credential_file, registry_namespace, secret_name,
    setup_registry_secrets, RegistryCredential, RegistrySecret, REGISTRY_SECRET_PREFIX,
};
pub use setup::{
    check_credential_arn, setup_registry, Action, Resource, SetupOptions, SetupReport, SetupStep,
    Upstream, PTC_SECRET_PREFIX,
};
pub use target::{ResolvedTarget, TargetError, TargetOptions};
pub use verify::{Check, CheckKind, CheckStatus, Fix, ImageVerification, Verifier, VerifyReport};

//! Test support for omx-ecr-helper: real services on free loopback ports.
//!
//! * [`Registry`] runs a CNCF `docker-registry` (anonymous, htpasswd basic auth, Docker token
//!   auth with its own [`TokenServer`], or TLS).
//! * [`Moto`] runs a `moto_server` that emulates the AWS APIs.
//! * [`ImageFixture`] writes OCI image layouts to disk and [`push_with_skopeo`] pushes them.
//! * [`EcrStandIn`] serves Amazon ECR's registry API and control plane as ECR behaves, storing
//!   the bytes in a `docker-registry` behind it.
//! * [`FaultProxy`] sits in front of a registry, records requests and injects [`Fault`]s.
//! * [`OmxCommand`] runs a built binary hermetically; [`registry_state`] asks a registry what it
//!   holds; [`Moto::repository_names`] lists moto's ECR repositories.
//! * [`PullBudgetRegistry`] puts Docker Hub's pull limits (per-identity budgets, `ratelimit-*`
//!   headers, its 429) in front of a registry.
//!
//! Every server is a child process stopped (killed and reaped) when its handle is dropped.
//! When a required binary is missing the `start` functions panic with a hint to run
//! `scripts/install-deps`; with `OMX_TESTENV_SKIP=1` the `try_start` variants return `None`
//! instead so a test can skip:
//!
//! ```no_run
//! let Some(registry) = omx_testenv::Registry::try_start() else { return; };
//! assert!(registry.url().starts_with("http://127.0.0.1:"));
//! ```

pub mod aws_recorder;
mod command;
mod connect_proxy;
mod ecr;
mod fixture;
mod head;
mod http;
mod layer;
mod moto;
mod process;
mod proxy;
mod pull_budget;
mod registry;
pub mod registry_state;
mod server;
mod token;
mod tools;

pub use command::{text, OmxCommand, OmxOutput};
pub use connect_proxy::ConnectProxy;
pub use ecr::{
    Counters as EcrCounters, EcrBuilder, EcrRequest, EcrStandIn, RepositoryOrigin, RepositoryView,
};
pub use fixture::{
    docker, layout_root_digest, oci, push_layout, push_with_skopeo, Descriptor, FixtureImage,
    Format, ImageFixture, LayerSpec, PushTarget,
};
pub use head::read_request;
pub use http::{
    base64_encode, basic_auth_header, http_request, refusing_port, upload_blob, HttpResponse,
};
pub use moto::{moto_ecr_password, Moto, MOTO_ACCOUNT_ID};
pub use proxy::{Fault, FaultProxy, FaultRule, RequestRecord};
pub use pull_budget::{BudgetRequest, Identity, PullBudgetBuilder, PullBudgetRegistry};
pub use registry::{Registry, RegistryBuilder};
pub use token::{TokenRequest, TokenServer, TOKEN_ISSUER, TOKEN_SERVICE};
pub use tools::{find_tool, workspace_root, Tool};

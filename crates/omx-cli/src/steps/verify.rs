//! Checking that every image of a manifest is ready for HealthOmics (and a registry map, when
//! given), changing nothing.

use omx_core::registry_map::ContainerRegistryMap;
use omx_puller::{check_registry_map, MapReport, TargetOptions, Verifier, VerifyReport};
use omx_registry::RegistryClient;
use serde::Serialize;

use crate::args::{PullManifestArgs, RegistryAccessArgs, StrategyArgs};
use crate::exit::UnusableInput;

/// What `verify` reports: the images' checks, and the registry map's when one was given.
#[derive(Serialize)]
pub(crate) struct Verified {
    #[serde(flatten)]
    pub(crate) report: VerifyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) registry_map: Option<MapReport>,
}

/// Checks every image of the manifest `input` names. The registry is looked at in its own
/// region; a `workflow_region` that differs is where workflows run, which the region check then
/// reports for every image.
pub async fn check(
    input: &PullManifestArgs,
    strategy: &StrategyArgs,
    options: &TargetOptions,
    workflow_region: Option<String>,
    access: &RegistryAccessArgs,
    map: Option<&ContainerRegistryMap>,
) -> anyhow::Result<Verified> {
    let (table, target, plan, _) = input.resolve_and_plan(strategy, options).await?;
    let registry_map = match (map, &target.ecr, &target.secrets) {
        (None, _, _) => None,
        (Some(map), Some(ecr), Some(secrets)) => {
            Some(check_registry_map(ecr, secrets, map, &plan, &table).await)
        }
        (Some(_), _, _) => {
            return Err(UnusableInput(
                "--registry-map is checked against ECR: give --registry ecr (or \
                 ecr://ACCOUNT/REGION)"
                    .to_string(),
            )
            .into())
        }
    };
    let client = RegistryClient::new(access.target_client_config(&target, None)?)?;
    let verifier = Verifier::new(client, target, table, workflow_region);
    Ok(Verified {
        report: verifier.verify(&plan).await,
        registry_map,
    })
}

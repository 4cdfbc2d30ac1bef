//! The AWS options of every command that reaches AWS: region, profile and the ECR registry
//! endpoint.

use clap::Args;
use omx_puller::TargetOptions;

/// Where the AWS side of a command points.
#[derive(Args, Debug, Clone)]
pub struct AwsTargetArgs {
    /// AWS region: of the ECR target and every AWS call (default: the credential chain's
    /// region).
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile to use.
    #[arg(long)]
    pub profile: Option<String>,

    /// A registry endpoint (host[:port]) that receives the ECR registry API calls instead of
    /// the ECR host (emulators, VPC endpoints); private URIs still name the ECR host.
    #[arg(long, value_name = "HOST", value_parser = crate::exit::echoless(crate::args::registry_access::ecr_registry_endpoint))]
    pub ecr_registry_endpoint: Option<String>,
}

impl AwsTargetArgs {
    pub fn target_options(&self) -> TargetOptions {
        TargetOptions {
            region: self.region.clone(),
            profile: self.profile.clone(),
            ecr_registry_endpoint: self.ecr_registry_endpoint.clone(),
        }
    }
}

//! The AWS options of every command that reaches AWS: region and profile, and for those that
//! reach ECR's registry API, the endpoint standing in for it.

use clap::Args;
use omx_aws::{AwsContext, AwsError};
use omx_puller::TargetOptions;

/// Which AWS account and region a command works in.
#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// AWS region of every AWS call: the ECR registry's, the stack's (default: the credential
    /// chain's region).
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile to use.
    #[arg(long)]
    pub profile: Option<String>,
}

impl AwsArgs {
    /// The AWS configuration these name (credentials, region).
    pub async fn load(&self) -> Result<AwsContext, AwsError> {
        AwsContext::load(self.region.clone(), self.profile.clone()).await
    }
}

/// Where the AWS side of a command that talks to ECR's registry points.
#[derive(Args, Debug, Clone)]
pub struct AwsTargetArgs {
    #[command(flatten)]
    pub aws: AwsArgs,

    /// A registry endpoint (host[:port]) that receives the ECR registry API calls instead of
    /// the ECR host (emulators, VPC endpoints); private URIs still name the ECR host.
    #[arg(long, value_name = "HOST", value_parser = crate::exit::echoless(crate::args::registry_access::ecr_registry_endpoint))]
    pub ecr_registry_endpoint: Option<String>,
}

impl AwsTargetArgs {
    pub fn region(&self) -> Option<&str> {
        self.aws.region.as_deref()
    }

    pub fn profile(&self) -> Option<&str> {
        self.aws.profile.as_deref()
    }

    pub fn target_options(&self) -> TargetOptions {
        TargetOptions {
            region: self.aws.region.clone(),
            profile: self.aws.profile.clone(),
            ecr_registry_endpoint: self.ecr_registry_endpoint.clone(),
        }
    }
}

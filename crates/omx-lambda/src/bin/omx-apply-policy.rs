//! Lambda `omx-apply-policy`: the EventBridge target for ECR `CreateRepository` events.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use omx_aws::AwsContext;
use omx_lambda::{apply_policy, init_lambda_logging, ApplyPolicyResponse};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_lambda_logging();
    let context = AwsContext::load(std::env::var("OMX_REGION").ok(), None).await?;
    let context = &context;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let response: ApplyPolicyResponse = apply_policy(context, &event.payload).await?;
        tracing::info!(repository = %response.repository, policy = %response.policy, "omics policy");
        Ok::<ApplyPolicyResponse, Error>(response)
    }))
    .await
}

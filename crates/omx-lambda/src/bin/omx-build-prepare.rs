//! Lambda `omx-build-prepare`: one bundle of the `omx-container-builder` state machine's Map.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use omx_aws::AwsContext;
use omx_lambda::{
    init_lambda_logging, BuildPrepareHandler, BuildPrepareRequest, BuildPrepareResponse,
};
use omx_puller::TargetOptions;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_lambda_logging();
    let context = AwsContext::load(std::env::var("OMX_REGION").ok(), None).await?;
    let options = TargetOptions {
        ecr_registry_endpoint: std::env::var("OMX_ECR_REGISTRY_ENDPOINT").ok(),
        ..TargetOptions::default()
    };
    let handler =
        BuildPrepareHandler::new(context, std::env::var("OMX_ACCOUNT").ok(), options).await?;
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<BuildPrepareRequest>| async move {
            Ok::<BuildPrepareResponse, Error>(handler.handle(event.payload).await)
        },
    ))
    .await
}

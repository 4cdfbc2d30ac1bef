//! Lambda `omx-pull-image`: one image of the `omx-container-puller` state machine's Map.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use omx_lambda::{init_lambda_logging, PullImageHandler, PullImageRequest, PullImageResponse};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_lambda_logging();
    let handler = PullImageHandler::from_env().await?;
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<PullImageRequest>| async move {
            Ok::<PullImageResponse, Error>(handler.handle(event.payload).await)
        },
    ))
    .await
}

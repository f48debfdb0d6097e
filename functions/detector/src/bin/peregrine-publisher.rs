//! The publisher Lambda: the findings outbox, run every minute (see the library).

use lambda_runtime::{Error, service_fn};
use peregrine_detector::{AwsPublisherDeps, Config, handle_schedule, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::publisher_from_env()?;
    let sdk = peregrine_aws::sdk_config().await;
    let deps = AwsPublisherDeps::from_sdk(&sdk, config);
    lambda_runtime::run(service_fn(|event| handle_schedule(&deps, event))).await
}

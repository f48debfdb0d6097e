//! The publisher Lambda: the findings outbox, run every minute (see the library).

use lambda_runtime::{Error, service_fn};
use peregrine_lambda::{FromEnv, init_logging};
use peregrine_publisher::{AwsPublisherDeps, Config, handle_schedule};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let sdk = peregrine_aws::sdk_config().await;
    let deps = AwsPublisherDeps::from_sdk(&sdk, config);
    lambda_runtime::run(service_fn(|event| handle_schedule(&deps, event))).await
}

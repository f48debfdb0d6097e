//! The detector Lambda: agent batches from EventsQueue → findings (see the library).

use lambda_runtime::{Error, service_fn};
use peregrine_detector::{AwsDeps, Config, handle};
use peregrine_lambda::{FromEnv, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    // Clients and the detection engine are built once per cold start.
    let sdk = peregrine_aws::sdk_config().await;
    let deps = AwsDeps::from_sdk(&sdk, config)?;
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}

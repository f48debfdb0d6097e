//! The coverage sweeper Lambda: one sweep of the organization per scheduled event (see the
//! library).

use lambda_runtime::{Error, service_fn};
use peregrine_coverage::{Config, CoverageDeps, handle_schedule};
use peregrine_lambda::{FromEnv, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let sdk = peregrine_aws::sdk_config().await;
    let deps = CoverageDeps::from_sdk(&sdk, config);
    lambda_runtime::run(service_fn(|event| handle_schedule(&deps, event))).await
}

//! The findings API Lambda, behind an AWS_IAM function URL (see the library).

use lambda_runtime::{Error, service_fn};
use peregrine_api::{ApiDeps, Config, handle};
use peregrine_lambda::{FromEnv, init_logging};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Config::from_env()?;
    let sdk = peregrine_aws::sdk_config().await;
    let deps = ApiDeps::from_sdk(&sdk, config);
    lambda_runtime::run(service_fn(|event| handle(&deps, event))).await
}

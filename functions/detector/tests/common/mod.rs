//! The detector against moto, provisioned from template.yaml: one stack per test, the
//! function's configuration as the template gives it, and invocations as Lambda makes them.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::LambdaEvent;
use peregrine_detector::{AwsDeps, Config};
use peregrine_provision::{LocalStack, ProvisionOptions, Template, function_config, provision};
use peregrine_testkit::{lambda, moto::Moto};

pub struct Local {
    _moto: Moto,
    pub sdk: aws_config::SdkConfig,
    pub stack: LocalStack,
    pub deps: AwsDeps,
}

pub async fn local() -> Local {
    let moto = Moto::start().expect("moto (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template = Template::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"),
    )
    .unwrap();
    let stack = provision(&sdk, &template, &ProvisionOptions::default())
        .await
        .unwrap();
    let config: Config = function_config(&stack, peregrine_detector::BINARY).unwrap();
    let deps = AwsDeps::from_sdk(&sdk, config).unwrap();
    Local {
        _moto: moto,
        sdk,
        stack,
        deps,
    }
}

impl Local {
    /// The detector's invocation with these (message id, body) records; `deadline_ms` 0 means
    /// none.
    pub fn invocation(&self, records: &[(&str, &str)], deadline_ms: u64) -> LambdaEvent<SqsEvent> {
        let mut ctx = lambda::context("req", &self.stack.functions["DetectorFunction"].arn);
        ctx.deadline = deadline_ms;
        LambdaEvent::new(
            lambda::sqs_event(&self.stack.queues["EventsQueue"].arn, records),
            ctx,
        )
    }

    /// Every item of the findings table.
    pub async fn findings(&self) -> Vec<HashMap<String, AttributeValue>> {
        aws_sdk_dynamodb::Client::new(&self.sdk)
            .scan()
            .table_name(&self.stack.tables["FindingsTable"])
            .send()
            .await
            .unwrap()
            .items()
            .to_vec()
    }
}

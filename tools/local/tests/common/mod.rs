//! A moto per test, with the template's resources provisioned, and small readers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::{Context, LambdaEvent};
use peregrine_local::{LocalStack, ProvisionOptions, Template, provision};
use peregrine_testkit::lambda::{context, sqs_event};
use peregrine_testkit::moto::Moto;
use serde_json::Value;

pub fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

pub fn template() -> Template {
    Template::load(&template_path()).expect("template.yaml parses")
}

pub struct Local {
    /// Kept alive for the test (dropping it stops moto).
    pub moto: Moto,
    pub sdk: SdkConfig,
    pub stack: LocalStack,
    pub template: Template,
}

/// Starts moto and provisions template.yaml with the default prefix.
pub async fn local() -> Local {
    local_with_prefix("peregrine").await
}

pub async fn local_with_prefix(prefix: &str) -> Local {
    local_with(prefix, &[]).await
}

/// [`local_with_prefix`] with template parameters overridden.
pub async fn local_with(prefix: &str, parameters: &[(&str, &str)]) -> Local {
    let moto = Moto::start().expect("moto starts (scripts/setup installs it)");
    let sdk = moto.sdk_config().await;
    let template = template();
    let stack = provision(
        &sdk,
        &template,
        &ProvisionOptions {
            prefix: prefix.into(),
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ProvisionOptions::default()
        },
    )
    .await
    .expect("provisioning from the template");
    Local {
        moto,
        sdk,
        stack,
        template,
    }
}

impl Local {
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn dynamo(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn queue_url(&self, logical_id: &str) -> String {
        self.stack.queues[logical_id].url.clone()
    }

    pub fn table(&self, logical_id: &str) -> String {
        self.stack.tables[logical_id].clone()
    }

    /// A Lambda context as the detector function would get it.
    pub fn context(&self, logical_id: &str) -> Context {
        context("test", &self.stack.functions[logical_id].arn)
    }

    /// The detector's invocation for `(message id, body)` records from its queue.
    pub fn sqs_event(&self, records: &[(&str, &str)]) -> LambdaEvent<SqsEvent> {
        let event = sqs_event(&self.stack.queues["EventsQueue"].arn, records);
        LambdaEvent::new(event, self.context("DetectorFunction"))
    }

    pub async fn send(&self, logical_id: &str, body: &str) -> String {
        self.sqs()
            .send_message()
            .queue_url(self.queue_url(logical_id))
            .message_body(body)
            .send()
            .await
            .expect("SendMessage")
            .message_id()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every message currently in a queue (received and deleted), waiting up to `wait` for
    /// the first.
    pub async fn drain(&self, logical_id: &str, wait: Duration) -> Vec<String> {
        let url = self.queue_url(logical_id);
        let mut out = Vec::new();
        let mut wait_s = i32::try_from(wait.as_secs()).unwrap();
        loop {
            let r = self
                .sqs()
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait_s)
                .send()
                .await
                .expect("ReceiveMessage");
            if r.messages().is_empty() {
                return out;
            }
            for m in r.messages() {
                out.push(m.body().unwrap_or_default().to_owned());
                self.sqs()
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
            wait_s = 0;
        }
    }

    /// Every item of a table.
    /// BatchDedupeTable's keys, sorted.
    pub async fn batch_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .scan("BatchDedupeTable")
            .await
            .iter()
            .map(|i| s(i, "batchKey").to_owned())
            .collect();
        keys.sort();
        keys
    }

    pub async fn scan(&self, logical_id: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.dynamo()
            .scan()
            .table_name(self.table(logical_id))
            .send()
            .await
            .expect("Scan")
            .items()
            .to_vec()
    }

    /// Items of a FindingsTable index with `key = value`.
    pub async fn query_index(
        &self,
        index: &str,
        key: &str,
        value: &str,
    ) -> Vec<HashMap<String, AttributeValue>> {
        self.dynamo()
            .query()
            .table_name(self.table("FindingsTable"))
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", key)
            .expression_attribute_values(":v", AttributeValue::S(value.into()))
            .send()
            .await
            .expect("Query")
            .items()
            .to_vec()
    }
}

/// The message ids a handler reported as failed, in order.
pub fn failed_ids(r: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

pub fn s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> &'a str {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no string attribute {k} in {item:?}"))
}

pub fn n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no number attribute {k}"))
}

pub fn finding(item: &HashMap<String, AttributeValue>) -> Value {
    serde_json::from_str(s(item, "finding")).expect("finding JSON")
}

/// The item of the finding of a type (exactly one expected).
pub fn by_type<'a>(
    items: &'a [HashMap<String, AttributeValue>],
    finding_type: &str,
) -> &'a HashMap<String, AttributeValue> {
    let matching: Vec<_> = items
        .iter()
        .filter(|i| s(i, "type") == finding_type)
        .collect();
    assert_eq!(matching.len(), 1, "one {finding_type} finding: {items:?}");
    matching[0]
}

pub const RELEASE_AGENT: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";
pub const SSH_KEYS: &str = "Persistence:Runtime/SensitiveFileModified";
pub const NEW_BINARY: &str = "Execution:Runtime/NewBinaryExecuted";

//! The sample Lambda events under `events/` decode with the current wire format, are what
//! `cargo run -p peregrine-local --example sample_events` writes, and run through the handlers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::path::PathBuf;

use aws_lambda_events::sqs::SqsEvent;
use common::*;
use lambda_runtime::LambdaEvent;
use peregrine_detector::{AwsDeps, handle};
use peregrine_local::function_config;
use peregrine_local::functions::{DETECTOR_BINARY, PUBLISHER_BINARY};
use peregrine_publisher::{AwsPublisherDeps, handle_schedule};
use peregrine_testkit::samples;
use peregrine_wire::Message;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(events_dir().join(name)).unwrap_or_else(|e| {
        panic!("events/{name}: {e}; run `cargo run -p peregrine-local --example sample_events`")
    })
}

#[test]
fn sample_events_are_current_and_decode() {
    let text = read("detector-sqs.json");
    let event: SqsEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::to_value(samples::detector_event().unwrap()).unwrap(),
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        "events/detector-sqs.json is stale: run `cargo run -p peregrine-local --example sample_events`"
    );
    assert_eq!(event.records.len(), 2);
    let mut kinds = Vec::new();
    for r in &event.records {
        match peregrine_wire::decode(r.body.as_deref().unwrap()).unwrap() {
            Message::Batch { header, events } => {
                assert_eq!(header.schema_version, peregrine_wire::SCHEMA_VERSION);
                assert_eq!(events.len(), 43);
                kinds.push("batch");
            }
            Message::Heartbeat { heartbeat, .. } => {
                assert_eq!(heartbeat.probes.len(), 3);
                kinds.push("heartbeat");
            }
        }
    }
    assert_eq!(kinds, ["batch", "heartbeat"]);

    let text = read("publisher-schedule.json");
    let schedule: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(samples::publisher_event(), schedule);
    let typed: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_value(schedule).unwrap();
    assert_eq!(typed.detail_type, "Scheduled Event");
}

#[tokio::test]
async fn sample_events_run_through_the_handlers() {
    let local = local().await;
    let deps = AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap();
    let event: SqsEvent = serde_json::from_str(&read("detector-sqs.json")).unwrap();
    let response = handle(
        &deps,
        LambdaEvent::new(event, local.context("DetectorFunction")),
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(local.scan("FindingsTable").await.len(), 3);
    assert_eq!(local.scan("HeartbeatsTable").await.len(), 1);

    let publisher = AwsPublisherDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, PUBLISHER_BINARY).unwrap(),
    );
    let schedule: serde_json::Value =
        serde_json::from_str(&read("publisher-schedule.json")).unwrap();
    let summary = handle_schedule(
        &publisher,
        LambdaEvent::new(schedule, local.context("PublisherFunction")),
    )
    .await
    .unwrap();
    assert_eq!(
        summary.due, 0,
        "new findings were published by the detector"
    );
}

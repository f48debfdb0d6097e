//! The detector and publisher against moto, provisioned from template.yaml: agent messages in
//! the events queue become findings in DynamoDB and events on the bus, which the template's
//! rule routes to the high-severity queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use peregrine_detector::{AwsDeps, handle, handle_at};
use peregrine_event::Timestamp;
use peregrine_local::functions::{DETECTOR_BINARY, PUBLISHER_BINARY};
use peregrine_local::{Runner, RunnerOptions, function_config};
use peregrine_publisher::{AwsPublisherDeps, publish_due};
use peregrine_store::{PublishingFrequency, iso};
use peregrine_testkit::samples;
use prost::Message as _;
use serde_json::Value;

const AGENT: &str = "i-0a1b2c3d4e5f60718";
const NODE: &str = "ip-10-0-12-34.eu-west-1.compute.internal";

fn body(sequence: u64, events: &[peregrine_event::Event]) -> String {
    let msgs = samples::encode(AGENT, sequence, events, Timestamp::now()).unwrap();
    assert_eq!(msgs.len(), 1);
    msgs.into_iter().next().unwrap().body
}

/// The attacks of pod 0 among 200 ordinary events.
fn attack_batch(sequence: u64) -> String {
    let mut events = samples::benign(200, samples::T0, sequence);
    events.extend(samples::attack(0, samples::T0 + 50_000_000));
    events.sort_by_key(|e| e.time);
    body(sequence, &events)
}

/// The same message with its header's schema version bumped, re-framed as an agent would.
fn newer_schema(body: &str) -> String {
    let compressed = STANDARD.decode(body).unwrap();
    let raw = zstd::decode_all(compressed.as_slice()).unwrap();
    let mut env = peregrine_wire::pb::Envelope::decode(raw.as_slice()).unwrap();
    env.header.as_mut().unwrap().schema_version = peregrine_wire::SCHEMA_VERSION + 1;
    STANDARD.encode(zstd::encode_all(env.encode_to_vec().as_slice(), 3).unwrap())
}

fn fast_options(local: &Local) -> RunnerOptions {
    RunnerOptions {
        batching_window: Duration::ZERO,
        wait_time: Duration::from_secs(1),
        ..RunnerOptions::from_stack(&local.stack)
    }
}

fn envelope(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_batch_becomes_findings_and_high_severity_events() {
    let local = local().await;
    let runner = Runner::from_stack(&local.sdk, &local.stack, fast_options(&local)).unwrap();
    assert_eq!(
        runner.options().batch_size,
        10,
        "the template's DetectorBatchSize"
    );
    local.send("EventsQueue", &attack_batch(7)).await;
    let heartbeat = samples::heartbeat_body(AGENT, 8, Timestamp::now()).unwrap();
    local.send("EventsQueue", &heartbeat).await;

    let mut received = 0;
    while received < 2 {
        let report = runner.poll_once().await.unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(report.deleted, report.received);
        assert!(report.received > 0, "both messages arrive within the wait");
        received += report.received;
    }

    // Three findings, one per attack, with the attributes the template's indexes use.
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 3, "{items:?}");
    let ra = by_type(&items, RELEASE_AGENT);
    assert_eq!(n(ra, "severity"), 8);
    assert_eq!(s(ra, "severityLabel"), "High");
    assert_eq!(n(ra, "count"), 1);
    assert_eq!(s(ra, "clusterName"), "prod-eu");
    assert_eq!(s(ra, "accountId"), "123456789012");
    assert_eq!(s(ra, "updatedDay"), &s(ra, "updatedAt")[..10]);
    assert!(
        !ra.contains_key("publishState"),
        "published at once: {ra:?}"
    );
    assert_eq!(n(ra, "lastPublishedCount"), 1);
    for t in [SSH_KEYS, NEW_BINARY] {
        let item = by_type(&items, t);
        assert_eq!(s(item, "severityLabel"), "Medium");
        assert_eq!(n(item, "severity"), 5);
    }

    // The finding document: GuardDuty's shape with the pod, container, process and lineage.
    let f = finding(ra);
    assert_eq!(f["id"], s(ra, "id"));
    assert_eq!(f["type"], RELEASE_AGENT);
    assert_eq!(f["schemaVersion"], "2.0");
    assert_eq!(f["service"]["count"], 1);
    let workload = &f["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"];
    assert_eq!(workload["name"], "payments-api-7d9f00");
    assert_eq!(workload["namespace"], "payments");
    let container = samples::container(0, "", "", "", "");
    assert_eq!(
        f["resource"]["containerDetails"]["id"],
        container.id.as_str()
    );
    assert_eq!(f["resource"]["eksClusterDetails"]["name"], "prod-eu");
    let process = &f["service"]["runtimeDetails"]["process"];
    assert_eq!(process["executablePath"], "/bin/sh");
    let lineage: Vec<&str> = process["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["executablePath"].as_str().unwrap())
        .collect();
    assert_eq!(
        lineage,
        [
            "/bin/sh",
            "/usr/local/bin/python3.12",
            "/usr/bin/containerd-shim-runc-v2"
        ]
    );
    assert_eq!(
        f["service"]["runtimeDetails"]["context"]["releaseAgentPath"],
        "/tmp/x/release_agent"
    );
    assert_eq!(
        finding(by_type(&items, SSH_KEYS))["service"]["runtimeDetails"]["context"]["filePath"],
        "/root/.ssh/authorized_keys"
    );

    // The GSIs find them.
    assert_eq!(
        local
            .query_index("byType", "type", RELEASE_AGENT)
            .await
            .len(),
        1
    );
    assert_eq!(
        local
            .query_index("bySeverity", "severityLabel", "High")
            .await
            .len(),
        1
    );
    assert_eq!(
        local
            .query_index("bySeverity", "severityLabel", "Medium")
            .await
            .len(),
        2
    );
    assert_eq!(
        local
            .query_index("byCluster", "clusterName", "prod-eu")
            .await
            .len(),
        3
    );
    let today = &s(ra, "updatedAt")[..10];
    assert_eq!(
        local
            .query_index("byUpdatedDay", "updatedDay", today)
            .await
            .len(),
        3
    );
    assert!(
        local
            .query_index("byPublishState", "publishState", "PENDING")
            .await
            .is_empty()
    );

    // Only the severity-8 finding reaches the high-severity queue, through the template's
    // rule, as the whole event with the finding as detail.
    let delivered = local
        .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
        .await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let event = envelope(&delivered[0]);
    assert_eq!(event["source"], "peregrine");
    assert_eq!(event["detail-type"], "Peregrine Finding");
    assert_eq!(event["detail"], f);

    // The heartbeat row.
    let beats = local.scan("HeartbeatsTable").await;
    assert_eq!(beats.len(), 1);
    let hb = &beats[0];
    assert_eq!(s(hb, "clusterName"), "prod-eu");
    assert_eq!(
        s(hb, "nodeName"),
        "ip-10-0-12-34.eu-west-1.compute.internal"
    );
    assert_eq!(s(hb, "agentId"), AGENT);
    assert_eq!(n(hb, "nextSequence"), 8);
    assert_eq!(n(hb, "kernelRingbufFull"), 12);
    assert_eq!(n(hb, "probesFailed"), 1);
    let probes: Value = serde_json::from_str(s(hb, "probes")).unwrap();
    assert_eq!(probes.as_array().unwrap().len(), 3);
    let week = n(hb, "expiresAt") as i64 - Timestamp::now().unix_nanos() / 1_000_000_000;
    assert!((7 * 86_400 - 120..=7 * 86_400).contains(&week), "{week}");

    // An older heartbeat delivered late does not overwrite the newer one.
    let older = samples::heartbeat_body(AGENT, 3, Timestamp::from_unix_nanos(samples::T0)).unwrap();
    let deps = AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap();
    let r = handle(&deps, local.sqs_event(&[("late-heartbeat", &older)]))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(
        n(&local.scan("HeartbeatsTable").await[0], "nextSequence"),
        8
    );
}

#[tokio::test]
async fn a_redelivered_batch_counts_once() {
    let local = local().await;
    let deps = AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap();
    // 12 compromised pods among 2,000 events: 36 findings (more than one TransactGetItems).
    let message = body(11, &samples::busy_node(2_000, 12, 1, 11));
    // The same SQS message delivered twice (same id), then resent by the agent (new id).
    for id in ["m-1", "m-1", "m-2"] {
        let r = handle(&deps, local.sqs_event(&[(id, &message)]))
            .await
            .unwrap();
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
    }
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 36);
    for item in &items {
        assert_eq!(n(item, "count"), 1, "{item:?}");
        // Written once (version 1) and marked published once (version 2).
        assert_eq!(n(item, "version"), 2, "{item:?}");
        assert_eq!(n(item, "lastPublishedCount"), 1);
    }
    let keys = local.batch_keys().await;
    assert_eq!(keys, [format!("123456789012#prod-eu#{NODE}#{AGENT}#11#0")]);
    // Each high-severity finding published once.
    assert_eq!(
        local
            .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
            .await
            .len(),
        12
    );
    // Another batch with the same findings does count.
    let next = body(12, &samples::busy_node(2_000, 12, 1, 12));
    let r = handle(&deps, local.sqs_event(&[("m-3", &next)]))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 36);
    for item in &items {
        assert_eq!(n(item, "count"), 2, "{item:?}");
        assert_eq!(
            s(item, "publishState"),
            "PENDING",
            "an update waits for the frequency"
        );
    }
}

#[tokio::test]
async fn a_blinded_agent_is_a_high_finding_on_the_bus_and_a_degraded_row() {
    let local = local().await;
    let deps = AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap();
    let deliver = |id: &'static str, body: String| {
        let deps = &deps;
        let event = local.sqs_event(&[(id, &body)]);
        async move {
            let r = handle(deps, event).await.unwrap();
            assert!(r.batch_item_failures.is_empty(), "{r:?}");
        }
    };
    let t0 = Timestamp::now().unix_nanos() - 120_000_000_000;
    let at = |s: i64| Timestamp::from_unix_nanos(t0 + s * 1_000_000_000);

    // A healthy heartbeat: a HEALTHY row and no finding.
    deliver("healthy", samples::heartbeat_body(AGENT, 4, at(0)).unwrap()).await;
    let row = &local.scan("HeartbeatsTable").await[0];
    assert_eq!(s(row, "coverage"), "HEALTHY");
    assert!(local.scan("FindingsTable").await.is_empty());

    // The agent reports itself blind: the row is DEGRADED with the reasons, and one High
    // finding of our own type is stored and published at once.
    let blinded = samples::blinded_heartbeat_body(AGENT, 5, at(60)).unwrap();
    deliver("blinded", blinded.clone()).await;
    deliver("blinded", blinded).await; // a redelivery counts once
    let row = &local.scan("HeartbeatsTable").await[0];
    assert_eq!(s(row, "coverage"), "DEGRADED");
    let reasons: Value = serde_json::from_str(s(row, "blindingReasons")).unwrap();
    let codes: Vec<&str> = reasons
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["sustained_drops", "restart_loop"]);
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(
        s(item, "type"),
        "DefenseEvasion:Runtime/PeregrineAgentBlinded"
    );
    assert_eq!(s(item, "severityLabel"), "High");
    assert_eq!(n(item, "count"), 1);
    let f = finding(item);
    assert_eq!(f["resource"]["instanceDetails"]["nodeName"], NODE);
    assert_eq!(f["resource"]["eksClusterDetails"]["name"], "prod-eu");
    let info: Value =
        serde_json::from_str(f["service"]["additionalInfo"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(info["blindingReasons"], reasons);
    let delivered = local
        .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
        .await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let event = envelope(&delivered[0]);
    assert_eq!(
        event["detail"]["type"],
        "DefenseEvasion:Runtime/PeregrineAgentBlinded"
    );
    assert_eq!(event["detail"]["id"], f["id"]);

    // The next blinded heartbeat from the node is another occurrence of the same finding; a
    // healthy one turns the row back.
    deliver(
        "blinded-again",
        samples::blinded_heartbeat_body(AGENT, 5, at(120)).unwrap(),
    )
    .await;
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 1);
    assert_eq!(n(&items[0], "count"), 2);
    deliver(
        "healthy-again",
        samples::heartbeat_body(AGENT, 5, at(121)).unwrap(),
    )
    .await;
    let row = &local.scan("HeartbeatsTable").await[0];
    assert_eq!(s(row, "coverage"), "HEALTHY");
    assert_eq!(s(row, "blindingReasons"), "[]");
}

#[tokio::test]
async fn poison_messages_fail_alone() {
    let local = local().await;
    let deps = AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap();
    let good = attack_batch(21);
    let newer = newer_schema(&attack_batch(22));
    assert!(matches!(
        peregrine_wire::decode(&newer),
        Err(peregrine_wire::WireError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
    let response = handle(
        &deps,
        local.sqs_event(&[
            ("corrupt", "!!! not base64 at all"),
            ("good", &good),
            ("newer", &newer),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(failed_ids(&response), ["corrupt", "newer"]);
    // The sibling went through.
    assert_eq!(local.scan("FindingsTable").await.len(), 3);
}

#[tokio::test]
async fn a_poison_message_lands_in_the_dead_letter_queue() {
    let local = local().await;
    let options = RunnerOptions {
        retry_after: Some(Duration::ZERO),
        ..fast_options(&local)
    };
    let runner = Runner::from_stack(&local.sdk, &local.stack, options).unwrap();
    let poison = "KLUv/QBYbm90IGEgcmVhbCBtZXNzYWdl"; // zstd magic, then garbage
    let poison_id = local.send("EventsQueue", poison).await;
    local.send("EventsQueue", &attack_batch(31)).await;

    let max_receive = local
        .template
        .properties("EventsQueue")
        .and_then(|p| p.get("RedrivePolicy"))
        .and_then(|r| r.get("maxReceiveCount"))
        .and_then(|c| c.as_u64())
        .unwrap();
    assert_eq!(max_receive, 5);
    let mut poison_receives = 0;
    for _ in 0..(max_receive + 3) {
        let report = runner.poll_once().await.unwrap();
        if report.failed.contains(&poison_id) {
            poison_receives += 1;
        }
        if report.received == 0 {
            break;
        }
    }
    assert_eq!(
        poison_receives, max_receive,
        "failed on every receive up to maxReceiveCount"
    );
    let dead = local
        .drain("EventsDeadLetterQueue", Duration::from_secs(1))
        .await;
    assert_eq!(dead, [poison.to_owned()]);
    assert!(local.drain("EventsQueue", Duration::ZERO).await.is_empty());
    // The good sibling was processed once and deleted.
    assert_eq!(local.scan("FindingsTable").await.len(), 3);
}

#[tokio::test]
async fn a_failed_publish_is_left_for_the_publisher() {
    let local = local().await;
    let bus = local.stack.buses["FindingsBus"].clone();
    let rule = local.stack.rules["HighSeverityFindingsRule"].clone();
    // The bus does not exist yet when the detector runs.
    let events = aws_sdk_eventbridge::Client::new(&local.sdk);
    events
        .remove_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .ids("HighSeverityFindingsQueue")
        .send()
        .await
        .unwrap();
    events
        .delete_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .send()
        .await
        .unwrap();
    events.delete_event_bus().name(&bus).send().await.unwrap();

    let runner = Runner::from_stack(&local.sdk, &local.stack, fast_options(&local)).unwrap();
    local.send("EventsQueue", &attack_batch(41)).await;
    let report = runner.poll_once().await.unwrap();
    assert_eq!(
        (report.received, report.deleted),
        (1, 1),
        "stored, so the message is done"
    );

    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(s(item, "publishState"), "PENDING");
        assert!(
            s(item, "publishDueAt") <= s(item, "createdAt"),
            "due at once: {item:?}"
        );
        assert!(!item.contains_key("lastPublishedAt"));
    }
    assert_eq!(
        local
            .query_index("byPublishState", "publishState", "PENDING")
            .await
            .len(),
        3
    );

    // A publisher run while the bus is still missing keeps them pending.
    let summary = runner.publish_once().await.unwrap();
    assert_eq!(
        (
            summary.due,
            summary.published,
            summary.failed,
            summary.still_pending
        ),
        (3, 0, 3, 3)
    );

    // The bus and rule come back (provisioning again recreates only what is missing).
    let again = peregrine_local::provision(&local.sdk, &local.template, &Default::default())
        .await
        .unwrap();
    assert_eq!(again.buses["FindingsBus"], bus);
    let summary = runner.publish_once().await.unwrap();
    assert_eq!(
        (summary.due, summary.published, summary.still_pending),
        (3, 3, 0)
    );
    for item in &local.scan("FindingsTable").await {
        assert!(
            !item.contains_key("publishState") && !item.contains_key("publishDueAt"),
            "{item:?}"
        );
        assert_eq!(n(item, "lastPublishedCount"), 1);
    }
    let delivered = local
        .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
        .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(envelope(&delivered[0])["detail"]["type"], RELEASE_AGENT);
    // Nothing left to publish.
    assert_eq!(runner.publish_once().await.unwrap().due, 0);
}

#[tokio::test]
async fn updates_are_published_at_the_publishing_frequency() {
    let local = local().await;
    let detector_config: peregrine_detector::Config =
        function_config(&local.stack, DETECTOR_BINARY).unwrap();
    assert_eq!(
        detector_config.publishing_frequency,
        PublishingFrequency::FifteenMinutes
    );
    let deps = AwsDeps::from_sdk(&local.sdk, detector_config).unwrap();
    let publisher = AwsPublisherDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, PUBLISHER_BINARY).unwrap(),
    );
    let minute = 60_000_000_000;
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * minute);

    let first = body(1, &samples::release_agent_write(3, samples::T0));
    let r = handle_at(&deps, local.sqs_event(&[("a", &first)]), at(0))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    let second = body(2, &samples::release_agent_write(3, samples::T0 + minute));
    let r = handle_at(&deps, local.sqs_event(&[("b", &second)]), at(1))
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());

    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 1, "one finding id");
    let item = &items[0];
    assert_eq!(n(item, "count"), 2);
    assert_eq!(s(item, "publishState"), "PENDING");
    assert_eq!(s(item, "lastPublishedAt"), iso(at(0)));
    assert_eq!(n(item, "lastPublishedCount"), 1);
    assert_eq!(
        s(item, "publishDueAt"),
        iso(at(15)),
        "one frequency after the last publish"
    );
    assert_eq!(
        local
            .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
            .await
            .len(),
        1
    );

    // Not due yet: nothing is published.
    let summary = publish_due(&publisher, at(14), None).await.unwrap();
    assert_eq!((summary.due, summary.published), (0, 0));
    assert!(
        local
            .drain("HighSeverityFindingsQueue", Duration::ZERO)
            .await
            .is_empty()
    );
    assert_eq!(
        s(&local.scan("FindingsTable").await[0], "publishState"),
        "PENDING"
    );

    // Due: published once, with the aggregated count.
    let summary = publish_due(&publisher, at(15), None).await.unwrap();
    assert_eq!(
        (summary.due, summary.published, summary.still_pending),
        (1, 1, 0)
    );
    let delivered = local
        .drain("HighSeverityFindingsQueue", Duration::from_secs(1))
        .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(envelope(&delivered[0])["detail"]["service"]["count"], 2);
    let item = &local.scan("FindingsTable").await[0];
    assert!(!item.contains_key("publishState"));
    assert_eq!(s(item, "lastPublishedAt"), iso(at(15)));
    assert_eq!(n(item, "lastPublishedCount"), 2);
    assert_eq!(publish_due(&publisher, at(16), None).await.unwrap().due, 0);

    // A third occurrence long after: due one frequency after the last publish, i.e. at once.
    let third = body(
        3,
        &samples::release_agent_write(3, samples::T0 + 2 * minute),
    );
    handle_at(&deps, local.sqs_event(&[("c", &third)]), at(60))
        .await
        .unwrap();
    let item = &local.scan("FindingsTable").await[0];
    assert_eq!(s(item, "publishDueAt"), iso(at(30)));
    assert_eq!(
        publish_due(&publisher, at(60), None)
            .await
            .unwrap()
            .published,
        1
    );
}

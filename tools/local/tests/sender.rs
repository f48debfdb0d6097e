//! Sender identity against moto through the real handler (issue 11, item 1): a batch is bound
//! to the cluster of the role that sent it, agent clocks cannot move times out of the skew
//! window, dedupe keys are per account, cluster and node, and a future heartbeat cannot pin a
//! node's row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use common::*;
use lambda_runtime::LambdaEvent;
use peregrine_detector::{
    AwsDeps, Invocation, MessageError, MessageReport, handle_at, process_message,
};
use peregrine_event::Timestamp;
use peregrine_local::functions::DETECTOR_BINARY;
use peregrine_local::{Runner, RunnerOptions, function_config};
use peregrine_store::iso;
use peregrine_testkit::builders::agent_identity;
use peregrine_testkit::lambda::SqsEventBuilder;
use peregrine_testkit::samples;

const AGENT: &str = "i-0a1b2c3d4e5f60718";
const NODE: &str = "ip-10-0-12-34.eu-west-1.compute.internal";
/// The `SenderId` moto gives every message.
const MOTO_SENDER: &str = "AIDAIT2UOQQY3AUEKVGXU";
const HOUR: i64 = 3_600_000_000_000;

/// One batch with the attacks of pod 0 (three findings), from `(agent, node, cluster)`.
fn attack_from(agent: &str, node: &str, cluster: &str, sequence: u64, t: i64) -> String {
    let mut events = samples::benign(50, t, sequence);
    events.extend(samples::attack(0, t + 50_000_000));
    events.sort_by_key(|e| e.time);
    let msgs = samples::encode_as(
        agent_identity(agent, node, cluster),
        sequence,
        &events,
        Timestamp::from_unix_nanos(t),
    )
    .unwrap();
    assert_eq!(msgs.len(), 1);
    msgs.into_iter().next().unwrap().body
}

fn event(local: &Local, sender: &str, records: &[(&str, &str)]) -> LambdaEvent<SqsEvent> {
    let mut b = SqsEventBuilder::new(&local.stack.queues["EventsQueue"].arn)
        .sent(1_795_514_400_000, sender);
    for (id, body) in records {
        b = b.message(id, body);
    }
    LambdaEvent::new(b.build(), local.context("DetectorFunction"))
}

fn deps(local: &Local) -> AwsDeps {
    AwsDeps::from_sdk(
        &local.sdk,
        function_config(&local.stack, DETECTOR_BINARY).unwrap(),
    )
    .unwrap()
}

/// One message through `process_message`, as the detector function of `local` runs it.
async fn process(
    d: &AwsDeps,
    local: &Local,
    body: &str,
    sender: Option<&str>,
    now: Timestamp,
) -> Result<MessageReport, MessageError> {
    let inv = Invocation::from_function_arn(
        &local.stack.functions["DetectorFunction"].arn,
        Some("us-east-1"),
    )
    .unwrap();
    process_message(d, &inv, body, sender, now).await
}

#[tokio::test]
async fn a_batch_claiming_another_cluster_is_rejected_and_dead_lettered() {
    let local = local_with(
        "bound",
        &[(
            "AgentSenders",
            &format!("{MOTO_SENDER}=prod-eu,AROAOTHERROLE=stage"),
        )],
    )
    .await;
    let now = Timestamp::now().unix_nanos();
    // Through the handler: the reason is the failure's.
    let d = deps(&local);
    let own = attack_from(AGENT, NODE, "prod-eu", 1, now);
    let forged = attack_from(AGENT, NODE, "stage", 2, now);
    let r = handle_at(
        &d,
        event(
            &local,
            &format!("{MOTO_SENDER}:{AGENT}"),
            &[("own", &own), ("forged", &forged)],
        ),
        Timestamp::from_unix_nanos(now),
    )
    .await
    .unwrap();
    assert_eq!(failed_ids(&r), ["forged"]);
    let at = Timestamp::from_unix_nanos(now);
    let err = process(&d, &local, &forged, Some("AROAOTHERROLE:x"), at).await;
    assert!(err.is_ok(), "the stage role may send for stage: {err:?}");
    let err = process(&d, &local, &own, Some("AROAUNKNOWN:x"), at)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownSender"), "{err}");
    // Through the queue: moto's sender is mapped to prod-eu, so the forged batch fails on
    // every receive and ends in the dead-letter queue; the genuine one is processed.
    let runner = Runner::from_stack(
        &local.sdk,
        &local.stack,
        RunnerOptions {
            batching_window: Duration::ZERO,
            wait_time: Duration::from_secs(1),
            retry_after: Some(Duration::ZERO),
            ..RunnerOptions::from_stack(&local.stack)
        },
    )
    .unwrap();
    let forged = attack_from(AGENT, NODE, "stage", 3, now);
    let forged_id = local.send("EventsQueue", &forged).await;
    local
        .send("EventsQueue", &attack_from(AGENT, NODE, "prod-eu", 4, now))
        .await;
    let mut forged_receives = 0;
    for _ in 0..10 {
        let report = runner.poll_once().await.unwrap();
        if report.failed.contains(&forged_id) {
            forged_receives += 1;
        }
        if report.received == 0 {
            break;
        }
    }
    assert_eq!(forged_receives, 5, "maxReceiveCount");
    let dead = local
        .drain("EventsDeadLetterQueue", Duration::from_secs(1))
        .await;
    assert_eq!(dead, [forged]);
    let keys = local.batch_keys().await;
    assert!(
        keys.iter()
            .any(|k| k.contains("#prod-eu#") && k.contains("#4#")),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("#3#")),
        "the forged batch wrote nothing: {keys:?}"
    );
}

#[tokio::test]
async fn future_times_are_clamped_to_the_receive_time() {
    let local = local().await;
    let d = deps(&local);
    let now = Timestamp::now();
    // The header and every event two hours ahead of the detector's clock.
    let future = attack_from(AGENT, NODE, "prod-eu", 1, now.unix_nanos() + 2 * HOUR);
    let r = handle_at(&d, event(&local, MOTO_SENDER, &[("m", &future)]), now)
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.len(), 3);
    let received = iso(now);
    for item in &items {
        let f = finding(item);
        for k in ["eventFirstSeen", "eventLastSeen"] {
            let t = f["service"][k].as_str().unwrap();
            assert!(t <= received.as_str(), "{k} {t} is after {received}");
        }
        let info: serde_json::Value =
            serde_json::from_str(f["service"]["additionalInfo"]["value"].as_str().unwrap())
                .unwrap();
        assert_eq!(info["clockSkewClamped"], true, "{info}");
    }
    // Times inside the window are kept.
    let fine = attack_from(AGENT, NODE, "prod-eu", 2, now.unix_nanos() - HOUR);
    let report = process(&d, &local, &fine, None, now).await.unwrap();
    assert_eq!(report.clamped, 0);
    let unflagged = local
        .scan("FindingsTable")
        .await
        .iter()
        .map(finding)
        .filter(|f| {
            !f["service"]["additionalInfo"]["value"]
                .as_str()
                .unwrap()
                .contains("clockSkewClamped")
        })
        .count();
    assert_eq!(
        unflagged, 0,
        "same finding ids: the in-window batch adds occurrences"
    );
    let ahead = attack_from(AGENT, NODE, "prod-eu", 3, now.unix_nanos() + 2 * HOUR);
    let report = process(&d, &local, &ahead, None, now).await.unwrap();
    assert_eq!(
        report.clamped,
        report.events + 1,
        "every event and the header"
    );
}

#[tokio::test]
async fn same_agent_and_sequence_on_other_nodes_do_not_collide() {
    let local = local().await;
    let d = deps(&local);
    let now = Timestamp::now();
    let t = now.unix_nanos() - HOUR;
    let a = attack_from(AGENT, NODE, "prod-eu", 7, t);
    let b = attack_from(AGENT, "ip-10-9-9-9.ec2.internal", "stage", 7, t);
    let r = handle_at(&d, event(&local, MOTO_SENDER, &[("a", &a), ("b", &b)]), now)
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let keys = local.batch_keys().await;
    assert_eq!(
        keys,
        [
            format!("123456789012#prod-eu#{NODE}#{AGENT}#7#0"),
            format!("123456789012#stage#ip-10-9-9-9.ec2.internal#{AGENT}#7#0"),
        ]
    );
    // Both batches counted: three occurrences each (whether the two clusters' findings share
    // ids is the finding id's business), their times in the window unflagged.
    let items = local.scan("FindingsTable").await;
    assert_eq!(items.iter().map(|i| n(i, "count")).sum::<u64>(), 6);
    for item in &items {
        let f = finding(item);
        let info = f["service"]["additionalInfo"]["value"].as_str().unwrap();
        assert!(!info.contains("clockSkewClamped"), "{info}");
    }
}

#[tokio::test]
async fn a_future_heartbeat_does_not_pin_the_row() {
    let local = local().await;
    let d = deps(&local);
    let now = Timestamp::now();
    let day_ahead = Timestamp::from_unix_nanos(now.unix_nanos() + 24 * HOUR);
    let hb = samples::heartbeat_body(AGENT, 8, day_ahead).unwrap();
    let r = handle_at(&d, event(&local, MOTO_SENDER, &[("h1", &hb)]), now)
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let rows = local.scan("HeartbeatsTable").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(s(&rows[0], "lastSeen"), iso(now));

    // The agent's next, honest heartbeat a minute later is stored.
    let later = Timestamp::from_unix_nanos(now.unix_nanos() + 60_000_000_000);
    let hb = samples::heartbeat_body(AGENT, 9, later).unwrap();
    let r = handle_at(&d, event(&local, MOTO_SENDER, &[("h2", &hb)]), later)
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty(), "{r:?}");
    let rows = local.scan("HeartbeatsTable").await;
    assert_eq!(s(&rows[0], "lastSeen"), iso(later));
    assert_eq!(n(&rows[0], "nextSequence"), 9);
}

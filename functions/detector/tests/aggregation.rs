//! The handler's aggregation and publishing logic over the in-memory adapters: fast, and able
//! to stage what moto cannot (a concurrent writer between read and write, throttling in the
//! middle of a multi-chunk batch). `tools/local/tests/pipeline.rs` proves the same behaviours
//! against DynamoDB and EventBridge in moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use peregrine_detector::{Config, Deps, RetryPolicy, handle_at};
use peregrine_event::Timestamp;
use peregrine_lambda::FromEnv;
use peregrine_publisher::{PublisherDeps, publish_due};
use peregrine_store::memory::{MemoryBus, MemoryFindingStore, MemoryHeartbeats, MemoryHub};
use peregrine_store::{PublishItem, iso, send_and_mark};
use peregrine_testkit::samples;

type MemDeps = Deps<MemoryFindingStore, MemoryBus, MemoryHeartbeats>;

const MINUTE: i64 = 60_000_000_000;

fn lookup(k: &str) -> Option<String> {
    Some(
        match k {
            "FINDINGS_TABLE" => "f",
            "DEDUPE_TABLE" => "d",
            "HEARTBEATS_TABLE" => "h",
            "EVENT_BUS_NAME" => "b",
            "FINDING_PUBLISHING_FREQUENCY" => "FIFTEEN_MINUTES",
            "DETECTOR_ID" => "peregrine",
            "AWS_REGION" => "us-east-1",
            _ => return None,
        }
        .to_owned(),
    )
}

fn config() -> Config {
    Config::from_lookup(lookup).unwrap()
}

fn deps() -> MemDeps {
    let mut d = Deps::new(
        MemoryFindingStore::new(),
        MemoryBus::new(),
        MemoryHeartbeats::new(),
        config(),
    )
    .unwrap();
    d.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    d
}

fn sqs(records: &[(&str, &str)]) -> LambdaEvent<SqsEvent> {
    let mut event = SqsEvent::default();
    event.records = records
        .iter()
        .map(|(id, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some((*id).into());
            m.body = Some((*body).into());
            m
        })
        .collect();
    let mut ctx = Context::default();
    ctx.invoked_function_arn =
        "arn:aws:lambda:us-east-1:123456789012:function:peregrine-DetectorFunction".into();
    LambdaEvent::new(event, ctx)
}

fn body(sequence: u64, events: &[peregrine_event::Event]) -> String {
    let mut m = samples::encode("i-0mem", sequence, events, Timestamp::now()).unwrap();
    assert_eq!(m.len(), 1);
    m.remove(0).body
}

fn failures(r: &aws_lambda_events::sqs::SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

fn counts(store: &MemoryFindingStore, ids: &[String]) -> Vec<u64> {
    ids.iter()
        .map(|id| store.get(id).unwrap().finding.service.count)
        .collect()
}

#[tokio::test]
async fn repeats_fold_and_redeliveries_count_once() {
    let d = deps();
    let now = Timestamp::now();
    // Pod 0 attacks three times in one batch: three findings, each with count 3.
    let mut events = samples::benign(300, samples::T0, 1);
    for r in 0..3 {
        events.extend(samples::attack(0, samples::T0 + r * MINUTE));
    }
    events.sort_by_key(|e| e.time);
    let b = body(5, &events);
    for id in ["m", "m", "m-resent"] {
        let r = handle_at(&d, sqs(&[(id, &b)]), now).await.unwrap();
        assert!(failures(&r).is_empty());
    }
    assert_eq!(d.store.len(), 3);
    assert_eq!(
        d.store.dedupe_keys(),
        ["123456789012#prod-eu#ip-10-0-12-34.eu-west-1.compute.internal#i-0mem#5#0"]
    );
    assert_eq!(
        d.store.transactions(),
        3,
        "one per delivery; two found the marker"
    );
    let events = d.bus.events();
    assert_eq!(events.len(), 3, "each new finding published once");
    for e in &events {
        let f: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(f["service"]["count"], 3);
        let stored = d.store.get(f["id"].as_str().unwrap()).unwrap();
        assert_eq!(stored.finding.service.count, 3);
        assert_eq!(stored.outbox.pending_due, None);
        assert_eq!(stored.outbox.last_published_count, Some(3));
    }
}

#[tokio::test]
async fn a_concurrent_update_is_re_read_and_merged() {
    let d = deps();
    let t0 = Timestamp::now();
    let first = body(1, &samples::release_agent_write(4, samples::T0));
    handle_at(&d, sqs(&[("a", &first)]), t0).await.unwrap();
    let id = d
        .bus
        .events()
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.detail).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .next()
        .unwrap();

    // Between the detector's read and its write, another invocation adds 5 occurrences.
    let other = id.clone();
    d.store.interfere_once(move |findings| {
        let f = findings.get_mut(&other).unwrap();
        f.finding.service.count += 5;
        f.version += 1;
    });
    let second = body(2, &samples::release_agent_write(4, samples::T0 + MINUTE));
    let r = handle_at(
        &d,
        sqs(&[("b", &second)]),
        Timestamp::from_unix_nanos(t0.unix_nanos() + MINUTE),
    )
    .await
    .unwrap();
    assert!(failures(&r).is_empty());
    assert_eq!(
        counts(&d.store, std::slice::from_ref(&id)),
        [7],
        "1 + 5 concurrent + 1, none lost"
    );
    assert_eq!(
        d.store.transactions(),
        3,
        "the conflicting write was retried once"
    );
    let stored = d.store.get(&id).unwrap();
    assert_eq!(
        stored.outbox.pending_due,
        Some(Timestamp::from_unix_nanos(t0.unix_nanos() + 15 * MINUTE))
    );
}

#[tokio::test]
async fn a_multi_chunk_batch_survives_a_failure_half_way() {
    let d = deps();
    let now = Timestamp::now();
    // 50 compromised pods: 150 distinct findings, two chunks (99 + 51).
    let mut events = Vec::new();
    for pod in 0..50 {
        events.extend(samples::attack(pod, samples::T0 + i64::from(pod) * 1_000));
    }
    let b = body(9, &events);
    let r = handle_at(&d, sqs(&[("big", &b)]), now).await.unwrap();
    assert!(failures(&r).is_empty());
    assert_eq!(d.store.len(), 150);
    assert_eq!(
        d.store.dedupe_keys(),
        [
            "123456789012#prod-eu#ip-10-0-12-34.eu-west-1.compute.internal#i-0mem#9#0",
            "123456789012#prod-eu#ip-10-0-12-34.eu-west-1.compute.internal#i-0mem#9#1"
        ]
    );

    // Again on a fresh store: chunk 0 goes through, chunk 1 is throttled on every attempt of
    // this delivery.
    let d2 = deps();
    d2.store.throttle_after(1, 100);
    let r = handle_at(&d2, sqs(&[("big", &b)]), now).await.unwrap();
    assert_eq!(
        failures(&r),
        ["big"],
        "throttled past the retry budget: the message fails"
    );
    assert_eq!(d2.store.len(), 99, "chunk 0 is written");
    assert_eq!(
        d2.store.dedupe_keys(),
        ["123456789012#prod-eu#ip-10-0-12-34.eu-west-1.compute.internal#i-0mem#9#0"]
    );
    assert_eq!(
        d2.bus.events().len(),
        99,
        "chunk 0's new findings are published"
    );

    // The redelivery skips chunk 0 and writes chunk 1: every finding counted once.
    d2.store.throttle_next(0);
    let r = handle_at(&d2, sqs(&[("big", &b)]), now).await.unwrap();
    assert!(failures(&r).is_empty());
    assert_eq!(d2.store.len(), 150);
    assert_eq!(
        d2.store.dedupe_keys(),
        [
            "123456789012#prod-eu#ip-10-0-12-34.eu-west-1.compute.internal#i-0mem#9#0",
            "123456789012#prod-eu#ip-10-0-12-34.eu-west-1.compute.internal#i-0mem#9#1"
        ]
    );
    assert_eq!(d2.bus.events().len(), 150, "each finding published once");
    for e in d2.bus.events() {
        let f: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
        assert_eq!(f["service"]["count"], 1);
    }
}

#[tokio::test]
async fn the_outbox_publishes_what_failed_and_what_is_due() {
    let d = deps();
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    d.bus.fail_entries(Some("InternalFailure"));
    let first = body(1, &samples::release_agent_write(2, samples::T0));
    handle_at(&d, sqs(&[("a", &first)]), at(0)).await.unwrap();
    assert!(d.bus.events().is_empty());
    let publisher = PublisherDeps {
        store: d.store,
        bus: d.bus,
        hub: None::<MemoryHub>,
        config: peregrine_publisher::Config::from_lookup(lookup).unwrap(),
        retry: RetryPolicy::default(),
    };
    // Still failing: stays pending.
    let s = publish_due(&publisher, at(1), None).await.unwrap();
    assert_eq!(
        (s.due, s.published, s.failed, s.still_pending),
        (1, 0, 1, 1)
    );
    // The bus recovers: published, recorded.
    publisher.bus.fail_entries(None);
    let s = publish_due(&publisher, at(2), None).await.unwrap();
    assert_eq!((s.due, s.published, s.still_pending), (1, 1, 0));
    let f: serde_json::Value = serde_json::from_str(&publisher.bus.events()[0].detail).unwrap();
    let id = f["id"].as_str().unwrap().to_owned();
    let stored = publisher.store.get(&id).unwrap();
    assert_eq!(stored.outbox.last_published_at, Some(at(2)));
    assert_eq!(stored.outbox.pending_due, None);

    // A publish of a version that has since changed is not recorded: it stays pending.
    let stale = PublishItem::new(&stored).unwrap();
    let mut newer = stored.clone();
    newer.finding.service.count += 1;
    newer.version += 1;
    newer.outbox.pending_due = Some(at(17));
    publisher.store.insert(newer); // a concurrent update
    let c = send_and_mark(&publisher.store, &publisher.bus, &[stale], at(3)).await;
    assert_eq!((c.published, c.superseded, c.still_pending()), (1, 1, 1));
    let kept = publisher.store.get(&id).unwrap();
    assert_eq!(kept.outbox.pending_due, Some(at(17)));
    assert_eq!(iso(kept.outbox.last_published_at.unwrap()), iso(at(2)));
    // Not due before 17 minutes; due after.
    assert_eq!(publish_due(&publisher, at(16), None).await.unwrap().due, 0);
    assert_eq!(
        publish_due(&publisher, at(17), None)
            .await
            .unwrap()
            .published,
        1
    );
}

#[tokio::test]
async fn heartbeats_are_kept_newest_first() {
    let d = deps();
    let now = Timestamp::now();
    let newer = samples::heartbeat_body("i-0mem", 10, now).unwrap();
    let older = samples::heartbeat_body(
        "i-0mem",
        4,
        Timestamp::from_unix_nanos(now.unix_nanos() - MINUTE),
    )
    .unwrap();
    let r = handle_at(&d, sqs(&[("new", &newer), ("old", &older)]), now)
        .await
        .unwrap();
    assert!(failures(&r).is_empty());
    let id = samples::identity("i-0mem");
    let row = d.heartbeats.get(&id.cluster_name, &id.node_name).unwrap();
    assert_eq!(row.next_sequence, 10);
    assert_eq!(row.probes_failed, 1);
    assert_eq!(row.user_queue_full, 3);
    assert!(row.probes_json.contains("\"state\":\"failed\""));
}

#[tokio::test]
async fn a_sender_bound_to_a_cluster_arn_places_its_agents_findings_and_heartbeats() {
    let arn = "arn:aws:eks:eu-west-1:444455556666:cluster/prod-eu";
    let senders = format!("AROAAGENT={arn}");
    let config = Config::from_lookup(|k| match k {
        "AGENT_SENDERS" => Some(senders.clone()),
        _ => lookup(k),
    })
    .unwrap();
    let d = Deps::new(
        MemoryFindingStore::new(),
        MemoryBus::new(),
        MemoryHeartbeats::new(),
        config,
    )
    .unwrap();
    let now = Timestamp::now();
    // The sample agent was not told its ARN: the binding supplies it.
    let batch = body(1, &samples::attack(0, samples::T0));
    let hb = samples::heartbeat_body("i-0mem", 2, now).unwrap();
    let mut event = sqs(&[("b", &batch), ("h", &hb)]);
    for r in &mut event.payload.records {
        r.attributes
            .insert("SenderId".into(), "AROAAGENT:i-0mem".into());
    }
    let r = handle_at(&d, event, now).await.unwrap();
    assert!(failures(&r).is_empty(), "{r:?}");
    let findings = d.store.all();
    assert!(!findings.is_empty());
    for f in &findings {
        assert_eq!(f.finding.account_id, "444455556666");
        assert_eq!(f.finding.region, "eu-west-1");
        assert_eq!(
            f.finding
                .resource
                .eks_cluster_details
                .as_ref()
                .and_then(|c| c.arn.as_deref()),
            Some(arn)
        );
    }
    let id = samples::identity("i-0mem");
    assert!(d.heartbeats.get(&id.cluster_name, &id.node_name).is_none());
    let row = d.heartbeats.get(arn, &id.node_name).unwrap();
    assert_eq!(row.cluster_arn.as_deref(), Some(arn));

    // An ARN naming another account for the same cluster name is refused.
    let other = peregrine_wire::AgentIdentity {
        cluster_arn: Some(
            "arn:aws:eks:eu-west-1:777788889999:cluster/prod-eu"
                .parse()
                .unwrap(),
        ),
        ..samples::identity("i-0mem")
    };
    let forged = samples::reporting_heartbeat_body(other, 3, now).unwrap();
    let mut event = sqs(&[("f", &forged)]);
    event.payload.records[0]
        .attributes
        .insert("SenderId".into(), "AROAAGENT:i-0mem".into());
    let r = handle_at(&d, event, now).await.unwrap();
    assert_eq!(failures(&r), ["f"]);
}

const RELEASE_AGENT: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";

fn archive_release_agent() -> peregrine_criteria::Filter {
    peregrine_criteria::Filter {
        name: "release-agent".into(),
        description: String::new(),
        action: peregrine_criteria::Action::Archive,
        rank: 1,
        finding_criteria: serde_json::json!({"criterion": {"type": {"eq": [RELEASE_AGENT]}}}),
        tags: Default::default(),
    }
}

fn published_types(bus: &MemoryBus) -> Vec<String> {
    let mut t: Vec<String> = bus
        .events()
        .iter()
        .map(|e| {
            let f: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            f["type"].as_str().unwrap().to_owned()
        })
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn archive_filters_suppress_at_create_and_update_and_a_failed_read_retries_the_batch() {
    let d = deps();
    d.store.set_filters(vec![archive_release_agent()]);
    let now = Timestamp::now();
    let first = body(1, &samples::attack(0, samples::T0));

    // The filters cannot be read (throttled past the retries): the message fails and is
    // redelivered; nothing is written, so nothing is published.
    d.store.fail_filters_next(10);
    let r = handle_at(&d, sqs(&[("m1", &first)]), now).await.unwrap();
    assert_eq!(failures(&r), ["m1"]);
    assert!(d.store.is_empty() && d.bus.events().is_empty());

    // Redelivered once they can: the release_agent finding is stored archived and never
    // published; the two others are published as usual.
    d.store.fail_filters_next(0);
    let r = handle_at(&d, sqs(&[("m1", &first)]), now).await.unwrap();
    assert!(failures(&r).is_empty());
    assert_eq!(d.store.len(), 3);
    let published = published_types(&d.bus);
    assert_eq!(published.len(), 2);
    assert!(
        !published.iter().any(|t| t == RELEASE_AGENT),
        "{published:?}"
    );
    let all = d.store.all();
    let suppressed = all
        .iter()
        .find(|f| f.finding.finding_type == RELEASE_AGENT)
        .unwrap();
    assert!(suppressed.finding.service.archived);
    assert_eq!(suppressed.outbox.pending_due, None);
    assert_eq!(suppressed.outbox.last_published_at, None);
    // Every finding expires FindingRetentionDays (90 by default) after its write.
    for f in &all {
        assert_eq!(
            f.expires_at,
            Some(peregrine_store::epoch_seconds(now) + 90 * 24 * 3600)
        );
    }

    // A later occurrence updates it, still archived and still not published, even once the
    // publishing frequency has passed; the others' updates are.
    let later = Timestamp::from_unix_nanos(now.unix_nanos() + 20 * MINUTE);
    let second = body(2, &samples::attack(0, samples::T0 + MINUTE));
    let r = handle_at(&d, sqs(&[("m2", &second)]), later).await.unwrap();
    assert!(failures(&r).is_empty());
    let again = d.store.get(&suppressed.finding.id).unwrap();
    assert_eq!(again.finding.service.count, 2);
    assert!(again.finding.service.archived);
    assert_eq!(again.outbox.pending_due, None);
    let publisher = PublisherDeps {
        store: d.store,
        bus: d.bus,
        hub: None::<MemoryHub>,
        config: peregrine_publisher::Config::from_lookup(lookup).unwrap(),
        retry: RetryPolicy::default(),
    };
    let late = Timestamp::from_unix_nanos(later.unix_nanos() + 20 * MINUTE);
    publish_due(&publisher, late, None).await.unwrap();
    let published = published_types(&publisher.bus);
    assert_eq!(published.len(), 4, "{published:?}");
    assert!(
        !published.iter().any(|t| t == RELEASE_AGENT),
        "{published:?}"
    );
}

#[tokio::test]
async fn a_filter_that_does_not_compile_fails_the_batch_rather_than_being_skipped() {
    let d = deps();
    let mut bad = archive_release_agent();
    bad.finding_criteria = serde_json::json!({"criterion": {"nope": {"eq": ["x"]}}});
    d.store.set_filters(vec![bad]);
    let r = handle_at(
        &d,
        sqs(&[("m", &body(1, &samples::attack(0, samples::T0)))]),
        Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(failures(&r), ["m"]);
    assert!(d.store.is_empty() && d.bus.events().is_empty());
}

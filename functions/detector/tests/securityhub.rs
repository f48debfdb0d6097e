//! The Security Hub export over the in-memory adapters: the detector's real findings, published
//! by it and the publisher, imported into a Security Hub stand-in that can refuse calls and
//! single findings. `tools/local/tests/securityhub.rs` proves the same against moto.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use peregrine_aws::Failure;
use peregrine_detector::{Config, Deps, RetryPolicy, handle_at};
use peregrine_event::Timestamp;
use peregrine_lambda::FromEnv;
use peregrine_publisher::{PublisherDeps, publish_due};
use peregrine_store::memory::{MemoryBus, MemoryFindingStore, MemoryHeartbeats, MemoryHub};
use peregrine_store::{HubError, HubPending, add, import_retry_delay};
use peregrine_testkit::samples;

const MINUTE: i64 = 60_000_000_000;
const AGENT: &str = "i-0mem";
const PRODUCT: &str = "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default";
const RELEASE_AGENT: &str = "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified";

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
            "SECURITY_HUB_PRODUCT_ARN" => PRODUCT,
            _ => return None,
        }
        .to_owned(),
    )
}

type Detector = Deps<MemoryFindingStore, MemoryBus, MemoryHeartbeats>;
type Publisher = PublisherDeps<MemoryFindingStore, MemoryBus, MemoryHub>;

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

/// The detector with the export on, as the template configures it.
fn detector() -> Detector {
    let config = Config::from_lookup(lookup).unwrap();
    let store = MemoryFindingStore::new()
        .with_security_hub_export(config.security_hub_product_arn.is_some());
    let mut d = Deps::new(store, MemoryBus::new(), MemoryHeartbeats::new(), config).unwrap();
    d.retry = fast_retry(3);
    d
}

/// The publisher over the detector's store and bus, with the in-memory Security Hub.
fn publisher(d: Detector) -> Publisher {
    PublisherDeps {
        store: d.store,
        bus: d.bus,
        hub: Some(MemoryHub::new()),
        config: peregrine_publisher::Config::from_lookup(lookup).unwrap(),
        retry: fast_retry(3),
    }
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
    let mut m = samples::encode(AGENT, sequence, events, Timestamp::now()).unwrap();
    assert_eq!(m.len(), 1);
    m.remove(0).body
}

/// Pod 0's three attacks (container findings) and a blinded agent (a node finding).
async fn four_findings(d: &Detector, at: Timestamp) {
    let attack = body(1, &samples::attack(0, samples::T0));
    let blinded = samples::blinded_heartbeat_body(AGENT, 2, at).unwrap();
    let r = handle_at(d, sqs(&[("a", &attack), ("hb", &blinded)]), at)
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
}

fn ids(p: &Publisher) -> Vec<String> {
    let mut ids: Vec<String> = p
        .bus
        .events()
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.detail).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn hub(p: &Publisher) -> &MemoryHub {
    p.hub.as_ref().unwrap()
}

#[tokio::test]
async fn published_findings_are_imported_and_updates_imported_again() {
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let d = detector();
    four_findings(&d, at(0)).await;
    let p = publisher(d);
    let ids = ids(&p);
    assert_eq!(ids.len(), 4, "published by the detector");
    // Published: an import is due, from the publish.
    for id in &ids {
        let s = p.store.get(id).unwrap();
        assert_eq!(s.outbox.pending_due, None);
        assert_eq!(
            s.outbox.security_hub,
            Some(HubPending {
                due: at(0),
                attempts: 0
            })
        );
    }

    let s = publish_due(&p, at(1), None).await.unwrap();
    let sh = s.security_hub.unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.failed, sh.still_pending),
        (4, 4, 0, 0)
    );
    assert_eq!(hub(&p).calls(), 1, "one call for four findings");
    let held = hub(&p).findings();
    for id in &ids {
        let stored = p.store.get(id).unwrap();
        assert_eq!(stored.outbox.security_hub, None);
        assert_eq!(stored.outbox.last_imported_at, Some(at(1)));
        let a = &held[&stored.finding.arn];
        assert_eq!(a.product_arn, PRODUCT);
        assert_eq!(a.aws_account_id, "123456789012");
        assert_eq!(a.product_fields["peregrine/service/count"], "1");
    }
    let types: Vec<&str> = held.values().map(|a| a.types[0].as_str()).collect();
    assert!(types.contains(
        &"TTPs/Privilege Escalation/PrivilegeEscalation:Runtime-CGroupsReleaseAgentModified"
    ));
    assert!(types.contains(&"TTPs/Defense Evasion/DefenseEvasion:Runtime-PeregrineAgentBlinded"));
    let containers = held.values().filter(|a| a.resources.len() == 2).count();
    assert_eq!(
        containers, 3,
        "the pod's findings name the container; the node's does not"
    );
    // Nothing more to import.
    assert_eq!(
        publish_due(&p, at(2), None)
            .await
            .unwrap()
            .security_hub
            .unwrap()
            .due,
        0
    );

    // A second occurrence of the release_agent write: count 2, published at the frequency,
    // then imported again under the same Id.
    let d = Deps::new(
        p.store,
        p.bus,
        MemoryHeartbeats::new(),
        Config::from_lookup(lookup).unwrap(),
    )
    .unwrap();
    let again = body(3, &samples::release_agent_write(0, samples::T0 + MINUTE));
    handle_at(&d, sqs(&[("b", &again)]), at(3)).await.unwrap();
    let p = PublisherDeps {
        store: d.store,
        bus: d.bus,
        hub: p.hub,
        config: p.config,
        retry: p.retry,
    };
    let s = publish_due(&p, at(10), None).await.unwrap();
    assert_eq!(
        s.security_hub.unwrap().due,
        0,
        "not published yet, so not imported"
    );
    let s = publish_due(&p, at(15), None).await.unwrap();
    assert_eq!(s.published, 1);
    assert_eq!(s.security_hub.unwrap().imported, 1);
    let held = hub(&p).findings();
    assert_eq!(held.len(), 4, "the same Id, updated");
    let updated = held
        .values()
        .find(|a| a.product_fields["peregrine/type"] == RELEASE_AGENT)
        .unwrap();
    assert_eq!(updated.product_fields["peregrine/service/count"], "2");
    assert!(updated.updated_at > updated.created_at);
}

#[tokio::test]
async fn a_refusing_security_hub_never_holds_up_eventbridge_and_the_next_run_imports() {
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let d = detector();
    // EventBridge is down when the detector runs: the publisher publishes them.
    d.bus.fail_entries(Some("InternalFailure"));
    four_findings(&d, at(0)).await;
    let p = publisher(d);
    p.bus.fail_entries(None);
    // Security Hub is not enabled in the account.
    hub(&p).refuse_next(HubError {
        failure: Failure::Denied,
        code: "InvalidAccessException".into(),
        message: "Account 123456789012 is not subscribed to AWS Security Hub".into(),
    });
    let s = publish_due(&p, at(1), None).await.unwrap();
    assert_eq!(
        (s.due, s.published, s.still_pending),
        (4, 4, 0),
        "all published"
    );
    let sh = s.security_hub.unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.failed, sh.still_pending),
        (4, 0, 4, 4)
    );
    assert_eq!(
        hub(&p).calls(),
        1,
        "a refused account is not retried in the run"
    );
    for id in ids(&p) {
        let stored = p.store.get(&id).unwrap();
        assert_eq!(stored.outbox.pending_due, None, "published");
        assert_eq!(
            stored.outbox.security_hub,
            Some(HubPending {
                due: at(1),
                attempts: 0
            }),
            "still due, not set back: the next run tries again"
        );
    }

    // Security Hub is enabled: the next run imports them.
    let s = publish_due(&p, at(2), None).await.unwrap();
    assert_eq!(s.due, 0);
    let sh = s.security_hub.unwrap();
    assert_eq!((sh.imported, sh.still_pending), (4, 0));
    assert_eq!(hub(&p).findings().len(), 4);
}

#[tokio::test]
async fn throttling_is_retried_within_the_run_then_left_for_the_next() {
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let d = detector();
    four_findings(&d, at(0)).await;
    let p = publisher(d);
    let throttled = || HubError {
        failure: Failure::Throttled,
        code: "TooManyRequestsException".into(),
        message: "Rate exceeded".into(),
    };
    // Throttled twice, then taken: one run.
    hub(&p).refuse_next(throttled());
    hub(&p).refuse_next(throttled());
    let sh = publish_due(&p, at(1), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!((sh.imported, sh.still_pending), (4, 0));
    assert_eq!(hub(&p).calls(), 3);

    // A new finding, and Security Hub throttles past the retry budget (3 attempts): left
    // pending, unchanged, for the next run.
    let d = Deps::new(
        p.store,
        p.bus,
        MemoryHeartbeats::new(),
        Config::from_lookup(lookup).unwrap(),
    )
    .unwrap();
    let other = body(4, &samples::release_agent_write(7, samples::T0));
    handle_at(&d, sqs(&[("c", &other)]), at(2)).await.unwrap();
    let p = PublisherDeps {
        store: d.store,
        bus: d.bus,
        hub: p.hub,
        config: p.config,
        retry: p.retry,
    };
    for _ in 0..5 {
        hub(&p).refuse_next(throttled());
    }
    let calls = hub(&p).calls();
    let sh = publish_due(&p, at(3), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.failed, sh.still_pending),
        (1, 0, 1, 1)
    );
    assert_eq!(hub(&p).calls() - calls, 3, "the retry budget");
    let pending: Vec<HubPending> = ids(&p)
        .iter()
        .filter_map(|id| p.store.get(id).unwrap().outbox.security_hub)
        .collect();
    assert_eq!(
        pending,
        [HubPending {
            due: at(2),
            attempts: 0
        }]
    );
    // The remaining refusals are used up by the next run's first two attempts; the third
    // goes through.
    let sh = publish_due(&p, at(4), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!((sh.imported, sh.still_pending), (1, 0));
    assert_eq!(hub(&p).findings().len(), 5);
}

#[tokio::test]
async fn a_finding_security_hub_refuses_is_set_back_and_the_others_go_through() {
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let d = detector();
    four_findings(&d, at(0)).await;
    let p = publisher(d);
    let id = ids(&p)[0].clone();
    let arn = p.store.get(&id).unwrap().finding.arn;
    hub(&p).fail_finding(&arn, Some("InvalidInput"));

    let sh = publish_due(&p, at(1), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.failed, sh.still_pending),
        (4, 3, 1, 1)
    );
    let first = add(at(1), import_retry_delay(1));
    assert_eq!(
        p.store.get(&id).unwrap().outbox.security_hub,
        Some(HubPending {
            due: first,
            attempts: 1
        })
    );
    // Not due before its time: not even tried.
    let calls = hub(&p).calls();
    let sh = publish_due(&p, at(1), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!(sh.due, 0);
    assert_eq!(hub(&p).calls(), calls);
    // Refused again: set back twice as far.
    let sh = publish_due(&p, first, None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!((sh.due, sh.failed), (1, 1));
    let second = add(first, import_retry_delay(2));
    assert_eq!(second, add(first, Duration::from_secs(120)));
    assert_eq!(
        p.store.get(&id).unwrap().outbox.security_hub,
        Some(HubPending {
            due: second,
            attempts: 2
        })
    );
    // Taken at last.
    hub(&p).fail_finding(&arn, None);
    let sh = publish_due(&p, second, None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!((sh.imported, sh.still_pending), (1, 0));
    assert_eq!(hub(&p).findings().len(), 4);
    assert_eq!(p.store.get(&id).unwrap().outbox.security_hub, None);
}

#[tokio::test]
async fn with_the_export_off_nothing_is_queued_for_security_hub() {
    let mut d = Deps::new(
        MemoryFindingStore::new(),
        MemoryBus::new(),
        MemoryHeartbeats::new(),
        Config::from_lookup(|k| {
            (k != "SECURITY_HUB_PRODUCT_ARN")
                .then(|| lookup(k))
                .flatten()
        })
        .unwrap(),
    )
    .unwrap();
    d.retry = fast_retry(3);
    let now = Timestamp::now();
    four_findings(&d, now).await;
    let p = PublisherDeps {
        store: d.store,
        bus: d.bus,
        hub: None::<MemoryHub>,
        config: peregrine_publisher::Config::from_lookup(|k| {
            (k != "SECURITY_HUB_PRODUCT_ARN")
                .then(|| lookup(k))
                .flatten()
        })
        .unwrap(),
        retry: fast_retry(3),
    };
    for id in ids(&p) {
        assert_eq!(p.store.get(&id).unwrap().outbox.security_hub, None);
    }
    assert_eq!(publish_due(&p, now, None).await.unwrap().security_hub, None);
}

#[tokio::test]
async fn findings_of_another_account_s_cluster_are_published_but_not_imported() {
    let t0 = Timestamp::now();
    let at = |m: i64| Timestamp::from_unix_nanos(t0.unix_nanos() + m * MINUTE);
    let d = detector();
    // The agent names its cluster by ARN, in another account: the findings are that account's.
    let identity = peregrine_wire::AgentIdentity {
        cluster_arn: Some(
            "arn:aws:eks:us-east-1:210987654321:cluster/prod-eu"
                .parse()
                .unwrap(),
        ),
        ..samples::identity(AGENT)
    };
    let body = samples::encode_as(identity, 1, &samples::attack(0, samples::T0), at(0))
        .unwrap()
        .remove(0)
        .body;
    let r = handle_at(&d, sqs(&[("a", &body)]), at(0)).await.unwrap();
    assert!(r.batch_item_failures.is_empty());
    let p = publisher(d);
    let ids = ids(&p);
    assert_eq!(ids.len(), 3, "published on EventBridge");
    for id in &ids {
        assert_eq!(p.store.get(id).unwrap().finding.account_id, "210987654321");
    }

    // Security Hub takes only this account's findings under its default product: skipped,
    // and no longer due.
    let sh = publish_due(&p, at(1), None)
        .await
        .unwrap()
        .security_hub
        .unwrap();
    assert_eq!(
        (sh.due, sh.imported, sh.skipped, sh.failed, sh.still_pending),
        (3, 0, 3, 0, 0)
    );
    assert_eq!(
        hub(&p).calls(),
        0,
        "nothing Security Hub would refuse is sent"
    );
    for id in &ids {
        let s = p.store.get(id).unwrap();
        assert_eq!(s.outbox.security_hub, None);
        assert_eq!(s.outbox.last_imported_at, None);
    }
    assert_eq!(
        publish_due(&p, at(2), None)
            .await
            .unwrap()
            .security_hub
            .unwrap()
            .due,
        0
    );
}

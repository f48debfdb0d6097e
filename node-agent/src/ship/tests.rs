//! The batcher, the sender and heartbeats against an in-memory queue.

use std::{path::Path, sync::Arc, time::Duration};

use peregrine_aws::Failure;
use peregrine_event::{Detail, Event, ExecInfo, Kind, Process, Timestamp};
use peregrine_wire::{AgentIdentity, EncoderConfig, Message, decode};

use super::{
    Shared, ShipConfig, ShippingSink,
    batcher::Batcher,
    queue::{MemoryQueue, Scripted},
    sender::Sender,
};
use crate::{
    health::{Health, Pipeline},
    metrics::{Metrics, ReasonLabel},
    probes::{AttachState, ProbeStatus},
    sink::EventSink,
    spool::{FullPolicy, Limits, Spool},
};

fn event(marker: &str) -> Event {
    Event {
        kind: Kind::Exec,
        time: Timestamp::now(),
        tid: 7,
        process: Arc::new(Process {
            pid: 7,
            exe: "/bin/sh".into(),
            argv: vec!["sh".into(), marker.into()],
            ..Process::default()
        }),
        container: None,
        detail: Detail::Exec(ExecInfo {
            filename: "/bin/sh".into(),
            ..ExecInfo::default()
        }),
    }
}

fn identity(spool: &Spool) -> AgentIdentity {
    AgentIdentity {
        agent_id: spool.agent_id().to_string(),
        node_name: "node-1".into(),
        cluster_name: "test".into(),
        cluster_arn: Some(
            "arn:aws:eks:eu-west-1:111122223333:cluster/test"
                .parse()
                .unwrap(),
        ),
        agent_version: "0".into(),
    }
}

/// A batcher sealing every event on its own, and a sender, on one spool.
fn stage(
    dir: &Path,
    limits: Limits,
    queue: &Arc<MemoryQueue>,
) -> (Arc<Shared>, Batcher, Sender<Arc<MemoryQueue>>) {
    let health = Health::default();
    let spool = Spool::open(dir, limits, health.clone());
    let first = spool.next_sequence();
    let id = identity(&spool);
    let shared = Arc::new(Shared {
        spool,
        wake: tokio::sync::Notify::new(),
        metrics: Metrics::default(),
        health,
        events_sent: 0.into(),
        next_batch: first.into(),
    });
    let batcher = Batcher::new(
        shared.clone(),
        id,
        EncoderConfig::default(),
        first,
        1,
        Duration::from_secs(3600),
    )
    .unwrap();
    let sender = Sender::new(queue.clone(), shared.clone());
    (shared, batcher, sender)
}

async fn seal_events(b: &mut Batcher, markers: impl IntoIterator<Item = String>) {
    for m in markers {
        b.push(event(&m)).unwrap();
        assert!(b.full());
        b.seal().await.unwrap();
    }
}

fn markers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The markers of the batches among `bodies`, in the order received, and their sequences.
fn batches(bodies: &[String]) -> (Vec<String>, Vec<u64>) {
    let mut markers = Vec::new();
    let mut seqs = Vec::new();
    for b in bodies {
        if let Message::Batch { header, events } = decode(b).unwrap() {
            // Every batch names the configured cluster by ARN too (ship_config).
            assert_eq!(
                header.cluster_arn.as_ref().map(|a| a.as_str()),
                Some("arn:aws:eks:eu-west-1:111122223333:cluster/test")
            );
            seqs.push(header.sequence);
            for e in events {
                markers.push(e.process.argv[1].clone());
            }
        }
    }
    (markers, seqs)
}

fn failures(shared: &Shared, reason: &'static str) -> u64 {
    shared
        .metrics
        .send_failures
        .get_or_create(&ReasonLabel { reason })
        .get()
}

#[tokio::test]
async fn the_sender_drains_oldest_first_ten_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let (shared, mut batcher, sender) = stage(dir.path(), Limits::default(), &queue);
    let want = markers("m", 25);
    seal_events(&mut batcher, want.clone()).await;
    assert_eq!(shared.spool.depth().0, 25);

    assert_eq!(sender.send_some().await, Ok(true));
    assert_eq!(queue.received().len(), 10);
    assert_eq!(sender.send_some().await, Ok(true));
    assert_eq!(sender.send_some().await, Ok(true));
    assert_eq!(sender.send_some().await, Ok(false), "nothing left");

    let (got, seqs) = batches(&queue.received());
    assert_eq!(got, want, "in the order sealed");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(shared.spool.depth(), (0, 0));
    assert_eq!(shared.state().events_sent, 25);
    assert_eq!(shared.metrics.messages_sent.get(), 25);
    assert_eq!(shared.metrics.events_shipped.get(), 25);
}

#[tokio::test]
async fn throttling_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let (shared, mut batcher, sender) = stage(dir.path(), Limits::default(), &queue);
    seal_events(&mut batcher, markers("t", 3)).await;

    // The whole call is throttled: everything stays spooled, the failure is counted.
    queue.script(Scripted::Fail(Failure::Throttled));
    assert_eq!(sender.send_some().await, Err(Failure::Throttled));
    assert_eq!(shared.spool.depth().0, 3);
    assert_eq!(failures(&shared, "throttled"), 1);
    assert!(queue.received().is_empty());

    // One entry is throttled: the others leave the spool, it stays and is retried.
    queue.script(Scripted::FailEntries(vec![(
        1,
        "ThrottlingException",
        false,
    )]));
    assert_eq!(sender.send_some().await, Err(Failure::Throttled));
    assert_eq!(shared.spool.depth().0, 1);
    assert_eq!(sender.send_some().await, Ok(true));
    assert_eq!(shared.spool.depth().0, 0);
    let (got, _) = batches(&queue.received());
    assert_eq!(got, ["t-0", "t-2", "t-1"]);
    assert_eq!(shared.metrics.messages_rejected.get(), 0);
}

#[tokio::test]
async fn a_message_refused_for_good_is_set_aside_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let (shared, mut batcher, sender) = stage(dir.path(), Limits::default(), &queue);
    seal_events(&mut batcher, markers("r", 2)).await;
    queue.script(Scripted::FailEntries(vec![(
        0,
        "InvalidMessageContents",
        true,
    )]));
    assert_eq!(sender.send_some().await, Ok(true));
    assert_eq!(shared.spool.depth().0, 0);
    assert_eq!(shared.metrics.messages_rejected.get(), 1);
    let rejected = std::fs::read_dir(dir.path().join("rejected"))
        .unwrap()
        .count();
    assert_eq!(rejected, 1);
    let (got, _) = batches(&queue.received());
    assert_eq!(got, ["r-1"]);
}

#[tokio::test]
async fn an_unknown_error_code_is_retried_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let (shared, mut batcher, sender) = stage(dir.path(), Limits::default(), &queue);
    seal_events(&mut batcher, markers("u", 2)).await;
    // Blamed on the sender, but not a code known to be permanent: it may be new, or transient.
    queue.script(Scripted::FailEntries(vec![(
        0,
        "SomeCodeAddedNextYear",
        true,
    )]));
    assert_eq!(sender.send_some().await, Err(Failure::Throttled));
    assert_eq!(shared.metrics.messages_rejected.get(), 0);
    assert_eq!(failures(&shared, "entry"), 1);
    assert_eq!(shared.spool.depth().0, 1);
    assert!(!dir.path().join("rejected").exists());
    assert_eq!(sender.send_some().await, Ok(true));
    let (got, _) = batches(&queue.received());
    assert_eq!(got, ["u-1", "u-0"]);
}

#[tokio::test]
async fn an_unusable_spool_directory_degrades_instead_of_failing_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let queue = Arc::new(MemoryQueue::new());
    // Down while we look, so the sender does not empty the memory first.
    queue.set_down(Some(Failure::Unavailable));
    let health = Health::default();
    health.set_pipeline(Pipeline::Running);
    let metrics = Metrics::default();
    let mut sink = ShippingSink::with_queue(
        queue.clone(),
        ship_config(&file.join("spool")),
        metrics.clone(),
        health.clone(),
    )
    .unwrap();
    let want = markers("d", 4);
    for m in &want {
        sink.emit(event(m)).await.unwrap();
    }
    assert!(health.snapshot().spool_degraded);
    assert_eq!(metrics.spool_memory_messages.get(), 2);
    assert!(health.healthz().1.contains("\"status\":\"degraded\""));
    // Messages held in memory are still sent.
    queue.set_down(None);
    sink.close().await.unwrap();
    let (got, _) = batches(&queue.received());
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_full_spool_drops_by_policy_and_counts_it_in_health() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let limits = Limits {
        max_messages: 2,
        max_bytes: u64::MAX,
        policy: FullPolicy::DropOldest,
        ..Limits::default()
    };
    let (shared, mut batcher, sender) = stage(dir.path(), limits, &queue);
    seal_events(&mut batcher, markers("f", 3)).await;
    let drops = shared.health.drops();
    assert_eq!((drops.downstream_messages, drops.downstream_events), (1, 1));
    assert_eq!(shared.state().spool_dropped_events, 1);
    assert_eq!(sender.send_some().await, Ok(true));
    let (got, _) = batches(&queue.received());
    assert_eq!(got, ["f-1", "f-2"], "the oldest went");
}

fn ship_config(dir: &Path) -> ShipConfig {
    ShipConfig {
        queue_url: "memory".into(),
        cluster_name: "test".into(),
        cluster_arn: Some(
            "arn:aws:eks:eu-west-1:111122223333:cluster/test"
                .parse()
                .unwrap(),
        ),
        node_name: "node-1".into(),
        batch_max_events: 2,
        batch_max_delay: Duration::from_secs(3600),
        spool_dir: dir.to_path_buf(),
        spool: Limits::default(),
        heartbeat_interval: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn an_outage_fills_the_spool_and_recovery_drains_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    queue.set_down(Some(Failure::Unavailable));
    let metrics = Metrics::default();
    let mut sink = ShippingSink::with_queue(
        queue.clone(),
        ship_config(dir.path()),
        metrics.clone(),
        Health::default(),
    )
    .unwrap();
    let want = markers("o", 6);
    for m in &want {
        sink.emit(event(m)).await.unwrap();
    }
    // Sealed in pairs, all on disk, while every send fails.
    assert_eq!(sink.shared.spool.depth().0, 3);
    let failed = || {
        metrics
            .send_failures
            .get_or_create(&ReasonLabel {
                reason: "unavailable",
            })
            .get()
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while failed() < 2 {
        assert!(std::time::Instant::now() < until, "the sender never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(queue.received().is_empty());
    assert_eq!(sink.shared.spool.depth().0, 3);

    // The queue comes back: close() waits for the sender to drain the spool.
    queue.set_down(None);
    sink.close().await.unwrap();
    assert_eq!(sink.shared.spool.depth().0, 0);
    let (got, seqs) = batches(&queue.received());
    assert_eq!(got, want);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test]
async fn heartbeats_carry_health_and_shipping_state() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    let health = Health::default();
    health.record_probes(&[ProbeStatus {
        program: "exec",
        target: "sched/sched_process_exec".into(),
        state: AttachState::Attached,
        error: None,
    }]);
    health.user_queue_full();
    let mut cfg = ship_config(dir.path());
    cfg.heartbeat_interval = Duration::from_millis(20);
    let mut sink =
        ShippingSink::with_queue(queue.clone(), cfg, Metrics::default(), health.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(queue.received().is_empty(), "none before the pipeline runs");

    health.set_pipeline(Pipeline::Running);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let hb = loop {
        let got = queue.received().iter().find_map(|b| match decode(b) {
            Ok(Message::Heartbeat { heartbeat, .. }) => Some(heartbeat),
            _ => None,
        });
        if let Some(hb) = got {
            break hb;
        }
        assert!(std::time::Instant::now() < until, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(hb.node_name, "node-1");
    assert_eq!(
        hb.cluster_arn.as_ref().map(|a| a.account_id()),
        Some("111122223333")
    );
    assert_eq!(hb.agent_id, sink.agent_id());
    assert_eq!(hb.probes.len(), 1);
    assert_eq!(hb.drops.user_queue_full, 1);
    assert!(!hb.kernel_release.is_empty());
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_blind_spell_between_heartbeats_is_reported_by_the_next_delivered_one() {
    use peregrine_event::{BlindingKind, BlindingReason};
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(MemoryQueue::new());
    queue.set_down(Some(Failure::Unavailable));
    let health = Health::default();
    let metrics = Metrics::default();
    let mut cfg = ship_config(dir.path());
    cfg.heartbeat_interval = Duration::from_millis(20);
    let mut sink =
        ShippingSink::with_queue(queue.clone(), cfg, metrics.clone(), health.clone()).unwrap();
    // Blind for one tick, then not: over before any heartbeat goes out.
    let reason = BlindingReason::new(BlindingKind::SustainedDrops, "3 ticks");
    health.record_tick(1, std::slice::from_ref(&reason));
    health.record_tick(2, &[]);
    health.set_pipeline(Pipeline::Running);
    // Heartbeats fail for a while: the reason waits for one that is delivered.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.heartbeat_failures.get() < 3 {
        assert!(std::time::Instant::now() < until, "no heartbeat tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    queue.set_down(None);
    let heartbeats = || -> Vec<Box<peregrine_wire::Heartbeat>> {
        queue
            .received()
            .iter()
            .filter_map(|b| match decode(b) {
                Ok(Message::Heartbeat { heartbeat, .. }) => Some(heartbeat),
                _ => None,
            })
            .collect()
    };
    while heartbeats().len() < 2 {
        assert!(std::time::Instant::now() < until, "no heartbeats");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hbs = heartbeats();
    assert_eq!(hbs[0].blinding, [reason], "reported once delivered");
    assert!(hbs[1].blinding.is_empty(), "and only once");
    sink.close().await.unwrap();
}

//! Shipping to SQS through outages: the real agent (`run`), real eBPF capture, and a local AWS
//! (moto) that is stopped and restarted under it. Needs root and moto (scripts/setup).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use aws_sdk_sqs::Client;
use common::{Agent, WAIT, unique};
use peregrine_event::Kind;
use peregrine_testkit::moto::Moto;
use peregrine_wire::{Message, decode};

const QUEUE: &str = "peregrine-events";

async fn create_queue(client: &Client) -> String {
    client
        .create_queue()
        .queue_name(QUEUE)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize,
            "1048576",
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

/// Receives and deletes what is in the queue: until a receive comes back empty, and for at
/// most a few seconds (heartbeats keep arriving every second).
async fn drain(client: &Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let got = common::stack::receive_bodies(client, url).await;
        if got.is_empty() {
            break;
        }
        bodies.extend(got);
    }
    bodies
}

fn exec_markers(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let m = format!("{prefix}-{i}");
            assert!(
                Command::new("/bin/sh")
                    .args(["-c", "exit 0", &m])
                    .status()
                    .unwrap()
                    .success()
            );
            m
        })
        .collect()
}

/// Marker argv strings found in exec events of these message bodies, and batch identities.
#[derive(Default)]
struct Seen {
    markers: BTreeSet<String>,
    /// (agent id, sequence) → body
    batches: BTreeMap<(String, u64), String>,
    duplicates: usize,
    heartbeats: Vec<peregrine_wire::Heartbeat>,
}

impl Seen {
    fn add(&mut self, body: &str) {
        match decode(body).unwrap() {
            Message::Batch { header, events } => {
                let key = (header.agent_id.clone(), header.sequence);
                if let Some(prev) = self.batches.insert(key, body.to_string()) {
                    // Redelivery of the same batch is absorbed by the detector's dedupe: it must
                    // be byte-identical.
                    assert_eq!(
                        prev, body,
                        "a sequence number was reused for different content"
                    );
                    self.duplicates += 1;
                }
                for e in events.iter().filter(|e| e.kind == Kind::Exec) {
                    self.markers.extend(
                        e.process
                            .argv
                            .iter()
                            .filter(|a| a.starts_with("pg-ship-"))
                            .cloned(),
                    );
                }
            }
            Message::Heartbeat { heartbeat, .. } => self.heartbeats.push(*heartbeat),
        }
    }
}

/// The markers sealed into spool files on disk (what an outage keeps).
fn spooled_markers(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for ent in std::fs::read_dir(dir).unwrap().flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".msg") {
            continue;
        }
        if let Ok(Message::Batch { events, .. }) =
            decode(&std::fs::read_to_string(ent.path()).unwrap())
        {
            for e in events.iter().filter(|e| e.kind == Kind::Exec) {
                out.extend(
                    e.process
                        .argv
                        .iter()
                        .filter(|a| a.starts_with("pg-ship-"))
                        .cloned(),
                );
            }
        }
    }
    out
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_args(url: &str, spool: &Path) -> Vec<String> {
    [
        "run",
        "--queue-url",
        url,
        "--cluster-name",
        "test-cluster",
        "--node-name",
        "node-1",
        "--spool-dir",
        spool.to_str().unwrap(),
        "--batch-max-delay-ms",
        "200",
        "--heartbeat-interval-s",
        "1",
        "--drain-timeout-s",
        "1",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[test]
fn outages_and_crashes_lose_nothing_spooled() {
    common::require_root();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut moto = Moto::start().unwrap();
    let client = Client::new(&rt.block_on(moto.sdk_config()));
    let url = rt.block_on(create_queue(&client));
    let spool = tempfile::tempdir().unwrap();
    let tag = unique("ship");
    let mut seen = Seen::default();

    // Phase A: SQS is up; batches flow and leave the spool.
    let mut agent = Agent::start_with(&run_args(&url, spool.path()), &moto.env());
    let a = exec_markers(&format!("{tag}-a"), 10);
    agent.wait_metric("peregrine_messages_sent_total", 1.0);
    wait_until("phase A markers in SQS", || {
        for b in rt.block_on(drain(&client, &url)) {
            seen.add(&b);
        }
        a.iter().all(|m| seen.markers.contains(m))
    });

    // Phase B: SQS goes away; batches pile up in the spool; sends fail and are counted.
    // moto forgets its queues when it stops, which real SQS never does to a message it has
    // acknowledged: so the agent is paused and the queue drained first, or a batch sent in the
    // last moments (other processes on the host keep making events) would vanish with moto and
    // look like a gap. A request caught half-way fails after the resume and is spooled.
    // SAFETY: signals to our own child.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGSTOP) };
    // A request the agent had fully sent is answered within moments.
    std::thread::sleep(Duration::from_millis(500));
    for b in rt.block_on(drain(&client, &url)) {
        seen.add(&b);
    }
    moto.stop();
    // SAFETY: as above.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGCONT) };
    let b = exec_markers(&format!("{tag}-b"), 10);
    wait_until("phase B markers spooled on disk", || {
        let on_disk = spooled_markers(spool.path());
        b.iter().all(|m| on_disk.contains(m))
    });
    agent.wait_metric("peregrine_spool_messages", 1.0);
    // (The SDK retries a failed connection itself before the sender counts a failure.)
    agent.wait_metric("peregrine_send_failures_total{reason=\"unavailable\"}", 1.0);

    // The agent crashes during the outage and comes back: the spool survives the restart.
    agent.kill();
    let mut agent = Agent::start_with(&run_args(&url, spool.path()), &moto.env());
    let c = exec_markers(&format!("{tag}-c"), 10);
    wait_until("phase C markers spooled on disk", || {
        let on_disk = spooled_markers(spool.path());
        c.iter().all(|m| on_disk.contains(m)) && b.iter().all(|m| on_disk.contains(m))
    });

    // SQS returns (moto restarts empty: the queue is recreated under the same URL).
    moto.restart().unwrap();
    let client = Client::new(&rt.block_on(moto.sdk_config()));
    assert_eq!(rt.block_on(create_queue(&client)), url);
    wait_until("the spool to drain", || {
        for b in rt.block_on(drain(&client, &url)) {
            seen.add(&b);
        }
        agent.metric("peregrine_spool_messages").unwrap_or(1.0) == 0.0
            && b.iter().chain(&c).all(|m| seen.markers.contains(m))
    });
    assert!(agent.stop().success());
    for body in rt.block_on(drain(&client, &url)) {
        seen.add(&body);
    }

    // Every marker arrived.
    for m in a.iter().chain(&b).chain(&c) {
        assert!(seen.markers.contains(m), "{m} was lost");
    }
    // Sequence numbers: per agent run (epoch, the high 32 bits), no gap from the first batch
    // seen to the last. (Phase A's batches were drained before the outage, so run 1 is
    // complete from its first batch.)
    let mut by_epoch: BTreeMap<(String, u64), Vec<u64>> = BTreeMap::new();
    for (agent_id, seq) in seen.batches.keys() {
        by_epoch
            .entry((agent_id.clone(), seq >> 32))
            .or_default()
            .push(seq & 0xffff_ffff);
    }
    assert_eq!(
        by_epoch.len(),
        2,
        "one agent id, two runs: {:?}",
        by_epoch.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        by_epoch
            .keys()
            .map(|(a, _)| a)
            .collect::<BTreeSet<_>>()
            .len(),
        1,
        "the agent id survives restarts"
    );
    for ((_, epoch), seqs) in &by_epoch {
        let (lo, hi) = (seqs[0], seqs[seqs.len() - 1]);
        assert_eq!(
            seqs.len() as u64,
            hi - lo + 1,
            "run {epoch}: batches {seqs:?} have a gap"
        );
        assert_eq!(lo, 1, "run {epoch} starts at its first batch");
    }
    // Heartbeats describe the node.
    let hb = seen.heartbeats.last().expect("heartbeats arrive");
    assert_eq!(
        (hb.cluster_name.as_str(), hb.node_name.as_str()),
        ("test-cluster", "node-1")
    );
    assert!(
        hb.probes
            .iter()
            .any(|p| p.state == peregrine_wire::ProbeState::Attached)
    );
    assert!(!hb.kernel_release.is_empty());
    assert!(hb.events_sent > 0);
}

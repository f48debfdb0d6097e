//! Shipping (`peregrine-agent run`): events → batches → disk spool → message queue (SQS).
//!
//! The [`batcher`] seals batches by size or age, encodes them with the wire format and writes
//! them to the spool before anything is sent, so a crash or an outage loses nothing that was
//! sealed. The [`sender`] drains the spool oldest first, at most 10 messages and 1 MiB per
//! call; a message leaves the spool only once the queue has acknowledged it. While the queue
//! is unreachable or throttling, the sender backs off with full jitter and the spool grows, up
//! to its limits; then its full policy applies and is counted. [`heartbeat`]s go on their own
//! schedule and are not spooled: a lost heartbeat is superseded by the next.

pub mod batcher;
pub mod heartbeat;
pub mod queue;
pub mod sender;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use peregrine_event::{ClusterArn, Event};
use peregrine_wire::{AgentIdentity, EncoderConfig, WireError};
use tokio::sync::Notify;

use self::{
    batcher::Batcher,
    queue::{MessageQueue, SqsQueue},
    sender::Sender,
};
use crate::{
    health::{Health, ShippingState},
    metrics::Metrics,
    sink::EventSink,
    spool::{self, Spool},
};

#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub queue_url: String,
    pub cluster_name: String,
    pub cluster_arn: Option<ClusterArn>,
    pub node_name: String,
    /// A batch is sealed once it holds this many events...
    pub batch_max_events: usize,
    /// ... or once its oldest event is this old.
    pub batch_max_delay: Duration,
    pub spool_dir: PathBuf,
    pub spool: spool::Limits,
    pub heartbeat_interval: Duration,
    /// How long shutdown waits for the spool to drain before leaving the rest on disk.
    pub drain_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("wire format: {0}")]
    Wire(#[from] WireError),
    #[error("writing to the spool was interrupted: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
}

/// What the batcher, the sender and the heartbeats share.
struct Shared {
    spool: Spool,
    /// Wakes the sender when a batch is sealed.
    wake: Notify,
    metrics: Metrics,
    health: Health,
    /// Events the queue acknowledged.
    events_sent: AtomicU64,
    /// The sequence number the next batch will carry (heartbeats report it, so the detector
    /// can tell a missing batch from one not yet sent).
    next_batch: AtomicU64,
}

impl Shared {
    fn update_spool_gauges(&self) {
        let (messages, bytes) = self.spool.depth();
        self.metrics.spool_messages.set(messages as i64);
        self.metrics.spool_bytes.set(bytes as i64);
        let (messages, bytes) = self.spool.memory_depth();
        self.metrics.spool_memory_messages.set(messages as i64);
        self.metrics.spool_memory_bytes.set(bytes as i64);
    }

    /// What shipping adds to a heartbeat.
    fn state(&self) -> ShippingState {
        let (messages, bytes) = self.spool.depth();
        let (_, dropped_events) = self.spool.dropped();
        ShippingState {
            spool_messages: messages as u64,
            spool_bytes: bytes,
            spool_dropped_events: dropped_events,
            events_sent: self.events_sent.load(Ordering::Relaxed),
        }
    }
}

/// The `EventSink` of `peregrine-agent run`.
pub struct ShippingSink {
    shared: Arc<Shared>,
    batcher: Batcher,
    cfg: ShipConfig,
    identity: AgentIdentity,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ShippingSink {
    /// Ships to the SQS queue `cfg.queue_url`.
    pub fn start(
        sdk: &aws_config::SdkConfig,
        cfg: ShipConfig,
        metrics: Metrics,
        health: Health,
    ) -> Result<ShippingSink, ShipError> {
        let queue = SqsQueue::new(sdk, cfg.queue_url.clone());
        ShippingSink::with_queue(Arc::new(queue), cfg, metrics, health)
    }

    /// Opens the spool (resuming what a previous run left) and starts the sender and the
    /// heartbeat tasks on `queue`.
    pub fn with_queue<Q: MessageQueue>(
        queue: Arc<Q>,
        cfg: ShipConfig,
        metrics: Metrics,
        health: Health,
    ) -> Result<ShippingSink, ShipError> {
        // Never fails: a full or unwritable disk degrades to holding messages in memory.
        let spool = Spool::open(&cfg.spool_dir, cfg.spool, health.clone());
        let (depth, bytes) = spool.depth();
        if depth > 0 {
            tracing::info!(
                messages = depth,
                bytes,
                "resuming spooled messages from a previous run"
            );
        }
        let identity = AgentIdentity {
            agent_id: spool.agent_id().to_string(),
            node_name: cfg.node_name.clone(),
            cluster_name: cfg.cluster_name.clone(),
            cluster_arn: cfg.cluster_arn.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let first_sequence = spool.next_sequence();
        let shared = Arc::new(Shared {
            spool,
            wake: Notify::new(),
            metrics,
            health,
            events_sent: AtomicU64::new(0),
            next_batch: AtomicU64::new(first_sequence),
        });
        let batcher = Batcher::new(
            shared.clone(),
            identity.clone(),
            EncoderConfig::default(),
            first_sequence,
            cfg.batch_max_events,
            cfg.batch_max_delay,
        )?;
        let started = Instant::now();
        let tasks = vec![
            tokio::spawn(Sender::new(queue.clone(), shared.clone()).run()),
            tokio::spawn(heartbeat::run(
                queue,
                shared.clone(),
                identity.clone(),
                cfg.heartbeat_interval,
                started,
            )),
        ];
        shared.update_spool_gauges();
        Ok(ShippingSink {
            shared,
            batcher,
            cfg,
            identity,
            started,
            tasks,
        })
    }

    pub fn agent_id(&self) -> &str {
        &self.identity.agent_id
    }
}

impl EventSink for ShippingSink {
    type Error = ShipError;

    async fn emit(&mut self, ev: Event) -> Result<(), ShipError> {
        self.batcher.push(ev)?;
        if self.batcher.full() {
            self.batcher.seal().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ShipError> {
        if self.batcher.due() {
            self.batcher.seal().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), ShipError> {
        self.batcher.seal().await?;
        // Give the sender a chance to drain; what it cannot send stays spooled for next time.
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while self.shared.spool.depth().0 > 0 && Instant::now() < deadline {
            self.shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (left, bytes) = self.shared.spool.depth();
        if left > 0 {
            tracing::warn!(
                messages = left,
                bytes,
                "stopping with messages still spooled; they are sent on the next start"
            );
        }
        for t in &self.tasks {
            t.abort();
        }
        tracing::info!(uptime = ?self.started.elapsed(), "shipping stopped");
        Ok(())
    }
}

impl Drop for ShippingSink {
    fn drop(&mut self) {
        // The sender and heartbeats serve this sink only.
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests;

//! Shipping (`peregrine-agent run`): events → batches → disk spool → SQS.
//!
//! Batches are sealed by size or age, encoded with the wire format, and written to the spool
//! before anything is sent, so a crash or an outage loses nothing that was sealed. A sender
//! task drains the spool oldest first with SendMessageBatch (at most 10 entries and 1 MiB per
//! call); a message leaves the spool only once SQS has acknowledged it. While SQS is
//! unreachable or throttling, the sender backs off with full jitter and the spool grows, up to
//! its limits; then its full policy applies and is counted. Heartbeats go on their own
//! schedule and are not spooled: a lost heartbeat is superseded by the next.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aws_sdk_sqs::{Client, types::SendMessageBatchRequestEntry};
use peregrine_aws::{Failure, classify};
use peregrine_event::{Event, Timestamp};
use peregrine_wire::{
    AgentIdentity, BatchEncoder, EncoderConfig, Heartbeat, WireError, encode_heartbeat,
};
use tokio::sync::Notify;

use crate::{
    metrics::{Metrics, ReasonLabel},
    probes::{AttachState, ProbeStatus},
    sink::{AgentStatus, EventSink, SinkError},
    spool::{self, Spool, SpoolError},
};

#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub queue_url: String,
    pub cluster_name: String,
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
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("wire format: {0}")]
    Wire(#[from] WireError),
}

/// Backoff with full jitter: a random delay in [0, min(max, base * 2^attempt)].
struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            attempt: 0,
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }

    fn next(&mut self) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        cap.mul_f64(fastrand::f64())
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Shared between the sink, the sender and the heartbeat task.
struct Shared {
    client: Client,
    queue_url: String,
    spool: Spool,
    wake: Notify,
    metrics: Metrics,
    /// True while the last send attempt failed (for logs and the heartbeat).
    failing: AtomicBool,
    events_sent: AtomicU64,
    /// The sequence number the next batch will carry (heartbeats report it, so the detector
    /// can tell a missing batch from one not yet sent).
    next_batch: AtomicU64,
    status: Mutex<Option<StatusSnapshot>>,
}

#[derive(Clone)]
struct StatusSnapshot {
    probes: Vec<ProbeStatus>,
    kernel_ringbuf_full: u64,
    kernel_no_scratch: u64,
    user_queue_full: u64,
}

/// The `EventSink` of `peregrine-agent run`.
pub struct ShippingSink {
    shared: Arc<Shared>,
    encoder: BatchEncoder,
    oldest: Option<Instant>,
    cfg: ShipConfig,
    identity: AgentIdentity,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ShippingSink {
    /// Opens the spool (resuming what a previous run left) and starts the sender and the
    /// heartbeat tasks.
    pub fn start(
        sdk: &aws_config::SdkConfig,
        cfg: ShipConfig,
        metrics: Metrics,
    ) -> Result<ShippingSink, ShipError> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool)?;
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
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let encoder = BatchEncoder::new(identity.clone(), EncoderConfig::default())?
            .with_next_sequence(spool.next_sequence());
        let shared = Arc::new(Shared {
            client: Client::new(sdk),
            queue_url: cfg.queue_url.clone(),
            spool,
            wake: Notify::new(),
            metrics,
            failing: AtomicBool::new(false),
            events_sent: AtomicU64::new(0),
            next_batch: AtomicU64::new(encoder.next_sequence()),
            status: Mutex::new(None),
        });
        let started = Instant::now();
        let tasks = vec![
            tokio::spawn(send_loop(shared.clone())),
            tokio::spawn(heartbeat_loop(
                shared.clone(),
                identity.clone(),
                cfg.heartbeat_interval,
                started,
            )),
        ];
        shared.update_spool_gauges();
        Ok(ShippingSink {
            shared,
            encoder,
            oldest: None,
            cfg,
            identity,
            started,
            tasks,
        })
    }

    pub fn agent_id(&self) -> &str {
        &self.identity.agent_id
    }

    /// Encodes what is batched and writes it to the spool, then wakes the sender.
    async fn seal(&mut self) -> Result<(), SinkError> {
        self.oldest = None;
        if self.encoder.pending() == 0 {
            return Ok(());
        }
        let messages = self
            .encoder
            .flush(Timestamp::now())
            .map_err(|e| SinkError::Ship(e.into()))?;
        self.shared
            .next_batch
            .store(self.encoder.next_sequence(), Ordering::Relaxed);
        let shared = self.shared.clone();
        let spooled = tokio::task::spawn_blocking(move || -> Result<(), SpoolError> {
            for m in messages {
                let dropped = shared
                    .spool
                    .push(m.sequence, &m.body, m.event_count as u64)?;
                if dropped.dropped_messages > 0 {
                    tracing::warn!(
                        messages = dropped.dropped_messages,
                        events = dropped.dropped_events,
                        "spool full: messages dropped by policy"
                    );
                    shared
                        .metrics
                        .spool_dropped_events
                        .inc_by(dropped.dropped_events);
                    shared
                        .metrics
                        .spool_dropped_messages
                        .inc_by(dropped.dropped_messages);
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| SinkError::Io(std::io::Error::other(e)))?;
        spooled.map_err(|e| SinkError::Ship(e.into()))?;
        self.shared.update_spool_gauges();
        self.shared.wake.notify_one();
        Ok(())
    }
}

impl EventSink for ShippingSink {
    async fn emit(&mut self, ev: Event) -> Result<(), SinkError> {
        match self.encoder.push(ev) {
            Ok(()) => {}
            Err(WireError::EventTooLarge { .. }) => {
                // Cannot fit in any SQS message, even alone: counted, never silent.
                self.shared.metrics.spool_dropped_events.inc();
                tracing::error!("an event too large for an SQS message was dropped");
            }
            Err(e) => return Err(SinkError::Ship(e.into())),
        }
        self.oldest.get_or_insert_with(Instant::now);
        if self.encoder.pending() >= self.cfg.batch_max_events {
            self.seal().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self
            .oldest
            .is_some_and(|t| t.elapsed() >= self.cfg.batch_max_delay)
        {
            self.seal().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.seal().await?;
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

    async fn status(&mut self, s: &AgentStatus<'_>) -> Result<(), SinkError> {
        let snapshot = StatusSnapshot {
            probes: s.probes.to_vec(),
            kernel_ringbuf_full: s.kernel_ringbuf_full,
            kernel_no_scratch: s.kernel_no_scratch,
            user_queue_full: s.user_queue_full,
        };
        *self
            .shared
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(snapshot);
        Ok(())
    }
}

impl Shared {
    fn update_spool_gauges(&self) {
        let (messages, bytes) = self.spool.depth();
        self.metrics.spool_messages.set(messages as i64);
        self.metrics.spool_bytes.set(bytes as i64);
    }

    /// One SendMessageBatch of the oldest spooled messages. Ok(true) if anything was sent.
    async fn send_some(&self) -> Result<bool, Failure> {
        // SQS: at most 10 entries and 1 MiB (including attributes) per batch.
        let batch = match self.spool.oldest(10, 1_000_000) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the spool");
                return Err(Failure::Unavailable);
            }
        };
        if batch.is_empty() {
            return Ok(false);
        }
        let mut entries = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(m.body.clone())
                .build();
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => {
                    tracing::error!(error = %e, "building an SQS entry");
                    return Err(Failure::Invalid);
                }
            }
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                let f = classify(&e);
                let reason = match f {
                    Failure::Throttled => "throttled",
                    Failure::Unavailable => "unavailable",
                    Failure::Denied => "denied",
                    Failure::Invalid => "invalid",
                };
                self.metrics.send_failures.get_or_create(&ReasonLabel { reason }).inc();
                if !self.failing.swap(true, Ordering::Relaxed) || f == Failure::Denied {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), kind = ?f, "sending to SQS failed; spooling and retrying");
                }
                f
            })?;
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("sending to SQS works again");
        }
        let mut sent = 0;
        for ok in out.successful() {
            if let Some(m) = ok.id().parse::<usize>().ok().and_then(|i| batch.get(i)) {
                if let Err(e) = self.spool.remove(m.sequence) {
                    tracing::error!(error = %e, "removing a sent message from the spool");
                }
                self.metrics.messages_sent.inc();
                self.metrics.events_shipped.inc_by(m.events);
                self.events_sent.fetch_add(m.events, Ordering::Relaxed);
                sent += 1;
            }
        }
        let mut retry = false;
        for failed in out.failed() {
            let f = peregrine_aws::classify_code(Some(failed.code()));
            let m = failed.id().parse::<usize>().ok().and_then(|i| batch.get(i));
            if failed.sender_fault() && f == Failure::Invalid {
                // SQS will never take this message: keep it out of the way, on disk, counted.
                if let Some(m) = m {
                    tracing::error!(
                        sequence = m.sequence,
                        code = failed.code(),
                        "SQS rejected a message permanently; moved to the spool's rejected/ directory"
                    );
                    if let Err(e) = self.spool.reject(m.sequence) {
                        tracing::error!(error = %e, "moving a rejected message aside");
                    }
                    self.metrics.messages_rejected.inc();
                }
            } else {
                retry = true;
            }
        }
        self.update_spool_gauges();
        if retry {
            return Err(Failure::Throttled);
        }
        Ok(sent > 0)
    }
}

async fn send_loop(shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    loop {
        match shared.send_some().await {
            Ok(true) => backoff.reset(),
            Ok(false) => {
                backoff.reset();
                // Nothing spooled: wait for a seal (or re-check now and then).
                tokio::select! {
                    _ = shared.wake.notified() => {},
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
            }
            Err(_) => tokio::time::sleep(backoff.next()).await,
        }
    }
}

async fn heartbeat_loop(
    shared: Arc<Shared>,
    identity: AgentIdentity,
    every: Duration,
    started: Instant,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let kernel = crate::proctable::procfs::kernel_release();
    loop {
        tick.tick().await;
        let status = shared
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(status) = status else { continue };
        let (messages, bytes) = shared.spool.depth();
        let (_, dropped_events) = shared.spool.dropped();
        let hb = Heartbeat {
            agent_id: identity.agent_id.clone(),
            node_name: identity.node_name.clone(),
            cluster_name: identity.cluster_name.clone(),
            kernel_release: kernel.clone(),
            agent_version: identity.agent_version.clone(),
            probes: status
                .probes
                .iter()
                .map(|p| peregrine_wire::ProbeStatus {
                    program: p.program.to_string(),
                    target: p.target.clone(),
                    state: match p.state {
                        AttachState::Attached => peregrine_wire::ProbeState::Attached,
                        AttachState::Failed => peregrine_wire::ProbeState::Failed,
                        AttachState::Absent => peregrine_wire::ProbeState::Absent,
                    },
                    error: p.error.clone(),
                })
                .collect(),
            drops: peregrine_wire::DropCounters {
                kernel_ringbuf_full: status.kernel_ringbuf_full,
                kernel_no_scratch: status.kernel_no_scratch,
                user_queue_full: status.user_queue_full,
                spool_dropped: dropped_events,
            },
            spool: peregrine_wire::SpoolDepth {
                messages: messages as u64,
                bytes,
            },
            events_sent: shared.events_sent.load(Ordering::Relaxed),
            uptime: started.elapsed(),
            timestamp: Timestamp::now(),
        };
        let body = match encode_heartbeat(
            &hb,
            shared.next_batch.load(Ordering::Relaxed),
            &EncoderConfig::default(),
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "encoding a heartbeat");
                continue;
            }
        };
        match shared
            .client
            .send_message()
            .queue_url(&shared.queue_url)
            .message_body(body)
            .send()
            .await
        {
            Ok(_) => {
                shared.metrics.heartbeats_sent.inc();
            }
            Err(e) => {
                shared.metrics.heartbeat_failures.inc();
                tracing::debug!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "heartbeat not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let mut b = Backoff::new();
        let caps: Vec<Duration> = (0..12).map(|_| b.next()).collect();
        assert!(caps.iter().all(|d| *d <= Duration::from_secs(30)));
        // Jitter: not all the same.
        assert!(caps.windows(2).any(|w| w[0] != w[1]));
        b.reset();
        assert!(b.next() <= Duration::from_millis(200));
    }
}

//! The sender: drains the spool, oldest first, into the message queue. A message leaves the
//! spool only once the queue has acknowledged it; one the queue refuses for good is moved to
//! the spool's `rejected/` directory and counted; anything else is retried with backoff.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use peregrine_aws::{
    Failure,
    backoff::{Backoff, Jitter, Retries},
};

use super::{
    Shared,
    queue::{MessageQueue, QueueError},
};
use crate::metrics::ReasonLabel;

/// SQS: at most 10 entries and 1 MiB (including attributes) per batch.
const MAX_BATCH_MESSAGES: usize = 10;
const MAX_BATCH_BYTES: u64 = 1_000_000;

/// The sender's backoff with full jitter: a random delay in [0, min(30 s, 200 ms * 2^retry)].
const SEND_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_secs(30),
    jitter: Jitter::Full,
};

pub struct Sender<Q> {
    queue: Q,
    shared: Arc<Shared>,
    /// True while the last send attempt failed (to log a failure once, and the recovery).
    failing: AtomicBool,
}

impl<Q: MessageQueue> Sender<Q> {
    pub(super) fn new(queue: Q, shared: Arc<Shared>) -> Sender<Q> {
        Sender {
            queue,
            shared,
            failing: AtomicBool::new(false),
        }
    }

    /// Sends until aborted: at once while the spool has messages, on a wake-up (or every
    /// second) when it is empty, after a backoff when sending fails.
    pub async fn run(self) {
        let mut backoff = Retries::new(SEND_BACKOFF);
        loop {
            match self.send_some().await {
                Ok(true) => backoff.reset(),
                Ok(false) => {
                    backoff.reset();
                    // Nothing spooled: wait for a seal (or re-check now and then).
                    tokio::select! {
                        _ = self.shared.wake.notified() => {},
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                    }
                }
                Err(_) => tokio::time::sleep(backoff.next()).await,
            }
        }
    }

    fn failed(&self, e: &QueueError) -> Failure {
        let f = e.failure;
        let reason = match f {
            Failure::Throttled => "throttled",
            Failure::Unavailable => "unavailable",
            Failure::Denied => "denied",
            Failure::Invalid => "invalid",
        };
        self.shared
            .metrics
            .send_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if !self.failing.swap(true, Ordering::Relaxed) || f == Failure::Denied {
            tracing::warn!(error = %e, kind = ?f, "sending to SQS failed; spooling and retrying");
        }
        f
    }

    /// One batch of the oldest spooled messages. Ok(true) if anything was sent.
    pub async fn send_some(&self) -> Result<bool, Failure> {
        let spool = &self.shared.spool;
        let metrics = &self.shared.metrics;
        let batch = match spool.oldest(MAX_BATCH_MESSAGES, MAX_BATCH_BYTES) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the spool");
                return Err(Failure::Unavailable);
            }
        };
        if batch.is_empty() {
            return Ok(false);
        }
        let bodies: Vec<&str> = batch.iter().map(|m| m.body.as_str()).collect();
        let out = self
            .queue
            .send_batch(&bodies)
            .await
            .map_err(|e| self.failed(&e))?;
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("sending to SQS works again");
        }
        let mut sent = 0;
        for m in out.successful.iter().filter_map(|&i| batch.get(i)) {
            if let Err(e) = spool.remove(m.sequence) {
                tracing::error!(error = %e, "removing a sent message from the spool");
            }
            metrics.messages_sent.inc();
            metrics.events_shipped.inc_by(m.events);
            self.shared
                .events_sent
                .fetch_add(m.events, Ordering::Relaxed);
            sent += 1;
        }
        let mut retry = false;
        for failed in &out.failed {
            if !failed.is_permanent() {
                // Throttling, an outage, or a code we do not know: the message stays spooled
                // and is sent again after a backoff.
                tracing::debug!(code = %failed.code, "SQS did not take a message; retrying it");
                metrics
                    .send_failures
                    .get_or_create(&ReasonLabel { reason: "entry" })
                    .inc();
                retry = true;
                continue;
            }
            // The queue will never take this message: keep it out of the way, on disk, counted.
            if let Some(m) = batch.get(failed.index) {
                tracing::error!(
                    sequence = m.sequence,
                    code = failed.code,
                    "SQS rejected a message permanently; moved to the spool's rejected/ directory"
                );
                if let Err(e) = spool.reject(m.sequence) {
                    tracing::error!(error = %e, "moving a rejected message aside");
                }
                metrics.messages_rejected.inc();
            }
        }
        self.shared.update_spool_gauges();
        if retry {
            return Err(Failure::Throttled);
        }
        Ok(sent > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        let mut b = Retries::new(SEND_BACKOFF);
        let caps: Vec<Duration> = (0..12).map(|_| b.next()).collect();
        assert!(caps.iter().all(|d| *d <= Duration::from_secs(30)));
        // Jitter: not all the same.
        assert!(caps.windows(2).any(|w| w[0] != w[1]));
        b.reset();
        assert!(b.next() <= Duration::from_millis(200));
    }
}

//! The batcher: events → sealed, encoded messages in the spool.
//!
//! A batch is sealed when it holds `max_events` events or its oldest event is `max_delay` old
//! (and at shutdown). Sealing encodes it (one or more messages, each within SQS's size limit),
//! writes each message to the spool with an fsync (or, if the disk fails, keeps it in the
//! spool's bounded memory), and wakes the sender.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use peregrine_event::{Event, Timestamp};
use peregrine_wire::{AgentIdentity, BatchEncoder, EncoderConfig, WireError};

use super::{Shared, ShipError};

pub struct Batcher {
    shared: Arc<Shared>,
    encoder: BatchEncoder,
    /// When the oldest event of the open batch arrived.
    oldest: Option<Instant>,
    max_events: usize,
    max_delay: Duration,
}

impl Batcher {
    pub(super) fn new(
        shared: Arc<Shared>,
        identity: AgentIdentity,
        config: EncoderConfig,
        first_sequence: u64,
        max_events: usize,
        max_delay: Duration,
    ) -> Result<Batcher, WireError> {
        Ok(Batcher {
            shared,
            encoder: BatchEncoder::new(identity, config)?.with_next_sequence(first_sequence),
            oldest: None,
            max_events,
            max_delay,
        })
    }

    /// Adds an event to the open batch. An event too large for any message, even alone, is
    /// dropped and counted, never silently.
    pub fn push(&mut self, ev: Event) -> Result<(), ShipError> {
        match self.encoder.push(ev) {
            Ok(()) => {}
            Err(WireError::EventTooLarge { .. }) => {
                self.shared.health.downstream_dropped(0, 1);
                tracing::error!("an event too large for an SQS message was dropped");
            }
            Err(e) => return Err(e.into()),
        }
        self.oldest.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// The open batch has reached its size.
    pub fn full(&self) -> bool {
        self.encoder.pending() >= self.max_events
    }

    /// The open batch's oldest event has waited long enough.
    pub fn due(&self) -> bool {
        self.oldest.is_some_and(|t| t.elapsed() >= self.max_delay)
    }

    /// Encodes the open batch and writes it to the spool, then wakes the sender.
    pub async fn seal(&mut self) -> Result<(), ShipError> {
        self.oldest = None;
        if self.encoder.pending() == 0 {
            return Ok(());
        }
        let messages = self.encoder.flush(Timestamp::now())?;
        self.shared
            .next_batch
            .store(self.encoder.next_sequence(), Ordering::Relaxed);
        let shared = self.shared.clone();
        // The spool never fails a push: a message it cannot write waits in memory, and what
        // its bounds drop comes back here to be counted as loss.
        tokio::task::spawn_blocking(move || {
            for m in messages {
                let dropped = shared.spool.push(m.sequence, &m.body, m.event_count as u64);
                if dropped.dropped_messages > 0 {
                    tracing::warn!(
                        messages = dropped.dropped_messages,
                        events = dropped.dropped_events,
                        in_memory = dropped.in_memory,
                        "spool full: messages dropped by policy"
                    );
                    shared
                        .health
                        .downstream_dropped(dropped.dropped_messages, dropped.dropped_events);
                }
            }
        })
        .await?;
        self.shared.update_spool_gauges();
        self.shared.wake.notify_one();
        Ok(())
    }
}

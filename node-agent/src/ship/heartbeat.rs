//! Heartbeats: every interval, the agent's health (probes, drop counters) and shipping state
//! (spool depth, events sent) go to the queue as one message. They are not spooled: a lost
//! heartbeat is superseded by the next.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use peregrine_wire::{AgentIdentity, EncoderConfig, encode_heartbeat};

use super::{Shared, queue::MessageQueue};
use crate::{health::Pipeline, proctable::procfs};

/// Sends a heartbeat every `every` until aborted, from the moment the pipeline runs.
pub(super) async fn run<Q: MessageQueue>(
    queue: Q,
    shared: Arc<Shared>,
    identity: AgentIdentity,
    every: Duration,
    started: Instant,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let kernel = procfs::kernel_release();
    loop {
        tick.tick().await;
        if shared.health.pipeline() == Pipeline::Starting {
            continue;
        }
        beat(&queue, &shared, &identity, &kernel, started.elapsed()).await;
    }
}

/// Sends one heartbeat.
async fn beat<Q: MessageQueue>(
    queue: &Q,
    shared: &Shared,
    identity: &AgentIdentity,
    kernel: &str,
    uptime: Duration,
) {
    let mut snapshot = shared.health.snapshot();
    // Every reason since the last heartbeat, not only the current ones: a blind spell between
    // two heartbeats is still reported.
    snapshot.blinding = shared.health.take_blinding_report();
    let hb = snapshot.heartbeat(identity, kernel, shared.state(), uptime);
    let body = match encode_heartbeat(
        &hb,
        shared.next_batch.load(Ordering::Relaxed),
        &EncoderConfig::default(),
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding a heartbeat");
            shared.health.return_blinding_report(&hb.blinding);
            return;
        }
    };
    match queue.send(body).await {
        Ok(()) => {
            shared.metrics.heartbeats_sent.inc();
        }
        Err(e) => {
            shared.health.return_blinding_report(&hb.blinding);
            shared.metrics.heartbeat_failures.inc();
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}

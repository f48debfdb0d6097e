//! The ring-buffer reader: waits on the ring buffer's fd, decodes each record and hands it to
//! enrichment through a queue bounded in events and bytes ([`eventq`]). When the queue is full
//! the event is dropped and counted
//! (in [`Health`]), separately from the kernel's own drops, and reported as a Loss event.

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::watch,
};

use crate::{
    container::ContainerResolver,
    decode::{RawBody, RawEvent, decode},
    eventq::{self, TrySendError},
    health::Health,
};

/// Reads until `stop` turns true, then drains what is left (waiting for queue space, so that
/// nothing is dropped at shutdown) and returns. Returns early if the receiver is gone.
///
/// A new cgroup is handed to `containers` here, ahead of the queue: its metadata lookup then
/// runs while the container certainly exists, even if enrichment is behind.
/// The kernel wakes this reader only when a backlog builds up (see `ProbeConfig::wakeup_bytes`),
/// so it also drains every `poll`: that bounds the latency of a quiet stream.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: eventq::Sender,
    health: Health,
    mut stop: watch::Receiver<bool>,
    containers: ContainerResolver,
    poll: std::time::Duration,
) -> std::io::Result<()> {
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf, and its
    // as_raw_fd() always returns that fd.
    let mut afd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let drained = tokio::select! {
            _ = tick.tick() => drain(afd.get_mut(), &tx, &health, &containers),
            r = afd.readable_mut() => {
                let mut guard = r?;
                let d = drain(guard.get_inner_mut(), &tx, &health, &containers);
                // Left readable when records remain: the next turn drains on.
                if matches!(d, Drained::Empty) {
                    guard.clear_ready();
                }
                d
            }
            _ = stop.wait_for(|s| *s) => break,
        };
        match drained {
            Drained::Closed => return Ok(()),
            // Let the other tasks of this runtime thread have their turn first.
            Drained::More => tokio::task::yield_now().await,
            Drained::Empty => {}
        }
    }
    let ring = afd.get_mut();
    while let Some(item) = ring.next() {
        health.records_read(1);
        let ev = decode(&item);
        drop(item);
        match ev {
            Ok(ev) => {
                early(&ev, &containers);
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
            Err(e) => decode_error(&health, &e),
        }
    }
    Ok(())
}

/// Records drained in one go before the reader yields: under a flood the kernel refills the
/// ring as fast as it is read, and a drain that only stops when the ring is empty would hold
/// its runtime thread for as long as the flood lasts.
const DRAIN_BUDGET: u64 = 4096;

enum Drained {
    /// The ring is empty.
    Empty,
    /// The budget ran out with records left.
    More,
    /// The receiver is gone.
    Closed,
}

/// Drains the ring buffer without waiting, at most [`DRAIN_BUDGET`] records.
fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &eventq::Sender,
    health: &Health,
    containers: &ContainerResolver,
) -> Drained {
    let mut read = 0u64;
    let outcome = loop {
        if read == DRAIN_BUDGET {
            break Drained::More;
        }
        let Some(item) = ring.next() else {
            break Drained::Empty;
        };
        read += 1;
        match decode(&item) {
            Ok(ev) => {
                early(&ev, containers);
                match tx.try_send(ev) {
                    Ok(()) => {}
                    Err(TrySendError::Full | TrySendError::Bytes) => {
                        health.user_queue_full();
                    }
                    Err(TrySendError::Closed) => break Drained::Closed,
                }
            }
            Err(e) => decode_error(health, &e),
        }
    };
    health.records_read(read);
    outcome
}

fn early(ev: &RawEvent, containers: &ContainerResolver) {
    if let RawBody::Cgroup {
        id,
        path,
        created: true,
    } = &ev.body
    {
        containers.on_cgroup_created(*id, path);
    }
}

fn decode_error(health: &Health, e: &crate::decode::DecodeError) {
    // Logged once per power of two so a systematic fault is visible without flooding.
    let n = health.decode_error();
    if n.is_power_of_two() {
        tracing::error!(error = %e, count = n, "undecodable ring-buffer record");
    }
}

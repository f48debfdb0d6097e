//! The queue between the ring-buffer reader and enrichment, bounded in events and in bytes.
//!
//! A count bound alone allows far more memory than the agent's limit: an exec record can
//! decode to 8 KiB of argv (thousands of small strings, each its own allocation), 8 KiB of
//! `LD_*` values and two 4 KiB paths, so 16384 queued execs could hold over half a GiB. Each
//! event is weighed as it goes in ([`RawEvent::weight`]) and the weight is given back when
//! enrichment takes it out; an event that does not fit is refused and counted like a full
//! queue. The newest event is always admitted into an empty queue, however heavy.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::mpsc;

use crate::decode::RawEvent;

struct Queued {
    ev: RawEvent,
    weight: usize,
}

/// Why [`Sender::try_send`] refused an event.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// The queue holds as many events as it may.
    Full,
    /// The queue holds as many bytes as it may.
    Bytes,
    /// Enrichment has gone.
    Closed,
}

/// Default byte budget of the queue (`--queue-bytes`).
pub const DEFAULT_QUEUE_BYTES: usize = 32 << 20;

pub fn channel(capacity: usize, max_bytes: usize) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        Receiver { rx, bytes },
    )
}

pub struct Sender {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

impl Sender {
    /// Queues `ev` if it fits in both bounds, without waiting.
    pub fn try_send(&self, ev: RawEvent) -> Result<(), TrySendError> {
        let weight = ev.weight();
        let before = self.bytes.fetch_add(weight, Ordering::AcqRel);
        if before > 0 && before + weight > self.max_bytes {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            return Err(TrySendError::Bytes);
        }
        match self.tx.try_send(Queued { ev, weight }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.fetch_sub(weight, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => TrySendError::Full,
                    mpsc::error::TrySendError::Closed(_) => TrySendError::Closed,
                })
            }
        }
    }

    /// Queues `ev`, waiting for room in the count bound only: used to drain at shutdown, when
    /// what is left is at most one ring buffer's worth. `Err` when enrichment has gone.
    pub async fn send(&self, ev: RawEvent) -> Result<(), ()> {
        let weight = ev.weight();
        self.bytes.fetch_add(weight, Ordering::AcqRel);
        if self.tx.send(Queued { ev, weight }).await.is_err() {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            return Err(());
        }
        Ok(())
    }
}

pub struct Receiver {
    rx: mpsc::Receiver<Queued>,
    bytes: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn recv(&mut self) -> Option<RawEvent> {
        let q = self.rx.recv().await?;
        self.bytes.fetch_sub(q.weight, Ordering::AcqRel);
        Some(q.ev)
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// What the queued events weigh.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{RawBody, RawExec};
    use node_agent_common::{EventHeader, Kind};

    fn exec(args: usize, arg_len: usize) -> RawEvent {
        // SAFETY: all-zero is a valid EventHeader (plain integers).
        let mut header: EventHeader = unsafe { std::mem::zeroed() };
        header.kind = Kind::Exec as u32;
        RawEvent {
            header,
            body: RawBody::Exec(RawExec {
                argv: (0..args).map(|_| "a".repeat(arg_len)).collect(),
                cwd: "/".repeat(4095),
                ..RawExec::default()
            }),
        }
    }

    #[test]
    fn many_small_arguments_weigh_more_than_their_bytes() {
        // 4096 one-byte arguments: 8 KiB in the kernel record, far more once decoded.
        let ev = exec(4096, 1);
        assert!(
            ev.weight() > 4096 * std::mem::size_of::<String>(),
            "{}",
            ev.weight()
        );
    }

    #[tokio::test]
    async fn the_byte_bound_refuses_and_taking_out_gives_room_back() {
        let one = exec(4096, 1).weight();
        let (tx, mut rx) = channel(1000, 3 * one);
        for _ in 0..3 {
            tx.try_send(exec(4096, 1)).unwrap();
        }
        assert_eq!(tx.try_send(exec(4096, 1)), Err(TrySendError::Bytes));
        assert_eq!(rx.len(), 3);
        assert_eq!(rx.bytes(), 3 * one);
        rx.recv().await.unwrap();
        assert_eq!(rx.bytes(), 2 * one);
        tx.try_send(exec(4096, 1)).unwrap();
        while !rx.is_empty() {
            rx.recv().await.unwrap();
        }
        assert_eq!(rx.bytes(), 0);
    }

    #[tokio::test]
    async fn an_event_heavier_than_the_budget_passes_an_empty_queue_alone() {
        let (tx, mut rx) = channel(1000, 1);
        tx.try_send(exec(10, 10)).unwrap();
        assert_eq!(tx.try_send(exec(10, 10)), Err(TrySendError::Bytes));
        rx.recv().await.unwrap();
        tx.try_send(exec(10, 10)).unwrap();
    }

    #[tokio::test]
    async fn the_count_bound_still_holds_and_refusals_keep_the_weight_exact() {
        let (tx, rx) = channel(2, usize::MAX);
        tx.try_send(exec(1, 1)).unwrap();
        tx.try_send(exec(1, 1)).unwrap();
        assert_eq!(tx.try_send(exec(1, 1)), Err(TrySendError::Full));
        assert_eq!(rx.bytes(), 2 * exec(1, 1).weight());
        drop(rx);
        assert_eq!(tx.try_send(exec(1, 1)), Err(TrySendError::Closed));
    }
}

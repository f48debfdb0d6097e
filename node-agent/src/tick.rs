//! The status tick: once a `interval` (1 s), on its own thread, whatever the event flood does:
//! reads the kernel's drop counters ([`LossTracker`]), re-checks that the probes are attached
//! ([`LinkWatch`]), judges whether the agent is blind ([`Assessor`]), records all of it in
//! [`Health`] (what `/healthz`, `/metrics` and heartbeats read) and hands the run loop a
//! [`TickReport`]: the Loss event to emit, and the blinding reasons for standalone detection.
//!
//! Why a thread: the run loop enriches events one at a time and an enrichment may wait (on
//! containerd, up to its timeout), and under a flood its queue never empties; a tick scheduled
//! on that loop, or on the async runtime the flood keeps busy, comes late or not at all, and
//! the agent would go silent exactly when it is being blinded. This thread only sleeps, reads
//! a map and a few kernel lists, and never waits on the run loop: when the loop is behind, the
//! reports it has not taken are merged (losses add up) rather than queued without bound, so
//! the loss is never lost, only its tick number skipped.

use std::{
    sync::mpsc as std_mpsc,
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use peregrine_event::{BlindingReason, LossInfo};
use tokio::sync::mpsc;

use crate::{
    blinding::{Assessor, BlindingConfig, TickDrops},
    health::{Health, Pipeline},
    loss::LossTracker,
    probes::{KernelView, LinkWatch, Watched},
    starts::StartHistory,
};

/// Reports the run loop may be behind on before they are merged.
pub const REPORTS_CAPACITY: usize = 4;

/// What one tick hands the run loop.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickReport {
    /// The tick's number: 1, 2, ... since the agent started.
    pub tick: u64,
    /// What was lost since the previous report, if anything (its `tick` set).
    pub loss: Option<LossInfo>,
    /// Why the agent is blind at this tick (empty: it is not).
    pub blinding: Vec<BlindingReason>,
}

impl TickReport {
    /// Folds a later report into this one: losses add up, the rest is the later one's.
    fn merge(&mut self, later: TickReport) {
        self.loss = match (self.loss.take(), later.loss) {
            (Some(a), Some(b)) => Some(LossInfo {
                kernel_ringbuf_full: a.kernel_ringbuf_full.saturating_add(b.kernel_ringbuf_full),
                kernel_no_scratch: a.kernel_no_scratch.saturating_add(b.kernel_no_scratch),
                user_queue_full: a.user_queue_full.saturating_add(b.user_queue_full),
                downstream: a.downstream.saturating_add(b.downstream),
                tick: b.tick,
            }),
            (a, b) => {
                let mut l = a.or(b);
                if let Some(l) = l.as_mut() {
                    l.tick = later.tick;
                }
                l
            }
        };
        self.tick = later.tick;
        self.blinding = later.blinding;
    }
}

/// Everything the tick thread works with.
pub struct TickInputs {
    pub interval: Duration,
    pub blinding: BlindingConfig,
    pub loss: LossTracker,
    pub health: Health,
    /// The attached probes to re-check.
    pub watch: Vec<Watched>,
    /// The restart history, when the agent keeps one.
    pub starts: Option<StartHistory>,
}

/// The running tick thread.
pub struct Ticker {
    stop: std_mpsc::Sender<()>,
    thread: JoinHandle<Option<TickReport>>,
}

/// Starts the tick thread; its reports go to `reports`.
pub fn spawn(inputs: TickInputs, reports: mpsc::Sender<TickReport>) -> std::io::Result<Ticker> {
    let (stop, stopped) = std_mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("peregrine-tick".into())
        .spawn(move || run(inputs, &reports, &stopped))?;
    Ok(Ticker { stop, thread })
}

impl Ticker {
    /// Stops the thread after one last tick (so the last losses are reported) and waits for
    /// it. Returns the report the channel had no room for, if any: it is newer than every
    /// report in the channel.
    pub fn stop(self) -> Option<TickReport> {
        let _ = self.stop.send(());
        match self.thread.join() {
            Ok(left) => left,
            Err(_) => {
                tracing::error!("the status tick thread panicked");
                None
            }
        }
    }
}

struct State {
    inputs: TickInputs,
    assessor: Assessor,
    links: LinkWatch,
    tick: u64,
    last_read: u64,
    next_probe_check: Instant,
    view_failed: bool,
    pending: Option<TickReport>,
}

fn run(
    inputs: TickInputs,
    reports: &mpsc::Sender<TickReport>,
    stopped: &std_mpsc::Receiver<()>,
) -> Option<TickReport> {
    let interval = inputs.interval.max(Duration::from_millis(1));
    let mut st = State {
        assessor: Assessor::new(inputs.blinding, interval),
        links: LinkWatch::new(inputs.watch.clone()),
        tick: 0,
        last_read: inputs.health.records_read_total(),
        next_probe_check: Instant::now() + inputs.blinding.probe_check_interval,
        view_failed: false,
        pending: None,
        inputs,
    };
    let mut next = Instant::now() + interval;
    loop {
        let last = match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => true,
        };
        let now = Instant::now();
        next += interval;
        if next < now {
            // Late (the machine was suspended, or starved of CPU): tick now, then on period.
            next = now + interval;
        }
        st.tick(reports, last);
        if last {
            return st.pending;
        }
    }
}

impl State {
    fn tick(&mut self, reports: &mpsc::Sender<TickReport>, last: bool) {
        self.tick += 1;
        let health = self.inputs.health.clone();
        let loss = self.inputs.loss.poll().map(|mut l| {
            l.tick = self.tick;
            l
        });
        let read = health.records_read_total();
        let drops = TickDrops {
            kernel: loss.as_ref().map_or(0, |l| {
                l.kernel_ringbuf_full.saturating_add(l.kernel_no_scratch)
            }),
            user: loss.as_ref().map_or(0, |l| l.user_queue_full),
            read: read.saturating_sub(self.last_read),
        };
        self.last_read = read;
        // Not while stopping: detaching at shutdown is not an attack.
        if !last && health.pipeline() == Pipeline::Running {
            self.check_probes();
        }
        let starts = self
            .inputs
            .starts
            .as_ref()
            .map(|s| s.within(self.assessor.config().restart_window, SystemTime::now()));
        let blinding = self.assessor.assess(drops, &health.probes(), starts);
        if !blinding.is_empty() && health.blinding().is_empty() {
            let codes: Vec<&str> = blinding.iter().map(|r| r.code.as_str()).collect();
            tracing::warn!(reasons = ?codes, "the agent is blinded");
        }
        health.record_tick(self.tick, &blinding);
        let mut report = TickReport {
            tick: self.tick,
            loss,
            blinding,
        };
        if let Some(mut pending) = self.pending.take() {
            pending.merge(report);
            report = pending;
        }
        match reports.try_send(report) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(r)) => {
                tracing::debug!(tick = self.tick, "the run loop is behind; merging reports");
                self.pending = Some(r);
            }
            // The run loop has ended; nobody is left to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn check_probes(&mut self) {
        let every = self.inputs.blinding.probe_check_interval;
        if every.is_zero() || Instant::now() < self.next_probe_check {
            return;
        }
        self.next_probe_check = Instant::now() + every;
        match KernelView::read() {
            Ok(view) => {
                self.view_failed = false;
                for index in self.links.check(&view) {
                    self.inputs.health.mark_detached(index);
                }
            }
            Err(e) => {
                if !self.view_failed {
                    tracing::warn!(error = %e, "cannot list the kernel's BPF links; probes are not re-checked until it can");
                }
                self.view_failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(kernel: u64, tick: u64) -> Option<LossInfo> {
        Some(LossInfo {
            kernel_ringbuf_full: kernel,
            tick,
            ..LossInfo::default()
        })
    }

    #[test]
    fn merged_reports_add_losses_and_keep_the_latest_tick() {
        let mut a = TickReport {
            tick: 1,
            loss: loss(5, 1),
            blinding: vec![BlindingReason::default()],
        };
        a.merge(TickReport {
            tick: 2,
            loss: None,
            blinding: Vec::new(),
        });
        assert_eq!((a.tick, a.loss.as_ref().unwrap().tick), (2, 2));
        assert!(a.blinding.is_empty());
        a.merge(TickReport {
            tick: 3,
            loss: loss(7, 3),
            blinding: Vec::new(),
        });
        assert_eq!(a.loss, loss(12, 3));
        let mut none = TickReport::default();
        none.merge(TickReport {
            tick: 4,
            ..TickReport::default()
        });
        assert_eq!((none.tick, none.loss), (4, None));
    }
}

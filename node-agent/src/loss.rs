//! Loss events: reads the kernel's drop counters into [`Health`], and turns any increase of the
//! drop counters since the last look into a Loss event for the stream.

use peregrine_event::LossInfo;

use crate::{
    health::{Drops, Health},
    probes::DropCounters,
};

pub struct LossTracker {
    kernel: DropCounters,
    health: Health,
    last: Drops,
}

impl LossTracker {
    pub fn new(kernel: DropCounters, health: Health) -> Self {
        LossTracker {
            kernel,
            last: health.drops(),
            health,
        }
    }

    /// Reads the counters; returns what was lost since the previous call, if anything.
    pub fn poll(&mut self) -> Option<LossInfo> {
        match self.kernel.read() {
            Ok(k) => self.health.set_kernel_drops(k),
            // The totals stay as last read.
            Err(e) => tracing::error!(error = %e, "cannot read the kernel drop counters"),
        }
        if let Ok(per_cpu) = self.kernel.per_cpu_ringbuf_full() {
            self.health.set_kernel_ringbuf_full_per_cpu(per_cpu);
        }
        let now = self.health.drops();
        let loss = now.since(&self.last);
        self.last = now;
        (loss.total() > 0).then_some(loss)
    }
}

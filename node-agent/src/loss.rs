//! Drop accounting: turns counter increases into Loss events and metrics.

use peregrine_event::LossInfo;

use crate::{
    metrics::{CpuLabel, Metrics, ReasonLabel},
    probes::{DropCounters, KernelDrops},
};

pub struct LossTracker {
    drops: DropCounters,
    metrics: Metrics,
    last_kernel: KernelDrops,
    last_user: u64,
    last_downstream: u64,
}

impl LossTracker {
    pub fn new(drops: DropCounters, metrics: Metrics) -> Self {
        LossTracker {
            drops,
            metrics,
            last_kernel: KernelDrops::default(),
            last_user: 0,
            last_downstream: 0,
        }
    }

    /// Totals since start: (kernel ring buffer full, kernel no scratch, user queue full).
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.last_kernel.ringbuf_full,
            self.last_kernel.no_scratch,
            self.last_user,
        )
    }

    /// Reads the counters; returns what was lost since the previous call, if anything.
    pub fn poll(&mut self) -> Option<LossInfo> {
        let k = match self.drops.read() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the kernel drop counters");
                self.last_kernel
            }
        };
        if let Ok(per_cpu) = self.drops.per_cpu_ringbuf_full() {
            for (cpu, v) in per_cpu.into_iter().enumerate() {
                self.metrics
                    .kernel_drops_per_cpu
                    .get_or_create(&CpuLabel { cpu: cpu as u32 })
                    .set(v as i64);
            }
        }
        let user = self.metrics.user_queue_drops.get();
        let downstream = self.metrics.spool_dropped_events.get();
        let loss = LossInfo {
            kernel_ringbuf_full: k.ringbuf_full.saturating_sub(self.last_kernel.ringbuf_full),
            kernel_no_scratch: k.no_scratch.saturating_sub(self.last_kernel.no_scratch),
            user_queue_full: user.saturating_sub(self.last_user),
            downstream: downstream.saturating_sub(self.last_downstream),
        };
        self.last_kernel = k;
        self.last_user = user;
        self.last_downstream = downstream;
        self.metrics
            .kernel_drops
            .get_or_create(&ReasonLabel {
                reason: "ringbuf_full",
            })
            .inc_by(loss.kernel_ringbuf_full);
        self.metrics
            .kernel_drops
            .get_or_create(&ReasonLabel {
                reason: "no_scratch",
            })
            .inc_by(loss.kernel_no_scratch);
        (loss.total() > 0).then_some(loss)
    }
}

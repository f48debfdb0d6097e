//! Prometheus metrics, served with `/healthz` by [`crate::endpoint`] (127.0.0.1:9464 by default).
//!
//! Counters that belong to the agent's health (drops, probe status) are kept by [`Health`] and
//! read from it at each scrape; this module only owns what nothing else needs to read.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

use peregrine_event::BlindingKind;

use crate::{
    bounded::CacheStats,
    health::{FaultKind, Health, SpoolOp},
    probes::AttachState,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabel {
    pub op: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CpuLabel {
    pub cpu: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    pub program: String,
    pub target: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabel {
    pub cache: &'static str,
    /// The bound that forced the eviction: `count` or `bytes`.
    pub reason: &'static str,
}

/// Every metric the agent exports. Cloning shares the underlying values.
#[derive(Clone, Default)]
pub struct Metrics {
    pub events: Family<KindLabel, Counter>,
    pub cache_entries: Family<CacheLabel, Gauge>,
    pub cache_capacity: Family<CacheLabel, Gauge>,
    pub cache_bytes: Family<CacheLabel, Gauge>,
    pub cache_max_bytes: Family<CacheLabel, Gauge>,
    pub cache_evictions: Family<EvictionLabel, Counter>,
    pub queue_depth: Gauge,
    /// 32-bit syscalls folded in the kernel into an earlier `compat_syscall` event.
    pub compat_syscalls_folded: Counter,
    // Shipping (`run`).
    pub messages_sent: Counter,
    pub events_shipped: Counter,
    pub send_failures: Family<ReasonLabel, Counter>,
    pub messages_rejected: Counter,
    pub spool_messages: Gauge,
    pub spool_bytes: Gauge,
    pub spool_memory_messages: Gauge,
    pub spool_memory_bytes: Gauge,
    pub heartbeats_sent: Counter,
    pub heartbeat_failures: Counter,
    // The endpoint itself (`crate::endpoint`).
    pub http_connections_open: Gauge,
    pub http_connections_rejected: Counter,
    pub http_timeouts: Family<PhaseLabel, Counter>,
    pub http_accept_errors: Counter,
}

impl Metrics {
    /// Every metric, with those `health` keeps read from it at each scrape.
    pub fn registry(&self, health: &Health) -> Registry {
        let mut r = Registry::with_prefix("peregrine");
        r.register("events", "Events delivered, by kind", self.events.clone());
        r.register_collector(Box::new(HealthCollector(health.clone())));
        r.register(
            "cache_entries",
            "Entries in each bounded cache",
            self.cache_entries.clone(),
        );
        r.register(
            "cache_capacity",
            "Capacity of each bounded cache",
            self.cache_capacity.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes held by each bounded cache (its entries' strings, plus a fixed cost per entry)",
            self.cache_bytes.clone(),
        );
        r.register(
            "cache_max_bytes",
            "Byte budget of each bounded cache",
            self.cache_max_bytes.clone(),
        );
        r.register(
            "cache_evictions",
            "Entries evicted from each bounded cache, by the bound that forced it (count or bytes)",
            self.cache_evictions.clone(),
        );
        r.register(
            "queue_depth",
            "Events waiting between the ring-buffer reader and enrichment",
            self.queue_depth.clone(),
        );
        r.register(
            "compat_syscalls_folded",
            "32-bit syscalls not reported because their process image had already made one of the same number",
            self.compat_syscalls_folded.clone(),
        );
        r.register(
            "messages_sent",
            "SQS messages acknowledged",
            self.messages_sent.clone(),
        );
        r.register(
            "events_shipped",
            "Events in acknowledged SQS messages",
            self.events_shipped.clone(),
        );
        r.register(
            "send_failures",
            "SendMessageBatch calls that failed, by reason",
            self.send_failures.clone(),
        );
        r.register(
            "messages_rejected",
            "Messages SQS refused permanently (kept in the spool's rejected/ directory)",
            self.messages_rejected.clone(),
        );
        r.register(
            "spool_messages",
            "Messages waiting in the disk spool",
            self.spool_messages.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes waiting in the disk spool",
            self.spool_bytes.clone(),
        );
        r.register(
            "spool_memory_messages",
            "Messages held in memory because the spool cannot write to disk (included in spool_messages)",
            self.spool_memory_messages.clone(),
        );
        r.register(
            "spool_memory_bytes",
            "Bytes held in memory because the spool cannot write to disk (included in spool_bytes)",
            self.spool_memory_bytes.clone(),
        );
        r.register(
            "heartbeats_sent",
            "Heartbeats sent to SQS",
            self.heartbeats_sent.clone(),
        );
        r.register(
            "heartbeat_failures",
            "Heartbeats that could not be sent",
            self.heartbeat_failures.clone(),
        );
        r.register(
            "http_connections_open",
            "Connections the metrics endpoint is serving",
            self.http_connections_open.clone(),
        );
        r.register(
            "http_connections_rejected",
            "Connections to the metrics endpoint closed unread because the connection cap was reached",
            self.http_connections_rejected.clone(),
        );
        r.register(
            "http_timeouts",
            "Metrics endpoint connections closed by a timeout: header (request head too slow, or idle keep-alive) or lifetime",
            self.http_timeouts.clone(),
        );
        r.register(
            "http_accept_errors",
            "Failed accepts on the metrics endpoint (EMFILE and the like), each followed by a pause",
            self.http_accept_errors.clone(),
        );
        r
    }

    pub fn set_cache(&self, cache: &'static str, entries: usize, capacity: usize) {
        self.cache_entries
            .get_or_create(&CacheLabel { cache })
            .set(entries as i64);
        self.cache_capacity
            .get_or_create(&CacheLabel { cache })
            .set(capacity as i64);
    }

    /// A connection of the metrics endpoint closed by a timeout (`header` or `lifetime`).
    pub fn http_timeout(&self, phase: &'static str) {
        self.http_timeouts
            .get_or_create(&PhaseLabel { phase })
            .inc();
    }

    /// A byte-bounded cache's size, bounds and evictions (which the cache counts itself).
    pub fn set_bounded_cache(&self, cache: &'static str, s: CacheStats) {
        self.set_cache(cache, s.entries, s.capacity);
        let label = CacheLabel { cache };
        self.cache_bytes.get_or_create(&label).set(s.bytes as i64);
        self.cache_max_bytes
            .get_or_create(&label)
            .set(s.max_bytes as i64);
        for (reason, v) in [("count", s.evictions.count), ("bytes", s.evictions.bytes)] {
            self.cache_evictions
                .get_or_create(&EvictionLabel { cache, reason })
                .inner()
                .store(v, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn render(&self, registry: &Registry) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, registry);
        out
    }
}

/// Exports what [`Health`] keeps, as it is at the scrape.
#[derive(Debug)]
struct HealthCollector(Health);

/// One unlabelled series.
fn encode_one(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One series per label set.
fn encode_family<L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, m) in series {
        m.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for HealthCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = self.0.drops();
        encode_family(
            &mut enc,
            "kernel_drops",
            "Events lost in the kernel: ring buffer full, or no scratch area",
            MetricType::Counter,
            [
                ("ringbuf_full", d.kernel_ringbuf_full),
                ("no_scratch", d.kernel_no_scratch),
            ]
            .map(|(reason, v)| (ReasonLabel { reason }, ConstCounter::new(v))),
        )?;
        encode_family(
            &mut enc,
            "kernel_ringbuf_drops_per_cpu",
            "Ring-buffer reserve failures per CPU, as counted by the kernel",
            MetricType::Gauge,
            self.0
                .kernel_ringbuf_full_per_cpu()
                .into_iter()
                .enumerate()
                .map(|(cpu, v)| (CpuLabel { cpu: cpu as u32 }, ConstGauge::new(v as i64))),
        )?;
        for (name, help, v) in [
            (
                "user_queue_drops",
                "Events dropped because the agent's internal queue was full",
                d.user_queue_full,
            ),
            (
                "decode_errors",
                "Ring-buffer records that failed to decode",
                d.decode_errors,
            ),
            ("loss_events", "Loss events emitted", d.loss_events),
            (
                "spool_dropped_messages",
                "Messages dropped by the spool's full policy",
                d.downstream_messages,
            ),
            (
                "spool_dropped_events",
                "Events dropped downstream of enrichment (spool full, or too large for any message)",
                d.downstream_events,
            ),
            (
                "container_lookup_failures",
                "containerd lookups that failed or timed out",
                self.0.container_lookup_failures(),
            ),
        ] {
            encode_one(&mut enc, name, help, &ConstCounter::new(v))?;
        }
        encode_family(
            &mut enc,
            "spool_faults",
            "File-system errors the spool survived, by operation and kind (enospc, emfile, io)",
            MetricType::Counter,
            SpoolOp::ALL.into_iter().flat_map(|op| {
                FaultKind::ALL.into_iter().map(move |kind| {
                    (
                        FaultLabel {
                            op: op.name(),
                            kind: kind.name(),
                        },
                        ConstCounter::new(self.0.spool_faults(op, kind)),
                    )
                })
            }),
        )?;
        encode_one(
            &mut enc,
            "spool_quarantined",
            "Corrupt or foreign files moved out of the spool directory (or deleted, the quarantine full)",
            &ConstCounter::new(self.0.spool_quarantined_total()),
        )?;
        encode_one(
            &mut enc,
            "spool_degraded",
            "1 while the spool cannot write to disk and holds messages in memory",
            &ConstGauge::new(i64::from(self.0.spool_degraded())),
        )?;
        encode_family(
            &mut enc,
            "exe_hash_skipped",
            "Executables left without a hash (sha256 null), by reason",
            MetricType::Counter,
            self.0
                .exe_hash_skipped()
                .into_iter()
                .map(|(reason, v)| (ReasonLabel { reason }, ConstCounter::new(v))),
        )?;
        let probes = self.0.probes();
        encode_family(
            &mut enc,
            "probe_attached",
            "1 per probe attachment, labelled with its state",
            MetricType::Gauge,
            probes.iter().map(|s| {
                (
                    ProbeLabel {
                        program: s.program.into(),
                        target: s.target.clone(),
                        state: s.state.name(),
                    },
                    ConstGauge::new(1i64),
                )
            }),
        )?;
        let count = |st: AttachState| probes.iter().filter(|p| p.state == st).count() as i64;
        encode_one(
            &mut enc,
            "probes_attached",
            "Probe attachments that succeeded",
            &ConstGauge::new(count(AttachState::Attached)),
        )?;
        encode_one(
            &mut enc,
            "probes_failed",
            "Probe attachments that failed (degraded coverage)",
            &ConstGauge::new(count(AttachState::Failed)),
        )?;
        encode_one(
            &mut enc,
            "probes_detached",
            "Probe attachments found detached after attaching (degraded coverage)",
            &ConstGauge::new(count(AttachState::Detached)),
        )?;
        encode_one(
            &mut enc,
            "ticks",
            "Status ticks run (drop counters read, blinding judged)",
            &ConstCounter::new(self.0.ticks()),
        )?;
        let blinding = self.0.blinding();
        encode_family(
            &mut enc,
            "blinded",
            "1 while the agent judges itself blind for this reason",
            MetricType::Gauge,
            BlindingKind::ALL.into_iter().map(|k| {
                let on = blinding.iter().any(|r| r.code == k.code());
                (
                    ReasonLabel { reason: k.code() },
                    ConstGauge::new(i64::from(on)),
                )
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::{KernelDrops, ProbeStatus};

    #[test]
    fn health_counters_are_read_at_the_scrape() {
        let health = Health::default();
        let metrics = Metrics::default();
        let registry = metrics.registry(&health);
        health.record_probes(&[ProbeStatus {
            program: "exec",
            target: "sched/sched_process_exec".into(),
            state: AttachState::Attached,
            error: None,
        }]);
        health.set_kernel_drops(KernelDrops {
            ringbuf_full: 5,
            no_scratch: 0,
        });
        health.set_kernel_ringbuf_full_per_cpu(vec![2, 3]);
        health.user_queue_full();
        health.downstream_dropped(1, 4);
        health.set_exe_hash_skipped(vec![("not_regular", 3), ("queue_full", 0)]);
        let text = metrics.render(&registry);
        for line in [
            "peregrine_kernel_drops_total{reason=\"ringbuf_full\"} 5",
            "peregrine_kernel_ringbuf_drops_per_cpu{cpu=\"1\"} 3",
            "peregrine_user_queue_drops_total 1",
            "peregrine_spool_dropped_messages_total 1",
            "peregrine_spool_dropped_events_total 4",
            "peregrine_loss_events_total 0",
            "peregrine_exe_hash_skipped_total{reason=\"not_regular\"} 3",
            "peregrine_exe_hash_skipped_total{reason=\"queue_full\"} 0",
            "peregrine_probe_attached{program=\"exec\",target=\"sched/sched_process_exec\",state=\"attached\"} 1",
            "peregrine_probes_attached 1",
            "peregrine_probes_failed 0",
            "peregrine_probes_detached 0",
            "peregrine_ticks_total 0",
            "peregrine_blinded{reason=\"sustained_drops\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        metrics.set_bounded_cache(
            "process_table",
            CacheStats {
                entries: 3,
                capacity: 10,
                bytes: 4096,
                max_bytes: 8192,
                evictions: crate::bounded::Evictions { count: 1, bytes: 7 },
            },
        );
        let text = metrics.render(&registry);
        for line in [
            "peregrine_cache_entries{cache=\"process_table\"} 3",
            "peregrine_cache_bytes{cache=\"process_table\"} 4096",
            "peregrine_cache_max_bytes{cache=\"process_table\"} 8192",
            "peregrine_cache_evictions_total{cache=\"process_table\",reason=\"count\"} 1",
            "peregrine_cache_evictions_total{cache=\"process_table\",reason=\"bytes\"} 7",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Read again at the next scrape.
        health.mark_detached(0);
        health.record_tick(
            7,
            &[peregrine_event::BlindingReason::new(
                BlindingKind::ProbesDetached,
                "1 of 1",
            )],
        );
        let text = metrics.render(&registry);
        for line in [
            "peregrine_probes_detached 1",
            "peregrine_ticks_total 7",
            "peregrine_blinded{reason=\"probes_detached\"} 1",
            "peregrine_blinded{reason=\"restart_loop\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        health.user_queue_full();
        assert!(
            metrics
                .render(&registry)
                .lines()
                .any(|l| l == "peregrine_user_queue_drops_total 2")
        );
    }
}

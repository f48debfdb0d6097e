//! Prometheus metrics and the `/metrics` + `/healthz` endpoint (127.0.0.1:9464 by default).
//!
//! Counters that belong to the agent's health (drops, probe status) are kept by [`Health`] and
//! read from it at each scrape; this module only owns what nothing else needs to read.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
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
use tokio::net::TcpListener;

use crate::{health::Health, probes::AttachState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
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
pub struct CacheLabel {
    pub cache: &'static str,
}

/// Every metric the agent exports. Cloning shares the underlying values.
#[derive(Clone, Default)]
pub struct Metrics {
    pub events: Family<KindLabel, Counter>,
    pub cache_entries: Family<CacheLabel, Gauge>,
    pub cache_capacity: Family<CacheLabel, Gauge>,
    pub queue_depth: Gauge,
    // Shipping (`run`).
    pub messages_sent: Counter,
    pub events_shipped: Counter,
    pub send_failures: Family<ReasonLabel, Counter>,
    pub messages_rejected: Counter,
    pub spool_messages: Gauge,
    pub spool_bytes: Gauge,
    pub heartbeats_sent: Counter,
    pub heartbeat_failures: Counter,
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
            "queue_depth",
            "Events waiting between the ring-buffer reader and enrichment",
            self.queue_depth.clone(),
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
            "heartbeats_sent",
            "Heartbeats sent to SQS",
            self.heartbeats_sent.clone(),
        );
        r.register(
            "heartbeat_failures",
            "Heartbeats that could not be sent",
            self.heartbeat_failures.clone(),
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
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source}")]
pub struct ServeError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds now (so a port conflict is reported at start) and serves until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let registry = Arc::new(metrics.registry(&health));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            let metrics = metrics.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = match req.uri().path() {
                        "/metrics" => Some((
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            metrics.render(&registry),
                        )),
                        "/healthz" => {
                            let (code, body) = health.healthz();
                            let code = StatusCode::from_u16(code)
                                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                            Some((code, "application/json", body))
                        }
                        _ => None,
                    };
                    async move {
                        let resp = match body {
                            Some((code, ct, b)) => Response::builder()
                                .status(code)
                                .header("content-type", ct)
                                .body(Full::new(Bytes::from(b))),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"not found\n"))),
                        };
                        Ok::<_, Infallible>(
                            resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }))
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
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Read again at the next scrape.
        health.user_queue_full();
        assert!(
            metrics
                .render(&registry)
                .lines()
                .any(|l| l == "peregrine_user_queue_drops_total 2")
        );
    }
}

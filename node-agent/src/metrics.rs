//! Prometheus metrics and the `/metrics` + `/healthz` endpoint (127.0.0.1:9464 by default).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;

use crate::probes::ProbeStatus;

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
    pub kernel_drops: Family<ReasonLabel, Counter>,
    pub kernel_drops_per_cpu: Family<CpuLabel, Gauge>,
    pub user_queue_drops: Counter,
    pub decode_errors: Counter,
    pub loss_events: Counter,
    pub cache_entries: Family<CacheLabel, Gauge>,
    pub cache_capacity: Family<CacheLabel, Gauge>,
    pub queue_depth: Gauge,
    pub probes: Family<ProbeLabel, Gauge>,
    pub probes_attached: Gauge,
    pub probes_failed: Gauge,
    pub container_lookup_failures: Counter,
    // Shipping (`run`).
    pub messages_sent: Counter,
    pub events_shipped: Counter,
    pub send_failures: Family<ReasonLabel, Counter>,
    pub messages_rejected: Counter,
    pub spool_messages: Gauge,
    pub spool_bytes: Gauge,
    pub spool_dropped_messages: Counter,
    pub spool_dropped_events: Counter,
    pub heartbeats_sent: Counter,
    pub heartbeat_failures: Counter,
}

impl Metrics {
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("peregrine");
        r.register("events", "Events delivered, by kind", self.events.clone());
        r.register(
            "kernel_drops",
            "Events lost in the kernel: ring buffer full, or no scratch area",
            self.kernel_drops.clone(),
        );
        r.register(
            "kernel_ringbuf_drops_per_cpu",
            "Ring-buffer reserve failures per CPU, as counted by the kernel",
            self.kernel_drops_per_cpu.clone(),
        );
        r.register(
            "user_queue_drops",
            "Events dropped because the agent's internal queue was full",
            self.user_queue_drops.clone(),
        );
        r.register(
            "decode_errors",
            "Ring-buffer records that failed to decode",
            self.decode_errors.clone(),
        );
        r.register(
            "loss_events",
            "Loss events emitted",
            self.loss_events.clone(),
        );
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
            "probe_attached",
            "1 per probe attachment, labelled with its state",
            self.probes.clone(),
        );
        r.register(
            "probes_attached",
            "Probe attachments that succeeded",
            self.probes_attached.clone(),
        );
        r.register(
            "probes_failed",
            "Probe attachments that failed (degraded coverage)",
            self.probes_failed.clone(),
        );
        r.register(
            "container_lookup_failures",
            "containerd lookups that failed or timed out",
            self.container_lookup_failures.clone(),
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
            "spool_dropped_messages",
            "Messages dropped by the spool's full policy",
            self.spool_dropped_messages.clone(),
        );
        r.register(
            "spool_dropped_events",
            "Events dropped downstream of enrichment (spool full, or too large for any message)",
            self.spool_dropped_events.clone(),
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

    pub fn record_probes(&self, status: &[ProbeStatus]) {
        let mut attached = 0;
        let mut failed = 0;
        for s in status {
            match s.state {
                crate::probes::AttachState::Attached => attached += 1,
                crate::probes::AttachState::Failed => failed += 1,
                crate::probes::AttachState::Absent => {}
            }
            self.probes
                .get_or_create(&ProbeLabel {
                    program: s.program.into(),
                    target: s.target.clone(),
                    state: s.state.name(),
                })
                .set(1);
        }
        self.probes_attached.set(attached);
        self.probes_failed.set(failed);
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
    health: Arc<dyn Fn() -> String + Send + Sync>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let registry = Arc::new(metrics.registry());
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
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            metrics.render(&registry),
                        )),
                        "/healthz" => Some(("application/json", health())),
                        _ => None,
                    };
                    async move {
                        let resp = match body {
                            Some((ct, b)) => Response::builder()
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

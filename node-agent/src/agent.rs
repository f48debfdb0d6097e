//! The agent's run loop: probes → ring-buffer reader → enrichment → sink, with loss accounting,
//! health, metrics and graceful shutdown (probes detach first, then every buffered event is delivered
//! and the sink flushed).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use peregrine_event::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::{
    blinding::BlindingConfig,
    decode::RawEvent,
    enrich::{EnrichConfig, Enricher},
    health::{Health, Pipeline},
    loss::LossTracker,
    metrics::{KindLabel, Metrics},
    probes::{LoadOptions, ProbeError, ProbeStatus, Probes},
    ringbuf,
    sink::EventSink,
    starts::StartHistory,
    tick::{self, TickInputs, TickReport},
};

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub load: LoadOptions,
    pub enrich: EnrichConfig,
    /// Events buffered between the ring-buffer reader and enrichment.
    pub queue_capacity: usize,
    /// Bytes those events may hold (`RawEvent::weight`).
    pub queue_bytes: usize,
    pub metrics_addr: Option<SocketAddr>,
    /// The status tick's period: drop counters read (and Loss events emitted), blinding
    /// judged, caches swept.
    pub loss_interval: Duration,
    /// How often the ring buffer is drained when the kernel has not woken the reader.
    pub poll_interval: Duration,
    /// When the agent considers itself blind.
    pub blinding: BlindingConfig,
    /// Where the agent keeps its start history (restart loops); none: not kept.
    pub state_dir: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            load: LoadOptions::default(),
            enrich: EnrichConfig::default(),
            queue_capacity: 16384,
            queue_bytes: crate::eventq::DEFAULT_QUEUE_BYTES,
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            loss_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            blinding: BlindingConfig::default(),
            state_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Probes(#[from] ProbeError),
    #[error(transparent)]
    Metrics(#[from] crate::endpoint::ServeError),
    #[error(transparent)]
    Sink(Box<dyn std::error::Error + Send + Sync>),
    #[error("ring-buffer reader failed: {0}")]
    Reader(std::io::Error),
    #[error("starting the status tick thread: {0}")]
    Tick(std::io::Error),
}

/// What a run did, for the caller's last log line.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub events: u64,
    pub loss_events: u64,
    pub probes: Vec<ProbeStatus>,
}

impl AgentError {
    fn sink<E: std::error::Error + Send + Sync + 'static>(e: E) -> AgentError {
        AgentError::Sink(Box::new(e))
    }
}

/// Runs until `shutdown` resolves or the sink's reader goes away. Records into `health` what
/// `/healthz`, `/metrics` and heartbeats report.
pub async fn run<S: EventSink>(
    cfg: AgentConfig,
    metrics: Metrics,
    health: Health,
    sink: &mut S,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, AgentError> {
    // Recorded before anything can fail, so a crash loop counts too.
    let starts = cfg
        .state_dir
        .as_deref()
        .map(|dir| StartHistory::record(dir, std::time::SystemTime::now()));
    let (probes, ring, drops) = Probes::load(cfg.load)?;
    health.record_probes(&probes.status);
    let status = probes.status.clone();
    tracing::info!(
        attached = probes.attached(),
        failed = probes.failed().count(),
        "probes loaded"
    );

    // Seed after attaching: a process that starts in between is seen by both, never by neither.
    let mut enricher = Enricher::new(cfg.enrich.clone());
    // Loading parsed the kernel's BTF and the object: tens of MiB, all free now. Return them
    // to the system so the agent's resident size reflects what it actually keeps.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };

    let _server = match cfg.metrics_addr {
        Some(addr) => Some(AbortOnDrop(
            crate::endpoint::serve(addr, metrics.clone(), health.clone()).await?,
        )),
        None => None,
    };

    let (tx, mut rx) = crate::eventq::channel(cfg.queue_capacity, cfg.queue_bytes);
    let (stop_tx, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(ringbuf::run(
        ring,
        tx,
        health.clone(),
        stop_rx,
        enricher.containers.clone(),
        cfg.poll_interval,
    ));
    let (report_tx, mut reports) = mpsc::channel::<TickReport>(tick::REPORTS_CAPACITY);
    let ticker = tick::spawn(
        TickInputs {
            interval: cfg.loss_interval,
            blinding: cfg.blinding,
            loss: LossTracker::new(drops, health.clone()),
            health: health.clone(),
            watch: probes.watch_list(),
            starts,
        },
        report_tx,
    )
    .map_err(AgentError::Tick)?;
    // Housekeeping that needs the enricher or the sink (cache sweeps and gauges, flushing what
    // is due). The status tick itself runs on its own thread.
    let mut housekeeping = tokio::time::interval(cfg.loss_interval);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut summary = RunSummary {
        probes: status,
        ..RunSummary::default()
    };

    health.set_pipeline(Pipeline::Running);
    tokio::pin!(shutdown);
    let mut closed = false;
    loop {
        // Biased, with the events last: under a flood the event queue is never empty, and a
        // tick report or housekeeping polled after it would never be taken.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(report) = reports.recv() => {
                if let Err(e) = on_report(&mut enricher, sink, &metrics, &health, report, &mut summary).await {
                    if S::is_closed(&e) { closed = true; break; }
                    return Err(AgentError::sink(e));
                }
            }
            _ = housekeeping.tick() => {
                metrics.queue_depth.set(rx.len() as i64);
                if let Ok(n) = probes.compat_syscalls_folded() {
                    let seen = metrics.compat_syscalls_folded.get();
                    metrics.compat_syscalls_folded.inc_by(n.saturating_sub(seen));
                }
                enricher.procs.sweep();
                update_cache_gauges(&enricher, &metrics);
                health.set_container_lookup_failures(enricher.containers.lookups_failed());
                health.set_exe_hash_skipped(
                    enricher.hashes.skipped().iter().map(|(s, n)| (s.name(), *n)).collect(),
                );
                sink.flush().await.map_err(AgentError::sink)?;
            }
            raw = rx.recv() => {
                let Some(raw) = raw else { break };
                if let Err(e) = deliver(&mut enricher, sink, &metrics, raw, &mut summary).await {
                    if S::is_closed(&e) { closed = true; break; }
                    return Err(AgentError::sink(e));
                }
                if rx.is_empty() {
                    sink.flush().await.map_err(AgentError::sink)?;
                }
            }
        }
    }

    // Shutdown: no new events, then deliver everything already captured.
    tracing::info!("shutting down: detaching probes and draining buffers");
    health.set_pipeline(Pipeline::Stopping);
    let t = std::time::Instant::now();
    probes.detach();
    tracing::debug!(took = ?t.elapsed(), "probes detached");
    let _ = stop_tx.send(true);
    if !closed {
        while let Some(raw) = rx.recv().await {
            deliver(&mut enricher, sink, &metrics, raw, &mut summary)
                .await
                .map_err(AgentError::sink)?;
        }
    }
    drop(rx);
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(AgentError::Reader(e)),
        Err(e) => return Err(AgentError::Reader(std::io::Error::other(e))),
    }
    // The tick's last run reads the final drop counters; then every report left is emitted.
    let left = tokio::task::spawn_blocking(move || ticker.stop())
        .await
        .map_err(|e| AgentError::Tick(std::io::Error::other(e)))?;
    if !closed {
        while let Some(report) = reports.recv().await {
            on_report(&mut enricher, sink, &metrics, &health, report, &mut summary)
                .await
                .map_err(AgentError::sink)?;
        }
        if let Some(report) = left {
            on_report(&mut enricher, sink, &metrics, &health, report, &mut summary)
                .await
                .map_err(AgentError::sink)?;
        }
        sink.close().await.map_err(AgentError::sink)?;
    }
    Ok(summary)
}

/// A status tick's report: its Loss event, and its blinding reasons for the sink.
async fn on_report<S: EventSink>(
    enricher: &mut Enricher,
    sink: &mut S,
    metrics: &Metrics,
    health: &Health,
    report: TickReport,
    summary: &mut RunSummary,
) -> Result<(), S::Error> {
    if let Some(l) = report.loss {
        emit_loss(enricher, sink, metrics, health, l, summary).await?;
    }
    if !report.blinding.is_empty() {
        sink.blinded(&report.blinding, Timestamp::now()).await?;
    }
    Ok(())
}

async fn deliver<S: EventSink>(
    enricher: &mut Enricher,
    sink: &mut S,
    metrics: &Metrics,
    raw: RawEvent,
    summary: &mut RunSummary,
) -> Result<(), S::Error> {
    let Some(ev) = enricher.enrich(raw).await else {
        return Ok(());
    };
    metrics
        .events
        .get_or_create(&KindLabel {
            kind: ev.kind.name(),
        })
        .inc();
    summary.events += 1;
    sink.emit(ev).await
}

async fn emit_loss<S: EventSink>(
    enricher: &mut Enricher,
    sink: &mut S,
    metrics: &Metrics,
    health: &Health,
    loss: peregrine_event::LossInfo,
    summary: &mut RunSummary,
) -> Result<(), S::Error> {
    tracing::warn!(
        kernel_ringbuf_full = loss.kernel_ringbuf_full,
        kernel_no_scratch = loss.kernel_no_scratch,
        user_queue_full = loss.user_queue_full,
        tick = loss.tick,
        "events lost"
    );
    health.loss_event();
    metrics
        .events
        .get_or_create(&KindLabel { kind: "loss" })
        .inc();
    summary.loss_events += 1;
    sink.emit(enricher.loss_event(loss)).await
}

fn update_cache_gauges(e: &Enricher, m: &Metrics) {
    m.set_bounded_cache("process_table", e.procs.stats());
    let (cgroups, meta) = e.containers.cache_stats();
    m.set_bounded_cache("container_cgroups", cgroups);
    m.set_bounded_cache("container_metadata", meta);
    m.set_cache("exe_hashes", e.hashes.len(), e.hashes.capacity());
    m.set_bounded_cache("new_binary_writes", e.newbin.stats());
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
}

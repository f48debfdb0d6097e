//! Health: the agent's own state. Which probes are attached, what was dropped where, and
//! whether the pipeline runs.
//!
//! Stages record into it (plain atomics: cheap on the event path, and never read back from a
//! metrics library); `/healthz`, `/metrics`, Loss events and heartbeats all read from it, so
//! they agree with each other.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use peregrine_event::{BlindingReason, LossInfo, Timestamp};
use peregrine_wire::{AgentIdentity, Heartbeat};

use crate::probes::{AttachState, KernelDrops, ProbeStatus};

/// Cheap to clone; clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set once when probes load; a probe found detached later changes state.
    probes: Mutex<Option<Vec<ProbeStatus>>>,
    pipeline: AtomicU8,
    /// Records read from the ring buffer (what the kernel delivered).
    records_read: AtomicU64,
    /// Status ticks so far ([`crate::tick`]).
    ticks: AtomicU64,
    blinding: Mutex<Blinding>,
    kernel_ringbuf_full: AtomicU64,
    kernel_no_scratch: AtomicU64,
    kernel_ringbuf_full_per_cpu: Mutex<Vec<u64>>,
    user_queue_full: AtomicU64,
    decode_errors: AtomicU64,
    downstream_messages: AtomicU64,
    downstream_events: AtomicU64,
    loss_events: AtomicU64,
    container_lookup_failures: AtomicU64,
    spool_faults: [AtomicU64; SpoolOp::ALL.len() * FaultKind::ALL.len()],
    spool_quarantined: AtomicU64,
    spool_degraded: AtomicBool,
    exe_hash_skipped: Mutex<Vec<(&'static str, u64)>>,
}

/// Why the agent is blind: now, and at any tick since the last heartbeat took the report.
#[derive(Debug, Default)]
struct Blinding {
    current: Vec<BlindingReason>,
    /// One reason per code, the latest detail of each.
    since_report: Vec<BlindingReason>,
}

fn merge(into: &mut Vec<BlindingReason>, reasons: &[BlindingReason]) {
    for r in reasons {
        match into.iter_mut().find(|o| o.code == r.code) {
            Some(o) => o.detail.clone_from(&r.detail),
            None => into.push(r.clone()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the spool was doing when the file system failed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpoolOp {
    /// Opening the spool: its directory, the agent id and epoch files, the scan.
    Open = 0,
    /// Sealing: writing a message (or moving one held in memory to disk).
    Write = 1,
    /// Sending: reading a message back.
    Read = 2,
    /// Deleting a sent or dropped message.
    Remove = 3,
    /// Moving a message aside (`rejected/`, `quarantine/`).
    Move = 4,
}

impl SpoolOp {
    pub const ALL: [SpoolOp; 5] = [
        SpoolOp::Open,
        SpoolOp::Write,
        SpoolOp::Read,
        SpoolOp::Remove,
        SpoolOp::Move,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SpoolOp::Open => "open",
            SpoolOp::Write => "write",
            SpoolOp::Read => "read",
            SpoolOp::Remove => "remove",
            SpoolOp::Move => "move",
        }
    }
}

/// How the file system failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// ENOSPC, EDQUOT: the disk (or a quota) is full.
    NoSpace = 0,
    /// EMFILE, ENFILE: out of file descriptors.
    NoFiles = 1,
    /// Anything else: EIO, EROFS, EACCES, a missing directory...
    Io = 2,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [FaultKind::NoSpace, FaultKind::NoFiles, FaultKind::Io];

    pub fn of(e: &std::io::Error) -> FaultKind {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => FaultKind::NoSpace,
            Some(libc::EMFILE | libc::ENFILE) => FaultKind::NoFiles,
            _ => FaultKind::Io,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::NoSpace => "enospc",
            FaultKind::NoFiles => "emfile",
            FaultKind::Io => "io",
        }
    }
}

/// Where the run loop is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Pipeline {
    /// Probes are loading, or the reader has not started.
    #[default]
    Starting = 0,
    /// Events flow from the ring buffer to the sink.
    Running = 1,
    /// Shutting down: probes detached, buffers draining.
    Stopping = 2,
}

impl Pipeline {
    fn from_u8(v: u8) -> Pipeline {
        match v {
            1 => Pipeline::Running,
            2 => Pipeline::Stopping,
            _ => Pipeline::Starting,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Starting => "starting",
            Pipeline::Running => "running",
            Pipeline::Stopping => "stopping",
        }
    }
}

/// Drop counters, totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Ring-buffer reserve failures in the kernel.
    pub kernel_ringbuf_full: u64,
    /// Events the kernel could not assemble (no per-CPU scratch area).
    pub kernel_no_scratch: u64,
    /// Dropped because the queue in front of enrichment was full.
    pub user_queue_full: u64,
    /// Malformed ring-buffer records (should stay 0).
    pub decode_errors: u64,
    /// Messages dropped downstream of enrichment (the spool's full policy).
    pub downstream_messages: u64,
    /// Events dropped downstream of enrichment (spool full, or too large for any message).
    pub downstream_events: u64,
    /// Loss events emitted.
    pub loss_events: u64,
}

impl Drops {
    /// What was lost between `earlier` and `self`, as a Loss event reports it.
    pub fn since(&self, earlier: &Drops) -> LossInfo {
        LossInfo {
            kernel_ringbuf_full: self
                .kernel_ringbuf_full
                .saturating_sub(earlier.kernel_ringbuf_full),
            kernel_no_scratch: self
                .kernel_no_scratch
                .saturating_sub(earlier.kernel_no_scratch),
            user_queue_full: self.user_queue_full.saturating_sub(earlier.user_queue_full),
            downstream: self
                .downstream_events
                .saturating_sub(earlier.downstream_events),
            tick: 0,
        }
    }
}

impl Health {
    /// Records the outcome of probe loading (once per run).
    pub fn record_probes(&self, status: &[ProbeStatus]) {
        let mut probes = lock(&self.inner.probes);
        if probes.is_some() {
            tracing::debug!("probe status already recorded");
            return;
        }
        *probes = Some(status.to_vec());
    }

    /// The probes' attach status; empty until probes are loaded.
    pub fn probes(&self) -> Vec<ProbeStatus> {
        lock(&self.inner.probes).clone().unwrap_or_default()
    }

    /// The probe at `index` (in load order) was found detached after attaching.
    pub fn mark_detached(&self, index: usize) {
        let mut probes = lock(&self.inner.probes);
        if let Some(p) = probes.as_mut().and_then(|p| p.get_mut(index)) {
            tracing::error!(program = p.program, target = %p.target, "probe found detached after attaching; coverage is degraded");
            p.state = AttachState::Detached;
            p.error = Some("detached after attaching (found by the periodic re-check)".into());
        }
    }

    /// `n` more records were read from the ring buffer.
    pub fn records_read(&self, n: u64) {
        self.inner.records_read.fetch_add(n, Ordering::Relaxed);
    }

    pub fn records_read_total(&self) -> u64 {
        self.inner.records_read.load(Ordering::Relaxed)
    }

    /// The status tick `tick` ran and judged the agent blind for `reasons` (none: not blind).
    pub fn record_tick(&self, tick: u64, reasons: &[BlindingReason]) {
        let mut b = lock(&self.inner.blinding);
        b.current = reasons.to_vec();
        merge(&mut b.since_report, reasons);
        drop(b);
        self.inner.ticks.store(tick, Ordering::Relaxed);
    }

    /// Status ticks so far.
    pub fn ticks(&self) -> u64 {
        self.inner.ticks.load(Ordering::Relaxed)
    }

    /// Why the agent is blind now (empty: it is not).
    pub fn blinding(&self) -> Vec<BlindingReason> {
        lock(&self.inner.blinding).current.clone()
    }

    /// For a heartbeat: every reason the agent was blind for at any tick since the previous
    /// report (so a blind spell between two heartbeats is not missed), then starts over from
    /// the current reasons. Give the report back with [`Health::return_blinding_report`] if it
    /// was not delivered.
    pub fn take_blinding_report(&self) -> Vec<BlindingReason> {
        let mut b = lock(&self.inner.blinding);
        let current = b.current.clone();
        std::mem::replace(&mut b.since_report, current)
    }

    /// A report that was not delivered: its reasons are reported again next time.
    pub fn return_blinding_report(&self, reasons: &[BlindingReason]) {
        merge(&mut lock(&self.inner.blinding).since_report, reasons);
    }

    pub fn set_pipeline(&self, p: Pipeline) {
        self.inner.pipeline.store(p as u8, Ordering::Relaxed);
    }

    pub fn pipeline(&self) -> Pipeline {
        Pipeline::from_u8(self.inner.pipeline.load(Ordering::Relaxed))
    }

    /// The kernel's own counters (totals), as last read from its map.
    pub fn set_kernel_drops(&self, k: KernelDrops) {
        let i = &self.inner;
        i.kernel_ringbuf_full
            .store(k.ringbuf_full, Ordering::Relaxed);
        i.kernel_no_scratch.store(k.no_scratch, Ordering::Relaxed);
    }

    pub fn set_kernel_ringbuf_full_per_cpu(&self, per_cpu: Vec<u64>) {
        *lock(&self.inner.kernel_ringbuf_full_per_cpu) = per_cpu;
    }

    pub fn kernel_ringbuf_full_per_cpu(&self) -> Vec<u64> {
        lock(&self.inner.kernel_ringbuf_full_per_cpu).clone()
    }

    /// An event dropped because enrichment's queue was full.
    pub fn user_queue_full(&self) {
        self.inner.user_queue_full.fetch_add(1, Ordering::Relaxed);
    }

    /// A record that failed to decode; returns how many have so far.
    pub fn decode_error(&self) -> u64 {
        self.inner.decode_errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Messages and events dropped after enrichment (by the spool's policy, or too large).
    pub fn downstream_dropped(&self, messages: u64, events: u64) {
        let i = &self.inner;
        i.downstream_messages.fetch_add(messages, Ordering::Relaxed);
        i.downstream_events.fetch_add(events, Ordering::Relaxed);
    }

    pub fn loss_event(&self) {
        self.inner.loss_events.fetch_add(1, Ordering::Relaxed);
    }

    /// containerd lookups that failed so far (the resolver counts them).
    pub fn set_container_lookup_failures(&self, total: u64) {
        self.inner
            .container_lookup_failures
            .store(total, Ordering::Relaxed);
    }

    pub fn container_lookup_failures(&self) -> u64 {
        self.inner.container_lookup_failures.load(Ordering::Relaxed)
    }

    /// A file-system error the spool survived (retried, or worked around).
    pub fn spool_fault(&self, op: SpoolOp, kind: FaultKind) {
        let i = op as usize * FaultKind::ALL.len() + kind as usize;
        if let Some(c) = self.inner.spool_faults.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Faults so far for (op, kind).
    pub fn spool_faults(&self, op: SpoolOp, kind: FaultKind) -> u64 {
        let i = op as usize * FaultKind::ALL.len() + kind as usize;
        self.inner
            .spool_faults
            .get(i)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A corrupt or foreign file was moved out of the spool (or deleted, the quarantine full).
    pub fn spool_quarantined(&self) {
        self.inner.spool_quarantined.fetch_add(1, Ordering::Relaxed);
    }

    pub fn spool_quarantined_total(&self) -> u64 {
        self.inner.spool_quarantined.load(Ordering::Relaxed)
    }

    /// The spool cannot write to disk: messages are held in memory (bounded).
    pub fn set_spool_degraded(&self, degraded: bool) {
        self.inner.spool_degraded.store(degraded, Ordering::Relaxed);
    }

    pub fn spool_degraded(&self) -> bool {
        self.inner.spool_degraded.load(Ordering::Relaxed)
    }

    /// Executables left unhashed so far, by reason (the hash cache counts them).
    pub fn set_exe_hash_skipped(&self, totals: Vec<(&'static str, u64)>) {
        *self
            .inner
            .exe_hash_skipped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = totals;
    }

    pub fn exe_hash_skipped(&self) -> Vec<(&'static str, u64)> {
        self.inner
            .exe_hash_skipped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn drops(&self) -> Drops {
        let i = &self.inner;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Drops {
            kernel_ringbuf_full: get(&i.kernel_ringbuf_full),
            kernel_no_scratch: get(&i.kernel_no_scratch),
            user_queue_full: get(&i.user_queue_full),
            decode_errors: get(&i.decode_errors),
            downstream_messages: get(&i.downstream_messages),
            downstream_events: get(&i.downstream_events),
            loss_events: get(&i.loss_events),
        }
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            pipeline: self.pipeline(),
            probes: self.probes(),
            drops: self.drops(),
            spool_degraded: self.spool_degraded(),
            ticks: self.ticks(),
            blinding: self.blinding(),
        }
    }

    /// The `/healthz` answer with every probe named: (HTTP status, JSON body).
    pub fn healthz(&self) -> (u16, String) {
        self.healthz_for(Detail::Full)
    }

    /// The `/healthz` answer at the given detail: (HTTP status, JSON body).
    pub fn healthz_for(&self, detail: Detail) -> (u16, String) {
        let s = self.snapshot();
        let code = match s.verdict() {
            Verdict::Down(_) => 503,
            Verdict::Ok | Verdict::Degraded => 200,
        };
        (code, s.to_json_for(detail))
    }
}

/// How much `/healthz` tells: which probes failed, and the kernel's words for why, tell an
/// attacker which behaviour goes unseen on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Every probe with its program, target, state and error (loopback peers only).
    Full,
    /// How many probes are in each state, nothing more.
    Counts,
}

/// The agent's state at one moment.
#[derive(Clone, Debug)]
pub struct HealthSnapshot {
    pub pipeline: Pipeline,
    pub probes: Vec<ProbeStatus>,
    pub drops: Drops,
    /// The spool cannot write to disk and holds messages in memory.
    pub spool_degraded: bool,
    /// Status ticks so far.
    pub ticks: u64,
    /// Why the agent is blind (empty: it is not). [`HealthSnapshot::heartbeat`] sends these.
    pub blinding: Vec<BlindingReason>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every probe that exists on this kernel is attached, and events flow.
    Ok,
    /// Events flow, but some probes failed to attach or were detached (coverage is partial),
    /// the agent is blind for another reason (sustained drops, a restart loop), or the spool
    /// cannot write to disk (messages wait in memory, bounded). Restarting would not help, so
    /// this is not a failure of the agent.
    Degraded,
    /// Nothing is being captured, for this reason.
    Down(&'static str),
}

/// What the shipping stage adds to a heartbeat.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShippingState {
    pub spool_messages: u64,
    pub spool_bytes: u64,
    /// Events the spool's full policy dropped.
    pub spool_dropped_events: u64,
    /// Events SQS acknowledged.
    pub events_sent: u64,
}

impl HealthSnapshot {
    pub fn verdict(&self) -> Verdict {
        match self.pipeline {
            Pipeline::Starting => return Verdict::Down("pipeline starting"),
            Pipeline::Stopping => return Verdict::Down("pipeline stopping"),
            Pipeline::Running => {}
        }
        // A probe that failed to attach, even every probe, is degraded coverage, reported in
        // heartbeats and metrics: a liveness restart would not fix it (infra/daemonset.yaml).
        // A spool that cannot write to disk buffers in memory: shipping goes on, with less
        // protection against an outage; a restart would not free the disk.
        if self.spool_degraded
            || !self.blinding.is_empty()
            || self
                .probes
                .iter()
                .any(|p| matches!(p.state, AttachState::Failed | AttachState::Detached))
        {
            Verdict::Degraded
        } else {
            Verdict::Ok
        }
    }

    /// The `/healthz` body: `probe_counts` always, the `probes` list only at [`Detail::Full`].
    pub fn to_json_for(&self, detail: Detail) -> String {
        let count = |st: AttachState| self.probes.iter().filter(|p| p.state == st).count();
        let verdict = self.verdict();
        let mut v = serde_json::json!({
            "status": match verdict {
                Verdict::Ok => "ok",
                Verdict::Degraded => "degraded",
                Verdict::Down(_) => "down",
            },
            "pipeline": self.pipeline.name(),
            "probe_counts": {
                "attached": count(AttachState::Attached),
                "failed": count(AttachState::Failed),
                "absent": count(AttachState::Absent),
                "detached": count(AttachState::Detached),
            },
            "user_queue_drops": self.drops.user_queue_full,
            "loss_events": self.drops.loss_events,
            "spool_degraded": self.spool_degraded,
            "tick": self.ticks,
        });
        if let Some(o) = v.as_object_mut() {
            if let Verdict::Down(reason) = verdict {
                o.insert("reason".into(), reason.into());
            }
            // Which reasons at any detail; their figures and probe names only at Full.
            let blinded: Vec<serde_json::Value> = self
                .blinding
                .iter()
                .map(|r| match detail {
                    Detail::Full => serde_json::json!({"code": r.code, "detail": r.detail}),
                    Detail::Counts => serde_json::json!({"code": r.code}),
                })
                .collect();
            o.insert("blinded".into(), blinded.into());
            if detail == Detail::Full {
                let probes: Vec<serde_json::Value> = self
                    .probes
                    .iter()
                    .map(|s| serde_json::json!({"program": s.program, "target": s.target, "state": s.state.name(), "error": s.error}))
                    .collect();
                o.insert("probes".into(), probes.into());
            }
        }
        v.to_string()
    }

    /// The heartbeat this state makes, with what shipping knows.
    pub fn heartbeat(
        &self,
        identity: &AgentIdentity,
        kernel_release: &str,
        shipping: ShippingState,
        uptime: Duration,
    ) -> Heartbeat {
        Heartbeat {
            agent_id: identity.agent_id.clone(),
            node_name: identity.node_name.clone(),
            cluster_name: identity.cluster_name.clone(),
            cluster_arn: identity.cluster_arn.clone(),
            kernel_release: kernel_release.to_string(),
            agent_version: identity.agent_version.clone(),
            probes: self
                .probes
                .iter()
                .map(|p| peregrine_wire::ProbeStatus {
                    program: p.program.to_string(),
                    target: p.target.clone(),
                    state: match p.state {
                        AttachState::Attached => peregrine_wire::ProbeState::Attached,
                        // The wire predates `detached`: a failed probe, its error says why.
                        AttachState::Failed | AttachState::Detached => {
                            peregrine_wire::ProbeState::Failed
                        }
                        AttachState::Absent => peregrine_wire::ProbeState::Absent,
                    },
                    error: p.error.clone(),
                })
                .collect(),
            drops: peregrine_wire::DropCounters {
                kernel_ringbuf_full: self.drops.kernel_ringbuf_full,
                kernel_no_scratch: self.drops.kernel_no_scratch,
                user_queue_full: self.drops.user_queue_full,
                spool_dropped: shipping.spool_dropped_events,
            },
            spool: peregrine_wire::SpoolDepth {
                messages: shipping.spool_messages,
                bytes: shipping.spool_bytes,
                degraded: self.spool_degraded,
            },
            events_sent: shipping.events_sent,
            blinding: self.blinding.clone(),
            uptime,
            timestamp: Timestamp::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(target: &str, state: AttachState) -> ProbeStatus {
        ProbeStatus {
            program: "p",
            target: target.into(),
            state,
            error: (state == AttachState::Failed).then(|| "verifier said no".into()),
        }
    }

    #[test]
    fn healthz_is_503_until_running_and_while_stopping() {
        let h = Health::default();
        let (code, body) = h.healthz();
        assert_eq!(code, 503);
        assert!(body.contains("\"reason\":\"pipeline starting\""), "{body}");

        h.record_probes(&[
            probe("a/b", AttachState::Attached),
            probe("a/c", AttachState::Absent),
        ]);
        h.set_pipeline(Pipeline::Running);
        let (code, body) = h.healthz();
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        assert!(!body.contains("reason"), "{body}");

        h.set_pipeline(Pipeline::Stopping);
        assert_eq!(h.healthz().0, 503);

        let none = Health::default();
        none.record_probes(&[probe("a/b", AttachState::Failed)]);
        none.set_pipeline(Pipeline::Running);
        let (code, body) = none.healthz();
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
    }

    #[test]
    fn a_failed_probe_is_degraded_not_down() {
        let h = Health::default();
        h.record_probes(&[
            probe("a/b", AttachState::Attached),
            probe("a/c", AttachState::Failed),
        ]);
        h.set_pipeline(Pipeline::Running);
        let (code, body) = h.healthz();
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert!(body.contains("verifier said no"), "{body}");
    }

    #[test]
    fn counts_name_no_probe_and_no_error() {
        let h = Health::default();
        h.record_probes(&[
            probe("sched/sched_process_exec", AttachState::Attached),
            probe("syscalls/sys_enter_connect", AttachState::Failed),
            probe("syscalls/sys_enter_open", AttachState::Absent),
        ]);
        h.set_pipeline(Pipeline::Running);
        let (code, body) = h.healthz_for(Detail::Counts);
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "degraded", "{body}");
        assert_eq!(
            v["probe_counts"],
            serde_json::json!({"attached": 1, "failed": 1, "absent": 1, "detached": 0}),
            "{body}"
        );
        assert!(v.get("probes").is_none(), "{body}");
        for secret in ["sys_enter_connect", "verifier said no", "\"p\""] {
            assert!(!body.contains(secret), "{secret} in {body}");
        }

        let (_, full) = h.healthz_for(Detail::Full);
        assert!(full.contains("sys_enter_connect"), "{full}");
        assert!(full.contains("verifier said no"), "{full}");

        // Down keeps its reason at either detail.
        h.set_pipeline(Pipeline::Stopping);
        let (code, body) = h.healthz_for(Detail::Counts);
        assert_eq!(code, 503);
        assert!(body.contains("\"reason\":\"pipeline stopping\""), "{body}");
    }

    #[test]
    fn blinding_degrades_healthz_and_a_heartbeat_reports_every_spell() {
        use peregrine_event::BlindingKind;
        let h = Health::default();
        h.record_probes(&[
            probe("a/b", AttachState::Attached),
            probe("a/c", AttachState::Attached),
        ]);
        h.set_pipeline(Pipeline::Running);
        assert!(h.healthz().1.contains("\"status\":\"ok\""));
        let drops = BlindingReason::new(BlindingKind::SustainedDrops, "lost 5 in 3 ticks");
        h.record_tick(1, std::slice::from_ref(&drops));
        let (code, body) = h.healthz_for(Detail::Counts);
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["tick"], 1);
        assert_eq!(
            v["blinded"],
            serde_json::json!([{"code": "sustained_drops"}])
        );
        let v: serde_json::Value = serde_json::from_str(&h.healthz().1).unwrap();
        assert_eq!(v["blinded"][0]["detail"], "lost 5 in 3 ticks");

        // The spell ends before the heartbeat: the heartbeat still reports it, once.
        h.record_tick(2, &[]);
        assert!(h.healthz().1.contains("\"status\":\"ok\""));
        assert_eq!(h.take_blinding_report(), std::slice::from_ref(&drops));
        assert!(h.take_blinding_report().is_empty());
        // A report that was not delivered comes back.
        h.return_blinding_report(std::slice::from_ref(&drops));
        assert_eq!(h.take_blinding_report(), [drops]);

        // A probe found detached: degraded, and `failed` on the wire with the reason.
        h.mark_detached(1);
        let s = h.snapshot();
        assert_eq!(s.verdict(), Verdict::Degraded);
        let id = AgentIdentity::default();
        let hb = s.heartbeat(&id, "6.1", ShippingState::default(), Duration::ZERO);
        assert_eq!(hb.probes[1].state, peregrine_wire::ProbeState::Failed);
        assert!(hb.probes[1].error.as_deref().unwrap().contains("detached"));
        assert_eq!(hb.probes[0].state, peregrine_wire::ProbeState::Attached);
    }

    #[test]
    fn drops_are_totals_and_loss_is_their_difference() {
        let h = Health::default();
        let before = h.drops();
        h.user_queue_full();
        h.user_queue_full();
        h.downstream_dropped(1, 7);
        h.set_kernel_drops(KernelDrops {
            ringbuf_full: 5,
            no_scratch: 1,
        });
        assert_eq!(h.decode_error(), 1);
        let after = h.drops();
        assert_eq!(after.user_queue_full, 2);
        let loss = after.since(&before);
        assert_eq!(
            (
                loss.kernel_ringbuf_full,
                loss.kernel_no_scratch,
                loss.user_queue_full,
                loss.downstream
            ),
            (5, 1, 2, 7)
        );
        assert_eq!(after.since(&after).total(), 0);
    }

    #[test]
    fn heartbeats_carry_probes_drops_and_shipping() {
        let h = Health::default();
        h.record_probes(&[probe("a/b", AttachState::Attached)]);
        h.user_queue_full();
        let id = AgentIdentity {
            agent_id: "id".into(),
            node_name: "node".into(),
            cluster_name: "cluster".into(),
            cluster_arn: Some(
                "arn:aws:eks:eu-west-1:111122223333:cluster/cluster"
                    .parse()
                    .unwrap(),
            ),
            agent_version: "1".into(),
        };
        let hb = h.snapshot().heartbeat(
            &id,
            "6.1",
            ShippingState {
                spool_messages: 2,
                spool_bytes: 30,
                spool_dropped_events: 4,
                events_sent: 9,
            },
            Duration::from_secs(3),
        );
        assert_eq!(hb.probes.len(), 1);
        assert_eq!(hb.probes[0].state, peregrine_wire::ProbeState::Attached);
        assert_eq!(hb.drops.user_queue_full, 1);
        assert_eq!(hb.drops.spool_dropped, 4);
        assert_eq!((hb.spool.messages, hb.spool.bytes), (2, 30));
        assert_eq!(hb.events_sent, 9);
        assert_eq!(hb.kernel_release, "6.1");
        assert_eq!(hb.cluster_arn, id.cluster_arn);
    }
}

//! The agent's periodic health report: identity, probe coverage, drop counters, spool depth.
//! Loss is reported twice on purpose: as `Loss` events in the batches (with timing) and as
//! cumulative counters here (so that a detector can see loss even when batches are lost).

use std::time::Duration;

use peregrine_event::{
    BlindingReason, ClusterArn, MAX_BLINDING_CODE_BYTES, MAX_BLINDING_DETAIL_BYTES, Timestamp,
};

use crate::error::{Inconsistency, WireError};
use crate::pb;

/// An agent heartbeat. On the wire the identity fields and `timestamp` travel in the envelope
/// header; the rest in `pb::Heartbeat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    pub agent_id: String,
    pub node_name: String,
    pub cluster_name: String,
    /// The cluster's ARN, when the agent was told it.
    pub cluster_arn: Option<ClusterArn>,
    /// `uname -r` of the node.
    pub kernel_release: String,
    pub agent_version: String,
    /// One entry per eBPF program the agent tried to attach.
    pub probes: Vec<ProbeStatus>,
    /// Cumulative drop counters since the agent started.
    pub drops: DropCounters,
    /// What is waiting in the on-disk spool right now.
    pub spool: SpoolDepth,
    /// Cumulative events delivered to the queue.
    pub events_sent: u64,
    /// Why the agent is blind right now; empty when it is not (and from older agents).
    pub blinding: Vec<BlindingReason>,
    pub uptime: Duration,
    /// When the heartbeat was taken.
    pub timestamp: Timestamp,
}

/// The attach state of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStatus {
    /// The eBPF program's name.
    pub program: String,
    /// Its attach point, for example `syscalls/sys_enter_openat`.
    pub target: String,
    pub state: ProbeState,
    /// Why attaching failed, when it did.
    pub error: Option<String>,
}

/// Whether a probe is attached. A failed probe is degraded coverage, not a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeState {
    Attached,
    Failed,
    /// The attach point does not exist on this kernel; nothing to cover.
    Absent,
}

/// Cumulative drop counters. Kernel-side and user-side losses are counted separately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Kernel ring-buffer reserve/output failures.
    pub kernel_ringbuf_full: u64,
    /// Kernel events lost for want of per-CPU scratch space.
    pub kernel_no_scratch: u64,
    /// Events dropped because the agent's internal queue was full.
    pub user_queue_full: u64,
    /// Messages dropped because the spool was full.
    pub spool_dropped: u64,
}

/// The on-disk spool's current depth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolDepth {
    pub messages: u64,
    pub bytes: u64,
    /// The spool cannot write to disk: messages wait in memory (bounded), and an outage now
    /// loses more than it would with a disk.
    pub degraded: bool,
}

impl ProbeState {
    fn to_pb(self) -> pb::ProbeState {
        match self {
            ProbeState::Attached => pb::ProbeState::Attached,
            ProbeState::Failed => pb::ProbeState::Failed,
            ProbeState::Absent => pb::ProbeState::Absent,
        }
    }

    fn from_pb(value: i32) -> Result<Self, Inconsistency> {
        match pb::ProbeState::try_from(value) {
            Ok(pb::ProbeState::Attached) => Ok(ProbeState::Attached),
            Ok(pb::ProbeState::Failed) => Ok(ProbeState::Failed),
            Ok(pb::ProbeState::Absent) => Ok(ProbeState::Absent),
            Ok(pb::ProbeState::Unspecified) | Err(_) => Err(Inconsistency::InvalidEnum {
                field: "ProbeStatus.state",
                value,
            }),
        }
    }
}

impl Heartbeat {
    pub(crate) fn to_pb(&self) -> pb::Heartbeat {
        pb::Heartbeat {
            kernel_release: self.kernel_release.clone(),
            probes: self
                .probes
                .iter()
                .map(|p| pb::ProbeStatus {
                    program: p.program.clone(),
                    target: p.target.clone(),
                    state: p.state.to_pb() as i32,
                    error: p.error.clone(),
                })
                .collect(),
            kernel_ringbuf_full: self.drops.kernel_ringbuf_full,
            kernel_no_scratch: self.drops.kernel_no_scratch,
            user_queue_full: self.drops.user_queue_full,
            spool_dropped: self.drops.spool_dropped,
            spool_messages: self.spool.messages,
            spool_bytes: self.spool.bytes,
            spool_degraded: self.spool.degraded,
            events_sent: self.events_sent,
            uptime_seconds: self.uptime.as_secs(),
            uptime_nanos: self.uptime.subsec_nanos(),
            blinding: self
                .blinding
                .iter()
                .map(|r| pb::BlindingReason {
                    code: r.code.clone(),
                    detail: r.detail.clone(),
                })
                .collect(),
        }
    }

    /// Checks the blinding reasons' byte bounds (their count is a [`crate::Limits`] value).
    pub(crate) fn check_blinding(reasons: &[BlindingReason]) -> Result<(), Inconsistency> {
        for r in reasons {
            for (field, len, max, expected) in [
                (
                    "BlindingReason.code",
                    r.code.len(),
                    MAX_BLINDING_CODE_BYTES,
                    "at most 64",
                ),
                (
                    "BlindingReason.detail",
                    r.detail.len(),
                    MAX_BLINDING_DETAIL_BYTES,
                    "at most 512",
                ),
            ] {
                if len > max {
                    return Err(Inconsistency::InvalidLength {
                        field,
                        len,
                        expected,
                    });
                }
            }
        }
        Ok(())
    }

    /// Rebuilds a heartbeat from its wire form and the (already validated) header.
    pub(crate) fn from_pb(h: pb::Heartbeat, header: &crate::Header) -> Result<Self, WireError> {
        if h.uptime_nanos >= 1_000_000_000 {
            return Err(Inconsistency::OutOfRange {
                field: "Heartbeat.uptime_nanos",
                value: u64::from(h.uptime_nanos),
            }
            .into());
        }
        let probes = h
            .probes
            .into_iter()
            .map(|p| {
                Ok(ProbeStatus {
                    state: ProbeState::from_pb(p.state)?,
                    program: p.program,
                    target: p.target,
                    error: p.error,
                })
            })
            .collect::<Result<Vec<_>, Inconsistency>>()?;
        let blinding: Vec<BlindingReason> = h
            .blinding
            .into_iter()
            .map(|r| BlindingReason {
                code: r.code,
                detail: r.detail,
            })
            .collect();
        Heartbeat::check_blinding(&blinding)?;
        Ok(Heartbeat {
            agent_id: header.agent_id.clone(),
            node_name: header.node_name.clone(),
            cluster_name: header.cluster_name.clone(),
            cluster_arn: header.cluster_arn.clone(),
            kernel_release: h.kernel_release,
            agent_version: header.agent_version.clone(),
            probes,
            drops: DropCounters {
                kernel_ringbuf_full: h.kernel_ringbuf_full,
                kernel_no_scratch: h.kernel_no_scratch,
                user_queue_full: h.user_queue_full,
                spool_dropped: h.spool_dropped,
            },
            spool: SpoolDepth {
                messages: h.spool_messages,
                bytes: h.spool_bytes,
                degraded: h.spool_degraded,
            },
            events_sent: h.events_sent,
            blinding,
            uptime: Duration::new(h.uptime_seconds, h.uptime_nanos),
            timestamp: header.created_at,
        })
    }
}

//! Body → [`Message`]: unwrap the framing, pre-scan, decode the protobuf, validate every
//! reference and rebuild the events.

use std::mem::size_of;
use std::sync::Arc;

use peregrine_event::{
    Ancestor, ClusterArn, Container, Event, Kind, MetadataState, Process, Timestamp,
};
use prost::Message as _;
use uuid::Uuid;

use crate::error::{Inconsistency, WireError};
use crate::kinds::{self, CostTables, Tables};
use crate::{Counts, Header, Heartbeat, Limits, Message, SCHEMA_VERSION, frame, pb, scan};

/// Decodes an SQS message body with the default [`Limits`].
pub fn decode(body: &str) -> Result<Message, WireError> {
    decode_with_limits(body, &Limits::default())
}

/// Decodes an SQS message body. Any error means the message is unusable as sent (poison):
/// the caller should fail it so that SQS moves it to the DLQ after its retries.
pub fn decode_with_limits(body: &str, limits: &Limits) -> Result<Message, WireError> {
    let raw = frame::open(body, limits)?;
    let scan = scan::scan(&raw)?;
    if !scan.has_header {
        return Err(WireError::MissingHeader);
    }
    // The version comes first: a newer schema may mean something else by the same fields.
    if scan.schema_version != u64::from(SCHEMA_VERSION) {
        return Err(WireError::UnsupportedVersion {
            found: u32::try_from(scan.schema_version).unwrap_or(u32::MAX),
            supported: SCHEMA_VERSION,
        });
    }
    Limits::check("event count", scan.events, limits.max_events)?;
    Limits::check(
        "event column length",
        scan.longest_column,
        limits.max_events,
    )?;
    Limits::check(
        "process table size",
        scan.processes,
        limits.max_table_entries,
    )?;
    Limits::check(
        "container table size",
        scan.containers,
        limits.max_table_entries,
    )?;
    Limits::check(
        "ancestor table size",
        scan.ancestors,
        limits.max_table_entries,
    )?;
    Limits::check("string table size", scan.strings, limits.max_strings)?;
    Limits::check("probe count", scan.probes, limits.max_probes)?;
    Limits::check(
        "blinding reason count",
        scan.blinding,
        limits.max_blinding_reasons,
    )?;

    let envelope = pb::Envelope::decode(raw.as_slice())?;
    let header = envelope.header.ok_or(WireError::MissingHeader)?;
    let counts = Counts {
        events: header.event_count,
        processes: header.process_count,
        containers: header.container_count,
    };
    let cluster_arn = match header.cluster_arn.as_str() {
        "" => None,
        arn => Some(
            ClusterArn::parse(arn)
                .ok()
                .filter(|a| a.cluster_name() == header.cluster_name)
                .ok_or(Inconsistency::ClusterArn)?,
        ),
    };
    let header = Header {
        schema_version: header.schema_version,
        agent_id: header.agent_id,
        node_name: header.node_name,
        cluster_name: header.cluster_name,
        cluster_arn,
        agent_version: header.agent_version,
        sequence: header.sequence,
        created_at: Timestamp::from_unix_nanos(header.created_at_unix_ns),
        counts,
    };
    match envelope.body.ok_or(WireError::MissingBody)? {
        pb::envelope::Body::Batch(batch) => {
            check_count("events", counts.events, batch.details.len())?;
            check_count("kinds", counts.events, batch.kinds.len())?;
            check_count("time deltas", counts.events, batch.time_deltas_ns.len())?;
            check_count("process refs", counts.events, batch.process_refs.len())?;
            check_count("thread id deltas", counts.events, batch.tid_deltas.len())?;
            check_count("container refs", counts.events, batch.container_refs.len())?;
            check_count("processes", counts.processes, batch.processes.len())?;
            check_count("containers", counts.containers, batch.containers.len())?;
            let cost = estimate(&batch)?;
            if cost > limits.max_decoded_bytes {
                return Err(WireError::LimitExceeded {
                    what: "estimated decoded size in bytes",
                    found: cost,
                    limit: limits.max_decoded_bytes,
                });
            }
            let events = rebuild(&batch)?;
            Ok(Message::Batch { header, events })
        }
        pb::envelope::Body::Heartbeat(hb) => {
            check_count("events", counts.events, 0)?;
            check_count("processes", counts.processes, 0)?;
            check_count("containers", counts.containers, 0)?;
            let heartbeat = Heartbeat::from_pb(hb, &header)?;
            Ok(Message::Heartbeat {
                header,
                heartbeat: Box::new(heartbeat),
            })
        }
    }
}

fn check_count(what: &'static str, header: u32, actual: usize) -> Result<(), Inconsistency> {
    if usize::try_from(header).ok() == Some(actual) {
        Ok(())
    } else {
        Err(Inconsistency::CountMismatch {
            what,
            header: u64::from(header),
            actual,
        })
    }
}

fn out_of_range(field: &'static str, table: &'static str, index: u32, len: usize) -> Inconsistency {
    Inconsistency::IndexOutOfRange {
        field,
        table,
        index: u64::from(index),
        len,
    }
}

/// Checked lookup in a batch table.
pub(crate) fn entry<'a, T>(
    table: &'a [T],
    index: u32,
    field: &'static str,
    name: &'static str,
) -> Result<&'a T, Inconsistency> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i))
        .ok_or_else(|| out_of_range(field, name, index, table.len()))
}

/// The string table.
pub(crate) struct Strings<'a>(pub(crate) &'a [String]);

impl<'a> Strings<'a> {
    pub(crate) fn get(&self, index: u32, field: &'static str) -> Result<&'a str, Inconsistency> {
        entry(self.0, index, field, "string").map(String::as_str)
    }

    pub(crate) fn owned(&self, index: u32, field: &'static str) -> Result<String, Inconsistency> {
        self.get(index, field).map(str::to_owned)
    }

    pub(crate) fn opt(
        &self,
        index: Option<u32>,
        field: &'static str,
    ) -> Result<Option<String>, Inconsistency> {
        index.map(|i| self.owned(i, field)).transpose()
    }

    pub(crate) fn len(&self, index: u32, field: &'static str) -> Result<u64, Inconsistency> {
        self.get(index, field).map(|s| s.len() as u64)
    }

    pub(crate) fn opt_len(
        &self,
        index: Option<u32>,
        field: &'static str,
    ) -> Result<u64, Inconsistency> {
        index.map_or(Ok(0), |i| self.len(i, field))
    }
}

/// Estimated heap bytes of the decoded events, computed from the wire form before anything is
/// materialised (it also validates every string and table index). Each event owns a copy of
/// its process (with lineage) and container, which is what this charges for. The encoder runs
/// the same function on what it built, so both sides agree on the figure.
pub(crate) fn estimate(b: &pb::EventBatch) -> Result<u64, WireError> {
    const STRING: u64 = size_of::<String>() as u64;
    const ANCESTOR: u64 = size_of::<Ancestor>() as u64;
    const EVENT: u64 = size_of::<Event>() as u64;
    let s = Strings(&b.strings);
    let ancestors = b
        .ancestors
        .iter()
        .map(|a| Ok(ANCESTOR + s.len(a.exe, "Ancestor.exe")? + s.len(a.comm, "Ancestor.comm")?))
        .collect::<Result<Vec<u64>, Inconsistency>>()?;
    let processes = b
        .processes
        .iter()
        .map(|p| {
            let mut c = s.len(p.comm, "Process.comm")?
                + s.len(p.exe, "Process.exe")?
                + s.len(p.cwd, "Process.cwd")?
                + s.opt_len(p.ld_preload, "Process.ld_preload")?
                + s.opt_len(p.ld_library_path, "Process.ld_library_path")?;
            c += match &p.sha256 {
                Some(pb::process::Sha256::Sha256Digest(_)) => 64,
                Some(pb::process::Sha256::Sha256Text(i)) => s.len(*i, "Process.sha256_text")?,
                None => 0,
            };
            for &a in &p.argv {
                c = c.saturating_add(STRING + s.len(a, "Process.argv")?);
            }
            for &a in &p.lineage {
                c = c.saturating_add(*entry(&ancestors, a, "Process.lineage", "ancestor")?);
            }
            Ok(c)
        })
        .collect::<Result<Vec<u64>, Inconsistency>>()?;
    let containers = b
        .containers
        .iter()
        .map(|c| {
            Ok(s.len(c.id, "Container.id")?
                + s.len(c.runtime, "Container.runtime")?
                + s.opt_len(c.name, "Container.name")?
                + s.opt_len(c.image, "Container.image")?
                + s.opt_len(c.pod_name, "Container.pod_name")?
                + s.opt_len(c.pod_namespace, "Container.pod_namespace")?
                + s.opt_len(c.pod_uid, "Container.pod_uid")?
                + s.opt_len(c.namespace, "Container.namespace")?)
        })
        .collect::<Result<Vec<u64>, Inconsistency>>()?;

    let mut total = ancestors
        .iter()
        .chain(&processes)
        .chain(&containers)
        .fold(0u64, |t, c| t.saturating_add(*c));
    let refs = b.process_refs.iter().zip(&b.container_refs);
    for (e, (&process, &container)) in b.details.iter().zip(refs) {
        let mut c = EVENT + entry(&processes, process, "process_refs", "process")?;
        if let Some(i) = container.checked_sub(1) {
            c += entry(&containers, i, "container_refs", "container")?;
        }
        c += kinds::cost(
            e,
            &CostTables {
                strings: &s,
                ancestors: &ancestors,
            },
        )?;
        total = total.saturating_add(c);
    }
    Ok(total)
}

pub(crate) fn uuid(bytes: &[u8], field: &'static str) -> Result<Uuid, Inconsistency> {
    if bytes.is_empty() {
        return Ok(Uuid::nil());
    }
    <[u8; 16]>::try_from(bytes)
        .map(Uuid::from_bytes)
        .map_err(|_| Inconsistency::InvalidLength {
            field,
            len: bytes.len(),
            expected: "16 (or 0 for the nil UUID)",
        })
}

pub(crate) fn time(base: i64, delta: i64) -> Timestamp {
    Timestamp::from_unix_nanos(base.wrapping_add(delta))
}

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn kind(value: u32) -> Result<Kind, Inconsistency> {
    Kind::from_u32(value).ok_or(Inconsistency::InvalidKind(value))
}

fn metadata_state(value: i32) -> Result<MetadataState, Inconsistency> {
    match pb::MetadataState::try_from(value) {
        Ok(pb::MetadataState::Complete) => Ok(MetadataState::Complete),
        Ok(pb::MetadataState::Pending) => Ok(MetadataState::Pending),
        Ok(pb::MetadataState::Unavailable) => Ok(MetadataState::Unavailable),
        Ok(pb::MetadataState::NotFound) => Ok(MetadataState::NotFound),
        Ok(pb::MetadataState::Unspecified) | Err(_) => Err(Inconsistency::InvalidEnum {
            field: "Container.metadata",
            value,
        }),
    }
}

fn ancestor(a: &pb::Ancestor, s: &Strings<'_>, base: i64) -> Result<Ancestor, Inconsistency> {
    Ok(Ancestor {
        uuid: uuid(&a.uuid, "Ancestor.uuid")?,
        parent_uuid: uuid(&a.parent_uuid, "Ancestor.parent_uuid")?,
        pid: a.pid,
        exe: s.owned(a.exe, "Ancestor.exe")?,
        comm: s.owned(a.comm, "Ancestor.comm")?,
        uid: a.uid,
        euid: a.euid,
        start_time: time(base, a.start_time_delta_ns),
    })
}

fn process(
    p: &pb::Process,
    s: &Strings<'_>,
    ancestors: &[Ancestor],
    base: i64,
) -> Result<Process, Inconsistency> {
    let sha256 = match &p.sha256 {
        None => None,
        Some(pb::process::Sha256::Sha256Digest(d)) if d.len() == 32 => Some(hex(d)),
        Some(pb::process::Sha256::Sha256Digest(d)) => {
            return Err(Inconsistency::InvalidLength {
                field: "Process.sha256_digest",
                len: d.len(),
                expected: "32",
            });
        }
        Some(pb::process::Sha256::Sha256Text(i)) => Some(s.owned(*i, "Process.sha256_text")?),
    };
    Ok(Process {
        pid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        euid: p.euid,
        gid: p.gid,
        comm: s.owned(p.comm, "Process.comm")?,
        exe: s.owned(p.exe, "Process.exe")?,
        argv: p
            .argv
            .iter()
            .map(|&a| s.owned(a, "Process.argv"))
            .collect::<Result<_, _>>()?,
        argv_truncated: p.argv_truncated,
        cwd: s.owned(p.cwd, "Process.cwd")?,
        uuid: uuid(&p.uuid, "Process.uuid")?,
        parent_uuid: uuid(&p.parent_uuid, "Process.parent_uuid")?,
        start_time: time(base, p.start_time_delta_ns),
        sha256,
        cgroup_id: p.cgroup_id,
        mnt_ns: p.mnt_ns,
        ld_preload: s.opt(p.ld_preload, "Process.ld_preload")?,
        ld_library_path: s.opt(p.ld_library_path, "Process.ld_library_path")?,
        lineage: p
            .lineage
            .iter()
            .map(|&a| entry(ancestors, a, "Process.lineage", "ancestor").cloned())
            .collect::<Result<_, _>>()?,
    })
}

fn container(c: &pb::Container, s: &Strings<'_>) -> Result<Container, Inconsistency> {
    Ok(Container {
        id: s.owned(c.id, "Container.id")?,
        runtime: s.owned(c.runtime, "Container.runtime")?,
        name: s.opt(c.name, "Container.name")?,
        image: s.opt(c.image, "Container.image")?,
        pod_name: s.opt(c.pod_name, "Container.pod_name")?,
        pod_namespace: s.opt(c.pod_namespace, "Container.pod_namespace")?,
        pod_uid: s.opt(c.pod_uid, "Container.pod_uid")?,
        namespace: s.opt(c.namespace, "Container.namespace")?,
        metadata: metadata_state(c.metadata)?,
    })
}

/// Rebuilds the events of a batch whose size has been checked.
fn rebuild(b: &pb::EventBatch) -> Result<Vec<Event>, Inconsistency> {
    let s = Strings(&b.strings);
    let base = b.base_time_unix_ns;
    let ancestors = b
        .ancestors
        .iter()
        .map(|a| ancestor(a, &s, base))
        .collect::<Result<Vec<_>, _>>()?;
    let processes = b
        .processes
        .iter()
        .map(|p| process(p, &s, &ancestors, base).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let containers = b
        .containers
        .iter()
        .map(|c| container(c, &s).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut events = Vec::with_capacity(b.details.len());
    let mut prev = base;
    for (i, e) in b.details.iter().enumerate() {
        // The columns' lengths were checked against the header; `get` keeps this panic-free.
        let column = |name: &'static str, len: usize| Inconsistency::CountMismatch {
            what: name,
            header: b.details.len() as u64,
            actual: len,
        };
        let kind_number = *b
            .kinds
            .get(i)
            .ok_or_else(|| column("kinds", b.kinds.len()))?;
        let delta = *b
            .time_deltas_ns
            .get(i)
            .ok_or_else(|| column("time deltas", b.time_deltas_ns.len()))?;
        let process_ref = *b
            .process_refs
            .get(i)
            .ok_or_else(|| column("process refs", b.process_refs.len()))?;
        let tid_delta = *b
            .tid_deltas
            .get(i)
            .ok_or_else(|| column("thread id deltas", b.tid_deltas.len()))?;
        let container_ref = *b
            .container_refs
            .get(i)
            .ok_or_else(|| column("container refs", b.container_refs.len()))?;
        let t = prev.wrapping_add(delta);
        prev = t;
        // Every event of a process shares its one decoded snapshot.
        let p = entry(&processes, process_ref, "process_refs", "process")?.clone();
        // Two's-complement wrapping on 32 bits: the cast reinterprets, it does not truncate.
        let tid = p.pid.wrapping_add(tid_delta as u32);
        let container = match container_ref.checked_sub(1) {
            None => None,
            Some(c) => Some(entry(&containers, c, "container_refs", "container")?.clone()),
        };
        let kind = kind(kind_number)?;
        let detail = kinds::decode(
            e,
            &Tables {
                strings: &s,
                ancestors: &ancestors,
                base,
            },
        )?;
        if !detail.fits(kind) {
            return Err(Inconsistency::DetailMismatch {
                kind: kind.name(),
                detail: detail.key(),
            });
        }
        events.push(Event {
            kind,
            time: Timestamp::from_unix_nanos(t),
            tid,
            process: p,
            container,
            detail,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x5f]), "00ab5f");
    }
}

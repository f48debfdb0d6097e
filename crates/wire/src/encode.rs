//! Events → SQS bodies: normalise into tables, protobuf-encode, compress, base64, split so
//! that every body fits.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::mem::size_of;

use peregrine_event::{Ancestor, ClusterArn, Container, Event, MetadataState, Process, Timestamp};
use prost::Message as _;
use uuid::Uuid;

use crate::error::WireError;
use crate::{
    AgentIdentity, DEFAULT_MAX_BODY_BYTES, DEFAULT_ZSTD_LEVEL, Heartbeat, Limits, SCHEMA_VERSION,
    decode, frame, kinds, pb,
};

/// The smallest `max_body_bytes` the encoder accepts.
const MIN_BODY_BYTES: usize = 4096;

/// Encoder settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Every body is at most this many bytes. Default [`DEFAULT_MAX_BODY_BYTES`]; at least
    /// 4096 and at most `limits.max_body_bytes`.
    pub max_body_bytes: usize,
    /// zstd level (default [`DEFAULT_ZSTD_LEVEL`]); any level zstd supports.
    pub zstd_level: i32,
    /// The decoder's limits. The encoder splits batches so that no message exceeds them.
    pub limits: Limits,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            limits: Limits::default(),
        }
    }
}

impl EncoderConfig {
    fn validate(&self) -> Result<(), WireError> {
        if !(MIN_BODY_BYTES..=self.limits.max_body_bytes).contains(&self.max_body_bytes) {
            return Err(WireError::InvalidConfig(format!(
                "max_body_bytes is {}; it must be between {MIN_BODY_BYTES} and limits.max_body_bytes ({})",
                self.max_body_bytes, self.limits.max_body_bytes
            )));
        }
        let levels = zstd::compression_level_range();
        if !levels.contains(&self.zstd_level) {
            return Err(WireError::InvalidConfig(format!(
                "zstd_level is {}; zstd supports {}..={}",
                self.zstd_level,
                levels.start(),
                levels.end()
            )));
        }
        if self.limits.max_events == 0 {
            return Err(WireError::InvalidConfig("limits.max_events is 0".into()));
        }
        Ok(())
    }
}

/// One SQS message ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedMessage {
    /// The header's sequence number.
    pub sequence: u64,
    /// The SQS message body: base64(zstd(Envelope)), at most `max_body_bytes` long.
    pub body: String,
    /// How many events it carries.
    pub event_count: usize,
    /// Size of the protobuf before compression (for metrics).
    pub raw_bytes: usize,
}

/// Accumulates events and turns them into SQS message bodies, each at most
/// [`EncoderConfig::max_body_bytes`] long and numbered with consecutive sequence numbers.
pub struct BatchEncoder {
    identity: AgentIdentity,
    config: EncoderConfig,
    next_sequence: u64,
    pending: Vec<Event>,
    compressor: zstd::bulk::Compressor<'static>,
}

impl fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("identity", &self.identity)
            .field("config", &self.config)
            .field("next_sequence", &self.next_sequence)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// Why a run of events does not fit in one message, and roughly how many would.
struct TooBig {
    fitting: usize,
    reason: String,
}

impl BatchEncoder {
    /// A new encoder whose first message will carry sequence number 0.
    pub fn new(identity: AgentIdentity, config: EncoderConfig) -> Result<Self, WireError> {
        config.validate()?;
        check_arn(identity.cluster_arn.as_ref(), &identity.cluster_name)?;
        let compressor =
            zstd::bulk::Compressor::new(config.zstd_level).map_err(WireError::Compress)?;
        Ok(BatchEncoder {
            identity,
            config,
            next_sequence: 0,
            pending: Vec::new(),
            compressor,
        })
    }

    /// Continues an earlier numbering (for example the last sequence number the spool holds,
    /// plus one, after a restart).
    pub fn with_next_sequence(mut self, next: u64) -> Self {
        self.next_sequence = next;
        self
    }

    /// The sequence number the next message will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The configuration in use.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// How far under `max_body_bytes` a lone event must stay for [`push`](Self::push) to
    /// accept it: 256 bytes plus 1/256 of the limit.
    pub fn push_headroom(&self) -> usize {
        256 + self.config.max_body_bytes / 256
    }

    /// Number of events waiting for [`flush`](Self::flush).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues an event. An event that could not fit in a message even on its own is refused
    /// with [`WireError::EventTooLarge`] (count it as lost); it is never queued, so it can
    /// never block the batches behind it. Events within [`Self::push_headroom`] bytes of the
    /// body limit on their own are refused too.
    pub fn push(&mut self, event: Event) -> Result<(), WireError> {
        if !self.fits_easily(&event) {
            // The longest header (sequence and timestamp varints at their widest) makes the
            // largest protobuf, but zstd output is not monotonic in its input: a few header
            // bytes can move the compressed size by a few bytes either way. The headroom keeps
            // an accepted event encodable whatever header it ends up with.
            let one = std::slice::from_ref(&event);
            let limit = self
                .config
                .max_body_bytes
                .saturating_sub(self.push_headroom());
            let longest = Timestamp::from_unix_nanos(i64::MIN);
            if let Err(big) = self.attempt(one, u64::MAX, longest, limit)? {
                return Err(too_large(&event, 0, big.reason));
            }
        }
        self.pending.push(event);
        Ok(())
    }

    /// Encodes every queued event into as many messages as needed and clears the queue.
    /// On error nothing is consumed (no sequence number, no event), except that an event
    /// reported by [`WireError::EventTooLarge`] is removed so that a retry makes progress.
    pub fn flush(&mut self, created_at: Timestamp) -> Result<Vec<EncodedMessage>, WireError> {
        let pending = std::mem::take(&mut self.pending);
        let result = self.encode_inner(&pending, created_at);
        match result {
            Ok(messages) => Ok(messages),
            Err((index, error)) => {
                self.pending = pending;
                if let Some(i) = index
                    && i < self.pending.len()
                {
                    self.pending.remove(i);
                }
                Err(error)
            }
        }
    }

    /// Encodes `events` (in order) into as many messages as needed, without touching the
    /// queue. All or nothing: on error no sequence number is consumed.
    /// [`WireError::EventTooLarge`] carries the offending event's index in `events`.
    pub fn encode(
        &mut self,
        events: &[Event],
        created_at: Timestamp,
    ) -> Result<Vec<EncodedMessage>, WireError> {
        self.encode_inner(events, created_at).map_err(|(_, e)| e)
    }

    fn encode_inner(
        &mut self,
        events: &[Event],
        created_at: Timestamp,
    ) -> Result<Vec<EncodedMessage>, (Option<usize>, WireError)> {
        let mut out = Vec::new();
        let mut sequence = self.next_sequence;
        let mut rest = events;
        let mut done = 0usize;
        let mut guess = events.len().min(self.config.limits.max_events).max(1);
        while !rest.is_empty() {
            let mut take = guess.min(rest.len());
            loop {
                let (chunk, after) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                match self
                    .attempt(chunk, sequence, created_at, self.config.max_body_bytes)
                    .map_err(|e| (None, e))?
                {
                    Ok(message) => {
                        out.push(message);
                        sequence = sequence.wrapping_add(1);
                        done += chunk.len();
                        rest = after;
                        guess = take;
                        break;
                    }
                    Err(big) if take <= 1 => {
                        let err = match chunk.first() {
                            Some(e) => too_large(e, done, big.reason),
                            None => WireError::InvalidConfig(big.reason),
                        };
                        return Err((Some(done), err));
                    }
                    Err(big) => take = big.fitting.min(take - 1).max(1),
                }
            }
        }
        self.next_sequence = sequence;
        Ok(out)
    }

    /// Encodes `events` as one message if it satisfies every limit and its body is at most
    /// `max_body` bytes.
    fn attempt(
        &mut self,
        events: &[Event],
        sequence: u64,
        created_at: Timestamp,
        max_body: usize,
    ) -> Result<Result<EncodedMessage, TooBig>, WireError> {
        let limits = &self.config.limits;
        let mut over = Over::new(events.len());
        over.check("events", events.len(), limits.max_events);
        let batch = Builder::build(events)?;
        over.check("strings", batch.strings.len(), limits.max_strings);
        over.check("processes", batch.processes.len(), limits.max_table_entries);
        over.check(
            "containers",
            batch.containers.len(),
            limits.max_table_entries,
        );
        over.check("ancestors", batch.ancestors.len(), limits.max_table_entries);
        let cost = decode::estimate(&batch)?;
        over.check(
            "estimated decoded bytes",
            usize::try_from(cost).unwrap_or(usize::MAX),
            usize::try_from(limits.max_decoded_bytes).unwrap_or(usize::MAX),
        );
        if let Some(big) = over.result() {
            return Ok(Err(big));
        }
        let counts = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let envelope = pb::Envelope {
            header: Some(pb::Header {
                schema_version: SCHEMA_VERSION,
                agent_id: self.identity.agent_id.clone(),
                node_name: self.identity.node_name.clone(),
                cluster_name: self.identity.cluster_name.clone(),
                cluster_arn: arn_string(self.identity.cluster_arn.as_ref()),
                agent_version: self.identity.agent_version.clone(),
                sequence,
                created_at_unix_ns: created_at.unix_nanos(),
                event_count: counts(batch.details.len()),
                process_count: counts(batch.processes.len()),
                container_count: counts(batch.containers.len()),
            }),
            body: Some(pb::envelope::Body::Batch(batch)),
        };
        let raw = envelope.encode_to_vec();
        over.check("protobuf bytes", raw.len(), limits.max_decompressed_bytes);
        if let Some(big) = over.result() {
            return Ok(Err(big));
        }
        let body = frame::seal(&mut self.compressor, &raw)?;
        over.check("body bytes", body.len(), max_body);
        if let Some(big) = over.result() {
            return Ok(Err(big));
        }
        Ok(Ok(EncodedMessage {
            sequence,
            body,
            event_count: events.len(),
            raw_bytes: raw.len(),
        }))
    }

    /// A cheap, conservative test that `e` fits in a message on its own, so that `push` need
    /// not compress every event. Counts every string as if it were unique and uncompressible.
    fn fits_easily(&self, e: &Event) -> bool {
        let (mut strings, mut bytes) = (0usize, 0usize);
        for_each_string(e, |s| {
            strings += 1;
            bytes = bytes.saturating_add(s.len());
        });
        let ancestors = e.process.lineage.len() + kinds::ancestors(&e.detail);
        let id = &self.identity;
        let identity = id.agent_id.len()
            + id.node_name.len()
            + id.cluster_name.len()
            + id.cluster_arn.as_ref().map_or(0, |a| a.as_str().len())
            + id.agent_version.len();
        // 2 KiB covers every fixed-width field, tag and length prefix outside strings/ancestors.
        let raw = 2048usize
            .saturating_add(identity)
            .saturating_add(bytes)
            .saturating_add(strings.saturating_mul(16))
            .saturating_add(ancestors.saturating_mul(128));
        // zstd never expands by more than a block header per 128 KiB plus the frame header.
        let compressed = raw.saturating_add(raw / 128).saturating_add(64);
        let body = compressed.div_ceil(3).saturating_mul(4);
        // Tables plus the event's own copy: each string and ancestor is counted at most 3 times.
        let decoded = size_of::<Event>().saturating_add(1024).saturating_add(
            3usize.saturating_mul(
                bytes
                    .saturating_add(strings.saturating_mul(size_of::<String>()))
                    .saturating_add(ancestors.saturating_mul(size_of::<Ancestor>())),
            ),
        );
        let l = &self.config.limits;
        body <= self.config.max_body_bytes
            && raw <= l.max_decompressed_bytes
            && strings <= l.max_strings
            && ancestors <= l.max_table_entries
            && u64::try_from(decoded).is_ok_and(|d| d <= l.max_decoded_bytes)
    }
}

/// A cluster ARN must name the cluster the messages are sent for; the decoder refuses a message
/// where it does not.
fn check_arn(arn: Option<&ClusterArn>, cluster_name: &str) -> Result<(), WireError> {
    match arn {
        Some(a) if a.cluster_name() != cluster_name => Err(WireError::InvalidConfig(format!(
            "cluster ARN {a} does not name cluster {cluster_name:?}"
        ))),
        _ => Ok(()),
    }
}

fn arn_string(arn: Option<&ClusterArn>) -> String {
    arn.map(|a| a.as_str().to_owned()).unwrap_or_default()
}

fn too_large(e: &Event, index: usize, reason: String) -> WireError {
    WireError::EventTooLarge {
        index,
        kind: e.kind.name(),
        pid: e.process.pid,
        reason,
    }
}

/// Collects limit violations and the largest prefix likely to satisfy all of them.
struct Over {
    take: usize,
    fitting: usize,
    reason: Option<String>,
}

impl Over {
    fn new(take: usize) -> Self {
        Over {
            take,
            fitting: take,
            reason: None,
        }
    }

    fn check(&mut self, what: &str, found: usize, limit: usize) {
        if found > limit {
            // Aim 5% under the proportional share; sizes are not exactly linear.
            let share = (self.take as u128 * limit as u128 * 19) / (found as u128 * 20);
            self.fitting = self.fitting.min(usize::try_from(share).unwrap_or(0));
            self.reason
                .get_or_insert_with(|| format!("{what}: {found} over the limit of {limit}"));
        }
    }

    fn result(&mut self) -> Option<TooBig> {
        self.reason.take().map(|reason| TooBig {
            fitting: self.fitting,
            reason,
        })
    }
}

/// Encodes a heartbeat as a message body. `next_sequence` is the sequence number the agent's
/// next batch will carry ([`BatchEncoder::next_sequence`]), so that the receiver can tell
/// whether batches went missing. The identity fields and timestamp go into the header.
pub fn encode_heartbeat(
    heartbeat: &Heartbeat,
    next_sequence: u64,
    config: &EncoderConfig,
) -> Result<String, WireError> {
    config.validate()?;
    check_arn(heartbeat.cluster_arn.as_ref(), &heartbeat.cluster_name)?;
    Limits::check(
        "probe count",
        heartbeat.probes.len(),
        config.limits.max_probes,
    )?;
    Limits::check(
        "blinding reason count",
        heartbeat.blinding.len(),
        config.limits.max_blinding_reasons,
    )?;
    Heartbeat::check_blinding(&heartbeat.blinding)?;
    let envelope = pb::Envelope {
        header: Some(pb::Header {
            schema_version: SCHEMA_VERSION,
            agent_id: heartbeat.agent_id.clone(),
            node_name: heartbeat.node_name.clone(),
            cluster_name: heartbeat.cluster_name.clone(),
            cluster_arn: arn_string(heartbeat.cluster_arn.as_ref()),
            agent_version: heartbeat.agent_version.clone(),
            sequence: next_sequence,
            created_at_unix_ns: heartbeat.timestamp.unix_nanos(),
            event_count: 0,
            process_count: 0,
            container_count: 0,
        }),
        body: Some(pb::envelope::Body::Heartbeat(heartbeat.to_pb())),
    };
    let raw = envelope.encode_to_vec();
    Limits::check(
        "protobuf bytes",
        raw.len(),
        config.limits.max_decompressed_bytes,
    )?;
    let mut compressor =
        zstd::bulk::Compressor::new(config.zstd_level).map_err(WireError::Compress)?;
    let body = frame::seal(&mut compressor, &raw)?;
    if body.len() > config.max_body_bytes {
        return Err(WireError::BodyTooLarge {
            found: body.len(),
            limit: config.max_body_bytes,
        });
    }
    Ok(body)
}

/// Calls `f` on every string an event carries, duplicates included.
fn for_each_string<'a>(e: &'a Event, mut f: impl FnMut(&'a str)) {
    let p = &e.process;
    for s in [&p.comm, &p.exe, &p.cwd].into_iter().chain(&p.argv) {
        f(s);
    }
    for s in [&p.sha256, &p.ld_preload, &p.ld_library_path]
        .into_iter()
        .flatten()
    {
        f(s);
    }
    for a in &p.lineage {
        f(&a.exe);
        f(&a.comm);
    }
    if let Some(c) = &e.container {
        f(&c.id);
        f(&c.runtime);
        let optional = [
            &c.name,
            &c.image,
            &c.pod_name,
            &c.pod_namespace,
            &c.pod_uid,
            &c.namespace,
        ];
        for s in optional.into_iter().flatten() {
            f(s);
        }
    }
    kinds::for_each_string(&e.detail, &mut f);
}

// ---- normalisation ----------------------------------------------------------------------

/// Table key for a process: every field but the thread id (each event carries its own).
struct ProcessKey<'a>(&'a Process);

impl Hash for ProcessKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let p = self.0;
        (p.uuid, p.pid, p.start_time, &p.exe, p.argv.len()).hash(h);
    }
}

impl PartialEq for ProcessKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        // Events of one process usually share one snapshot.
        if std::ptr::eq(self.0, other.0) {
            return true;
        }
        // Exhaustive on purpose: a field added to `Process` must be considered here.
        let Process {
            pid,
            ppid,
            uid,
            euid,
            gid,
            comm,
            exe,
            argv,
            argv_truncated,
            cwd,
            uuid,
            parent_uuid,
            start_time,
            sha256,
            cgroup_id,
            mnt_ns,
            ld_preload,
            ld_library_path,
            lineage,
        } = self.0;
        let o = other.0;
        *pid == o.pid
            && *ppid == o.ppid
            && *uid == o.uid
            && *euid == o.euid
            && *gid == o.gid
            && *uuid == o.uuid
            && *parent_uuid == o.parent_uuid
            && *start_time == o.start_time
            && *cgroup_id == o.cgroup_id
            && *mnt_ns == o.mnt_ns
            && *argv_truncated == o.argv_truncated
            && *comm == o.comm
            && *exe == o.exe
            && *cwd == o.cwd
            && *argv == o.argv
            && *sha256 == o.sha256
            && *ld_preload == o.ld_preload
            && *ld_library_path == o.ld_library_path
            && *lineage == o.lineage
    }
}

impl Eq for ProcessKey<'_> {}

struct AncestorKey<'a>(&'a Ancestor);

impl Hash for AncestorKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.0.uuid, self.0.pid, self.0.start_time).hash(h);
    }
}

impl PartialEq for AncestorKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for AncestorKey<'_> {}

struct ContainerKey<'a>(&'a Container);

impl Hash for ContainerKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.id.hash(h);
    }
}

impl PartialEq for ContainerKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ContainerKey<'_> {}

/// Builds the tables of one batch.
pub(crate) struct Builder<'a> {
    /// The batch's base time, Unix ns: times are sent as deltas from it.
    pub(crate) base: i64,
    strings: Vec<&'a str>,
    string_ix: HashMap<&'a str, u32>,
    ancestors: Vec<pb::Ancestor>,
    ancestor_ix: HashMap<AncestorKey<'a>, u32>,
    processes: Vec<pb::Process>,
    process_ix: HashMap<ProcessKey<'a>, u32>,
    containers: Vec<pb::Container>,
    container_ix: HashMap<ContainerKey<'a>, u32>,
}

fn next_index(len: usize, table: &'static str) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| WireError::LimitExceeded {
        what: table,
        found: len as u64,
        limit: u64::from(u32::MAX),
    })
}

pub(crate) fn uuid_bytes(u: &Uuid) -> Vec<u8> {
    if u.is_nil() {
        Vec::new()
    } else {
        u.as_bytes().to_vec()
    }
}

/// `Some(digest)` when `s` is exactly 64 lowercase hex digits (so that printing the digest as
/// lowercase hex gives `s` back).
fn sha256_digest(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 64 {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(nibble(*hi)? << 4 | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

pub(crate) fn delta(t: Timestamp, base: i64) -> i64 {
    t.unix_nanos().wrapping_sub(base)
}

impl<'a> Builder<'a> {
    fn build(events: &'a [Event]) -> Result<pb::EventBatch, WireError> {
        let base = events.first().map_or(0, |e| e.time.unix_nanos());
        let mut b = Builder {
            base,
            strings: Vec::new(),
            string_ix: HashMap::new(),
            ancestors: Vec::new(),
            ancestor_ix: HashMap::new(),
            processes: Vec::new(),
            process_ix: HashMap::new(),
            containers: Vec::new(),
            container_ix: HashMap::new(),
        };
        let n = events.len();
        let mut kinds = Vec::with_capacity(n);
        let mut time_deltas_ns = Vec::with_capacity(n);
        let mut process_refs = Vec::with_capacity(n);
        let mut tid_deltas = Vec::with_capacity(n);
        let mut container_refs = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        let mut prev = base;
        for e in events {
            let t = e.time.unix_nanos();
            kinds.push(e.kind as u32);
            time_deltas_ns.push(t.wrapping_sub(prev));
            prev = t;
            process_refs.push(b.process(&e.process)?);
            // Two's-complement reinterpretation, undone by the decoder's wrapping add.
            tid_deltas.push(e.tid.wrapping_sub(e.process.pid) as i32);
            container_refs.push(match &e.container {
                None => 0,
                Some(c) => b.container(c)?.saturating_add(1),
            });
            details.push(kinds::encode(&mut b, &e.detail)?);
        }
        Ok(pb::EventBatch {
            base_time_unix_ns: base,
            strings: b.strings.iter().map(|s| (*s).to_owned()).collect(),
            ancestors: b.ancestors,
            processes: b.processes,
            containers: b.containers,
            kinds,
            time_deltas_ns,
            process_refs,
            tid_deltas,
            container_refs,
            details,
        })
    }

    pub(crate) fn string(&mut self, s: &'a str) -> Result<u32, WireError> {
        if let Some(&i) = self.string_ix.get(s) {
            return Ok(i);
        }
        let i = next_index(self.strings.len(), "string table size")?;
        self.strings.push(s);
        self.string_ix.insert(s, i);
        Ok(i)
    }

    pub(crate) fn opt_string(&mut self, s: &'a Option<String>) -> Result<Option<u32>, WireError> {
        s.as_deref().map(|s| self.string(s)).transpose()
    }

    pub(crate) fn ancestor(&mut self, a: &'a Ancestor) -> Result<u32, WireError> {
        if let Some(&i) = self.ancestor_ix.get(&AncestorKey(a)) {
            return Ok(i);
        }
        let entry = pb::Ancestor {
            uuid: uuid_bytes(&a.uuid),
            parent_uuid: uuid_bytes(&a.parent_uuid),
            pid: a.pid,
            exe: self.string(&a.exe)?,
            comm: self.string(&a.comm)?,
            uid: a.uid,
            euid: a.euid,
            start_time_delta_ns: delta(a.start_time, self.base),
        };
        let i = next_index(self.ancestors.len(), "ancestor table size")?;
        self.ancestors.push(entry);
        self.ancestor_ix.insert(AncestorKey(a), i);
        Ok(i)
    }

    fn process(&mut self, p: &'a Process) -> Result<u32, WireError> {
        if let Some(&i) = self.process_ix.get(&ProcessKey(p)) {
            return Ok(i);
        }
        let sha256 = match p.sha256.as_deref() {
            None => None,
            Some(s) => Some(match sha256_digest(s) {
                Some(d) => pb::process::Sha256::Sha256Digest(d),
                None => pb::process::Sha256::Sha256Text(self.string(s)?),
            }),
        };
        let entry = pb::Process {
            pid: p.pid,
            ppid: p.ppid,
            uid: p.uid,
            euid: p.euid,
            gid: p.gid,
            comm: self.string(&p.comm)?,
            exe: self.string(&p.exe)?,
            argv: p
                .argv
                .iter()
                .map(|a| self.string(a))
                .collect::<Result<_, _>>()?,
            argv_truncated: p.argv_truncated,
            cwd: self.string(&p.cwd)?,
            uuid: uuid_bytes(&p.uuid),
            parent_uuid: uuid_bytes(&p.parent_uuid),
            start_time_delta_ns: delta(p.start_time, self.base),
            sha256,
            cgroup_id: p.cgroup_id,
            mnt_ns: p.mnt_ns,
            ld_preload: self.opt_string(&p.ld_preload)?,
            ld_library_path: self.opt_string(&p.ld_library_path)?,
            lineage: p
                .lineage
                .iter()
                .map(|a| self.ancestor(a))
                .collect::<Result<_, _>>()?,
        };
        let i = next_index(self.processes.len(), "process table size")?;
        self.processes.push(entry);
        self.process_ix.insert(ProcessKey(p), i);
        Ok(i)
    }

    fn container(&mut self, c: &'a Container) -> Result<u32, WireError> {
        if let Some(&i) = self.container_ix.get(&ContainerKey(c)) {
            return Ok(i);
        }
        let metadata = match c.metadata {
            MetadataState::Complete => pb::MetadataState::Complete,
            MetadataState::Pending => pb::MetadataState::Pending,
            MetadataState::Unavailable => pb::MetadataState::Unavailable,
            MetadataState::NotFound => pb::MetadataState::NotFound,
        };
        let entry = pb::Container {
            id: self.string(&c.id)?,
            runtime: self.string(&c.runtime)?,
            name: self.opt_string(&c.name)?,
            image: self.opt_string(&c.image)?,
            pod_name: self.opt_string(&c.pod_name)?,
            pod_namespace: self.opt_string(&c.pod_namespace)?,
            pod_uid: self.opt_string(&c.pod_uid)?,
            namespace: self.opt_string(&c.namespace)?,
            metadata: metadata as i32,
        };
        let i = next_index(self.containers.len(), "container table size")?;
        self.containers.push(entry);
        self.container_ix.insert(ContainerKey(c), i);
        Ok(i)
    }
}

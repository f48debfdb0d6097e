//! The disk spool: every encoded message waits here until SQS has acknowledged it.
//!
//! One file per message, named by its sequence number, written crash-safely (temporary file,
//! fsync, rename, fsync of the directory), so a message is either wholly spooled or absent after
//! a crash, and the spool survives restarts. It is bounded by message count and bytes; when
//! full, the configured policy drops the oldest or the newest message and counts it.
//!
//! The spool directory also holds the agent's identity: a persistent agent id and an epoch that
//! increments on every start. Sequence numbers are `epoch << 32 | n`, so they keep increasing
//! across restarts without an fsync per message, and (agent id, sequence) stays unique, which
//! is what the detector's redelivery dedupe keys on. The id is bound to the machine (a
//! fingerprint of its machine id and node name, [`machine_identity`]): a copied disk booted on
//! another node starts a new id rather than reusing the original's sequence space.
//!
//! File-system faults are survived, never fatal: each is counted in [`Health`]
//! (`peregrine_spool_faults_total{op,kind}`).
//! - A message that cannot be written (ENOSPC, EMFILE, EIO, an unwritable directory) is held
//!   in memory, bounded by [`Limits::max_memory_bytes`], and sent from there; the spool is
//!   *degraded* (health, heartbeat, `/healthz`) until a later write succeeds, when what waits in
//!   memory is written out first. Past the memory bound the full policy drops, and counts, as
//!   it does on disk.
//! - A failed delete or move is retried at the next start (the file comes back and is resent;
//!   the detector dedupes it). A failed read is retried; a file that cannot be read three times
//!   for an I/O error, or that is not a message, is quarantined.
//! - A corrupt or foreign entry in the directory is moved to `quarantine/` (bounded: past
//!   [`QUARANTINE_MAX_FILES`] or [`QUARANTINE_MAX_BYTES`] it is deleted instead), counted, and
//!   the events it carried are counted as lost.
//! - If the identity cannot be persisted (a full disk at start), the run uses a fresh agent id
//!   kept in memory only, so (agent id, sequence) stays unique whatever the next start finds.
//!
//! Files are created 0600 in 0700 directories: messages hold command lines.

use std::{
    collections::BTreeMap,
    fs::{self, DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::health::{FaultKind, Health, SpoolOp};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SpoolError {
    fn kind(&self) -> FaultKind {
        match self {
            SpoolError::Io { source, .. } => FaultKind::of(source),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to drop when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FullPolicy {
    /// Keep the newest events: the oldest spooled message is deleted to make room.
    #[default]
    DropOldest,
    /// Keep what is spooled: the new message is discarded.
    DropNewest,
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_messages: usize,
    pub max_bytes: u64,
    pub policy: FullPolicy,
    /// Messages that cannot be written to disk wait in memory, up to this many bytes.
    pub max_memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages: 100_000,
            max_bytes: 1 << 30,
            policy: FullPolicy::DropOldest,
            max_memory_bytes: 64 << 20,
        }
    }
}

/// The quarantine's bounds; past them an offending file is deleted instead of moved.
pub const QUARANTINE_MAX_FILES: usize = 100;
pub const QUARANTINE_MAX_BYTES: u64 = 64 << 20;

/// Reads of one message that fail with an I/O error (not ENOSPC/EMFILE) before it is
/// quarantined.
const MAX_READ_FAILURES: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spooled {
    pub sequence: u64,
    pub body: String,
    /// Events the message carries (from its file name; 0 for heartbeats).
    pub events: u64,
}

/// The outcome of a push.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Messages deleted (drop-oldest) or refused (drop-newest) to respect the limits.
    pub dropped_messages: u64,
    /// Events those messages carried.
    pub dropped_events: u64,
    /// The message is held in memory: it could not be written to disk.
    pub in_memory: bool,
}

impl Pushed {
    fn drop(&mut self, events: u64) {
        self.dropped_messages += 1;
        self.dropped_events += events;
    }
}

pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    agent_id: String,
    epoch: u32,
    next: AtomicU64,
    index: Mutex<Index>,
    dropped_messages: AtomicU64,
    dropped_events: AtomicU64,
    /// The directory is known to exist with the right mode (else the next write recreates it).
    dir_ready: AtomicBool,
    health: Health,
}

struct Entry {
    bytes: u64,
    events: u64,
    /// `Some` while the message is held in memory, not on disk.
    body: Option<String>,
    read_failures: u32,
}

#[derive(Default)]
struct Index {
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    memory_messages: usize,
    memory_bytes: u64,
}

impl Index {
    fn insert(&mut self, seq: u64, bytes: u64, events: u64, body: Option<String>) {
        if body.is_some() {
            self.memory_messages += 1;
            self.memory_bytes += bytes;
        }
        self.bytes += bytes;
        let old = self.entries.insert(
            seq,
            Entry {
                bytes,
                events,
                body,
                read_failures: 0,
            },
        );
        if let Some(old) = old {
            self.forget(&old);
        }
    }

    fn forget(&mut self, e: &Entry) {
        self.bytes = self.bytes.saturating_sub(e.bytes);
        if e.body.is_some() {
            self.memory_messages = self.memory_messages.saturating_sub(1);
            self.memory_bytes = self.memory_bytes.saturating_sub(e.bytes);
        }
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.forget(&e);
        Some(e)
    }

    /// The message moved from memory to disk.
    fn written(&mut self, seq: u64) {
        if let Some(e) = self.entries.get_mut(&seq)
            && e.body.take().is_some()
        {
            self.memory_messages = self.memory_messages.saturating_sub(1);
            self.memory_bytes = self.memory_bytes.saturating_sub(e.bytes);
        }
    }
}

const SUFFIX: &str = ".msg";
const REJECTED: &str = "rejected";
const QUARANTINE: &str = "quarantine";
const AGENT_ID: &str = "agent-id";
const EPOCH: &str = "epoch";
/// The fingerprint of the machine the agent id belongs to (see [`machine_fingerprint`]).
const MACHINE: &str = "machine";

/// What identifies this machine: `/etc/machine-id` (or `/var/lib/dbus/machine-id`) and the
/// node name (`NODE_NAME`, else the hostname). A disk copied to another node keeps the spool
/// but not this, so the copy gets its own agent id.
pub fn machine_identity() -> String {
    let machine_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| fs::read_to_string(p).ok().map(|s| s.trim().to_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_default();
    let node = std::env::var("NODE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{machine_id}\n{node}")
}

/// A hash of the machine identity, so the spool does not store the machine id itself.
fn machine_fingerprint(machine: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(machine.as_bytes()))
}

fn file_name(seq: u64, events: u64) -> String {
    format!("{seq:020}-{events}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (seq, events) = stem.split_once('-')?;
    Some((seq.parse().ok()?, events.parse().ok()?))
}

/// Creates `dir` (and its parents) 0700, and sets the mode of one that already exists.
fn private_dir(dir: &Path) -> Result<(), SpoolError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `content` to `path` (mode 0600) crash-safely. On failure nothing is left behind.
fn write_atomic(dir: &Path, path: &Path, content: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(content)?;
            f.sync_all()
        })
        .map_err(io(&tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io(path)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

/// The run's identity: (agent id, epoch), persisted if the disk allows. A stored id bound to
/// another machine (a cloned disk) is replaced; one with no binding (an older agent) is
/// adopted and bound to this machine.
fn identity(dir: &Path, health: &Health, machine: &str) -> (String, u32) {
    let id_path = dir.join(AGENT_ID);
    let epoch_path = dir.join(EPOCH);
    let machine_path = dir.join(MACHINE);
    let fingerprint = machine_fingerprint(machine);
    let bound = fs::read_to_string(&machine_path)
        .ok()
        .map(|s| s.trim().to_string());
    let stored_id = fs::read_to_string(&id_path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .filter(|id| match &bound {
            Some(b) if *b != fingerprint => {
                tracing::warn!(stored_agent_id = %id, "the spool's agent id belongs to another machine (a copied disk?); starting a new agent id and sequence space");
                false
            }
            _ => true,
        });
    let bind = || write_atomic(dir, &machine_path, fingerprint.as_bytes());
    let stored_epoch = match fs::read_to_string(&epoch_path) {
        Ok(s) => s.trim().parse::<u32>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(e) => {
            health.spool_fault(SpoolOp::Open, FaultKind::of(&e));
            None
        }
    };
    let persisted = match (stored_id, stored_epoch) {
        (Some(id), Some(epoch)) => {
            let epoch = epoch.wrapping_add(1);
            write_atomic(dir, &epoch_path, epoch.to_string().as_bytes())
                .and_then(|()| bind())
                .map(|()| (id, epoch))
        }
        // No id, or an epoch we cannot trust (corrupt, unreadable): a new identity, so no
        // sequence number can repeat one sent before.
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            write_atomic(dir, &id_path, id.as_bytes())
                .and_then(|()| write_atomic(dir, &epoch_path, b"1"))
                .and_then(|()| bind())
                .map(|()| (id, 1))
        }
    };
    persisted.unwrap_or_else(|e| {
        health.spool_fault(SpoolOp::Open, e.kind());
        // Whatever the files now say, the next start cannot reuse this id: it is never written.
        let id = uuid::Uuid::new_v4().to_string();
        tracing::error!(error = %e, agent_id = %id, "cannot persist the agent identity in the spool directory; using an agent id for this run only");
        (id, 1)
    })
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, loading what a previous run left, and starts a
    /// new epoch. Never fails: a directory that cannot be created or written leaves the spool
    /// degraded (messages wait in memory) until a write succeeds.
    pub fn open(dir: &Path, limits: Limits, health: Health) -> Spool {
        Spool::open_on(dir, limits, health, &machine_identity())
    }

    /// [`Spool::open`] on the machine `machine` (see [`machine_identity`]).
    pub fn open_on(dir: &Path, limits: Limits, health: Health, machine: &str) -> Spool {
        let ready = match private_dir(dir) {
            Ok(()) => true,
            Err(e) => {
                health.spool_fault(SpoolOp::Open, e.kind());
                tracing::error!(error = %e, "the spool directory is unusable; holding messages in memory until it is");
                false
            }
        };
        let (agent_id, epoch) = identity(dir, &health, machine);
        let spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            agent_id,
            epoch,
            next: AtomicU64::new(1),
            index: Mutex::new(Index::default()),
            dropped_messages: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
            dir_ready: AtomicBool::new(ready),
            health,
        };
        spool.scan();
        spool.set_degraded(!ready);
        spool
    }

    /// Indexes the messages a previous run left; quarantines what is not one.
    fn scan(&self) {
        let entries = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) => {
                self.health.spool_fault(SpoolOp::Open, FaultKind::of(&e));
                tracing::error!(error = %e, dir = %self.dir.display(), "cannot list the spool directory");
                return;
            }
        };
        let mut idx = Index::default();
        for ent in entries {
            let ent = match ent {
                Ok(ent) => ent,
                Err(e) => {
                    self.health.spool_fault(SpoolOp::Open, FaultKind::of(&e));
                    continue;
                }
            };
            let path = ent.path();
            let name = ent.file_name().to_string_lossy().into_owned();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.health.spool_fault(SpoolOp::Open, FaultKind::of(&e));
                    continue;
                }
            };
            if meta.is_dir() && (name == REJECTED || name == QUARANTINE) {
                let _ = private_dir(&path);
                continue;
            }
            // The agent's start history lives here too when the state directory is the spool's
            // (`run`'s default).
            if meta.is_file()
                && (name == AGENT_ID
                    || name == EPOCH
                    || name == MACHINE
                    || name == crate::starts::FILE)
            {
                continue;
            }
            if meta.is_file() && name.ends_with(".tmp") {
                // A write interrupted by a crash: it was never acknowledged as spooled.
                let _ = fs::remove_file(&path);
                continue;
            }
            match parse_name(&name) {
                Some((seq, events)) if meta.is_file() && meta.len() > 0 => {
                    if meta.permissions().mode() & 0o777 != 0o600 {
                        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
                    }
                    idx.insert(seq, meta.len(), events, None);
                }
                // An empty message file: a torn write on a file system that lost the data.
                Some((_, events)) => {
                    self.quarantine(&path, &name, "an empty or non-regular message file");
                    self.lost(events);
                }
                None => self.quarantine(&path, &name, "not a spool file"),
            }
        }
        *self.index() = idx;
    }

    /// Moves `path` into `quarantine/` (or deletes it, the quarantine being full), counted.
    fn quarantine(&self, path: &Path, name: &str, why: &str) {
        self.health.spool_quarantined();
        let q = self.dir.join(QUARANTINE);
        let (count, bytes) = fs::read_dir(&q)
            .map(|r| {
                r.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .fold((0usize, 0u64), |(n, b), m| (n + 1, b + m.len()))
            })
            .unwrap_or((0, 0));
        let len = fs::symlink_metadata(path).map_or(0, |m| m.len());
        let moved = count < QUARANTINE_MAX_FILES
            && bytes + len <= QUARANTINE_MAX_BYTES
            && private_dir(&q).is_ok()
            && {
                // A unique name: the same offender may come back.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                fs::rename(path, q.join(format!("{name}.{nanos}"))).is_ok()
            };
        if moved {
            tracing::warn!(file = %path.display(), reason = why, "moved to the spool's quarantine/");
            return;
        }
        let removed = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => {
                tracing::warn!(file = %path.display(), reason = why, "deleted from the spool (quarantine full)")
            }
            Err(e) => {
                self.health.spool_fault(SpoolOp::Move, FaultKind::of(&e));
                tracing::error!(file = %path.display(), reason = why, error = %e, "cannot quarantine a spool file");
            }
        }
    }

    /// Events that will never be sent (their file was quarantined or vanished).
    fn lost(&self, events: u64) {
        self.count_drop(1, events);
        self.health.downstream_dropped(1, events);
    }

    fn fault(&self, op: SpoolOp, e: &SpoolError) {
        self.health.spool_fault(op, e.kind());
    }

    fn set_degraded(&self, degraded: bool) {
        if self.health.spool_degraded() != degraded {
            if degraded {
                tracing::error!("the spool cannot write to disk; holding messages in memory");
            } else {
                tracing::info!("the spool writes to disk again");
            }
        }
        self.health.set_spool_degraded(degraded);
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The next sequence number: increasing within and across runs.
    pub fn next_sequence(&self) -> u64 {
        (u64::from(self.epoch) << 32) | (self.next.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    }

    /// (messages, bytes) waiting, on disk and in memory.
    pub fn depth(&self) -> (usize, u64) {
        let idx = self.index();
        (idx.entries.len(), idx.bytes)
    }

    /// (messages, bytes) waiting in memory because they could not be written to disk.
    pub fn memory_depth(&self) -> (usize, u64) {
        let idx = self.index();
        (idx.memory_messages, idx.memory_bytes)
    }

    /// The spool cannot write to disk at the moment.
    pub fn degraded(&self) -> bool {
        self.health.spool_degraded()
    }

    /// (messages, events) dropped since start: by the full policy, or lost to a corrupt file.
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_messages.load(Ordering::Relaxed),
            self.dropped_events.load(Ordering::Relaxed),
        )
    }

    fn path(&self, seq: u64, events: u64) -> PathBuf {
        self.dir.join(file_name(seq, events))
    }

    /// Writes one message file, recreating the directory if it was unusable.
    fn write(&self, seq: u64, body: &str, events: u64) -> Result<(), SpoolError> {
        let r = if self.dir_ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            private_dir(&self.dir)
        }
        .and_then(|()| write_atomic(&self.dir, &self.path(seq, events), body.as_bytes()));
        match &r {
            Ok(()) => self.dir_ready.store(true, Ordering::Relaxed),
            Err(e) => self.fault(SpoolOp::Write, e),
        }
        r
    }

    /// Writes what waits in memory to disk, oldest first, until a write fails. True if
    /// nothing is left in memory.
    fn write_out_memory(&self) -> bool {
        loop {
            let next = {
                let idx = self.index();
                idx.entries
                    .iter()
                    .find_map(|(s, e)| e.body.clone().map(|b| (*s, e.events, b)))
            };
            let Some((seq, events, body)) = next else {
                return true;
            };
            if self.write(seq, &body, events).is_err() {
                return false;
            }
            let mut idx = self.index();
            if idx.entries.contains_key(&seq) {
                idx.written(seq);
            } else {
                // Sent (or dropped) while it was being written.
                drop(idx);
                let _ = fs::remove_file(self.path(seq, events));
            }
        }
    }

    /// Adds a message: durably on disk if it can, else in memory (bounded). Blocking (fsync):
    /// call from a blocking context. Never fails: whatever it drops is in the result.
    pub fn push(&self, seq: u64, body: &str, events: u64) -> Pushed {
        let len = body.len() as u64;
        let mut out = Pushed::default();
        // Make room first, per policy.
        loop {
            let victim = {
                let idx = self.index();
                let full = idx.entries.len() + 1 > self.limits.max_messages
                    || idx.bytes + len > self.limits.max_bytes;
                if !full || idx.entries.is_empty() {
                    None
                } else if self.limits.policy == FullPolicy::DropNewest {
                    drop(idx);
                    self.count_drop(1, events);
                    out.drop(events);
                    return out;
                } else {
                    idx.entries.first_key_value().map(|(s, e)| (*s, e.events))
                }
            };
            let Some((old, old_events)) = victim else {
                break;
            };
            // A failed delete is counted by remove; the message is out of the index either way.
            let _ = self.remove(old);
            self.count_drop(1, old_events);
            out.drop(old_events);
        }
        // What waits in memory goes first, to keep the disk in order.
        if self.write_out_memory() && self.write(seq, body, events).is_ok() {
            self.index().insert(seq, len, events, None);
            self.set_degraded(false);
            return out;
        }
        // Held in memory, bounded: past the bound the full policy applies.
        out.in_memory = true;
        self.set_degraded(true);
        loop {
            let victim = {
                let idx = self.index();
                if idx.memory_bytes + len <= self.limits.max_memory_bytes {
                    break;
                }
                if self.limits.policy == FullPolicy::DropNewest || idx.memory_messages == 0 {
                    None
                } else {
                    idx.entries
                        .iter()
                        .find(|(_, e)| e.body.is_some())
                        .map(|(s, e)| (*s, e.events))
                }
            };
            let Some((old, old_events)) = victim else {
                self.count_drop(1, events);
                out.drop(events);
                return out;
            };
            self.index().remove(old);
            self.count_drop(1, old_events);
            out.drop(old_events);
        }
        self.index()
            .insert(seq, len, events, Some(body.to_string()));
        out
    }

    fn count_drop(&self, messages: u64, events: u64) {
        self.dropped_messages.fetch_add(messages, Ordering::Relaxed);
        self.dropped_events.fetch_add(events, Ordering::Relaxed);
    }

    /// The oldest messages, up to `max` of them and `max_bytes` in all (at least one if any
    /// can be read). A message that cannot be read for want of space or descriptors ends the
    /// batch and is retried; a corrupt one is quarantined and counted as lost.
    pub fn oldest(&self, max: usize, max_bytes: u64) -> Result<Vec<Spooled>, SpoolError> {
        let picked: Vec<(u64, u64, u64, Option<String>)> = {
            let idx = self.index();
            let mut total = 0;
            let mut v = Vec::new();
            for (seq, e) in idx.entries.iter().take(max) {
                if !v.is_empty() && total + e.bytes > max_bytes {
                    break;
                }
                total += e.bytes;
                v.push((*seq, e.bytes, e.events, e.body.clone()));
            }
            v
        };
        let mut out = Vec::with_capacity(picked.len());
        for (sequence, _, events, body) in picked {
            let body = match body {
                Some(b) => b,
                None => {
                    let path = self.path(sequence, events);
                    match fs::read_to_string(&path) {
                        Ok(b) => b,
                        Err(e) => match self.unreadable(sequence, events, &path, e) {
                            Some(err) if out.is_empty() => return Err(err),
                            Some(_) => break,
                            None => continue,
                        },
                    }
                }
            };
            out.push(Spooled {
                sequence,
                body,
                events,
            });
        }
        Ok(out)
    }

    /// A spooled message could not be read: Some(error) to retry it later, None if it is gone
    /// for good (vanished, or quarantined) and counted as lost.
    fn unreadable(
        &self,
        seq: u64,
        events: u64,
        path: &Path,
        e: std::io::Error,
    ) -> Option<SpoolError> {
        use std::io::ErrorKind;
        let kind = e.kind();
        if kind == ErrorKind::NotFound {
            // Deleted behind our back.
            self.health.spool_fault(SpoolOp::Read, FaultKind::Io);
            tracing::error!(file = %path.display(), "a spooled message vanished");
            self.index().remove(seq);
            self.lost(events);
            return None;
        }
        if kind == ErrorKind::InvalidData {
            // Not UTF-8: not a message this agent wrote.
            self.index().remove(seq);
            self.quarantine(path, &file_name(seq, events), "a corrupt message");
            self.lost(events);
            return None;
        }
        let fault = FaultKind::of(&e);
        self.health.spool_fault(SpoolOp::Read, fault);
        let failures = {
            let mut idx = self.index();
            idx.entries.get_mut(&seq).map_or(0, |en| {
                en.read_failures += 1;
                en.read_failures
            })
        };
        // Out of space or descriptors says nothing about the file: retry it for ever.
        if fault == FaultKind::Io && failures >= MAX_READ_FAILURES {
            self.index().remove(seq);
            self.quarantine(path, &file_name(seq, events), "unreadable");
            self.lost(events);
            return None;
        }
        Some(SpoolError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Moves a message SQS will never accept into `rejected/`, out of the send path but kept
    /// on disk for inspection.
    pub fn reject(&self, seq: u64) -> Result<(), SpoolError> {
        let Some(entry) = self.index().remove(seq) else {
            return Ok(());
        };
        let dir = self.dir.join(REJECTED);
        let to = dir.join(file_name(seq, entry.events));
        let r = private_dir(&dir).and_then(|()| match &entry.body {
            Some(body) => write_atomic(&dir, &to, body.as_bytes()),
            None => {
                let from = self.path(seq, entry.events);
                fs::rename(&from, &to)
                    .map_err(io(&from))
                    .and_then(|()| fsync_dir(&self.dir))
            }
        });
        if let Err(e) = &r {
            self.fault(SpoolOp::Move, e);
        }
        r
    }

    /// Deletes an acknowledged (or dropped) message. Idempotent. On failure the message is
    /// out of the index anyway; its file is found, and resent, at the next start.
    pub fn remove(&self, seq: u64) -> Result<(), SpoolError> {
        let Some(entry) = self.index().remove(seq) else {
            return Ok(());
        };
        if entry.body.is_some() {
            return Ok(());
        }
        let path = self.path(seq, entry.events);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                let e = SpoolError::Io { path, source: e };
                self.fault(SpoolOp::Remove, &e);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::health::Pipeline;

    /// A tmpfs of `size` mounted for the test, unmounted when dropped. Mounting needs root:
    /// without it the test fails loudly (CI runs as root), it is never skipped.
    struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        fn mount(size: &str) -> Tmpfs {
            // SAFETY: geteuid has no preconditions.
            let euid = unsafe { libc::geteuid() };
            assert_eq!(euid, 0, "this test mounts a tmpfs: run it as root");
            let dir = tempfile::tempdir().unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount -t tmpfs failed");
            Tmpfs { dir }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }

    /// Writes `path` until the file system is full.
    fn fill(path: &Path) {
        let mut f = File::create(path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk).and_then(|()| f.sync_all()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn bodies(s: &Spool) -> Vec<String> {
        s.oldest(100, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect()
    }

    fn msg_files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            })
            .count()
    }

    #[test]
    fn enospc_during_seal_holds_messages_in_memory_then_writes_them_out() {
        let fs = Tmpfs::mount("64k");
        let health = Health::default();
        let s = Spool::open(fs.path(), Limits::default(), health.clone());
        assert!(!s.degraded());
        let body = "x".repeat(8000);
        let mut seqs = Vec::new();
        // 64 KiB hold a few 8 KB messages (two pages each), then the disk is full.
        for i in 0..12u64 {
            let seq = s.next_sequence();
            seqs.push(seq);
            let out = s.push(seq, &format!("{i}{body}"), 1);
            assert_eq!(out.dropped_messages, 0, "nothing is lost");
        }
        assert!(s.degraded(), "the disk filled up");
        assert!(health.spool_faults(SpoolOp::Write, FaultKind::NoSpace) > 0);
        let (in_memory, _) = s.memory_depth();
        assert!(in_memory > 0 && in_memory < 12, "{in_memory}");
        assert_eq!(s.depth().0, 12);
        assert!(
            fs::read_dir(fs.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
            "a failed write leaves nothing behind"
        );
        // Everything is sent in order, from disk and from memory.
        let got = bodies(&s);
        assert_eq!(got.len(), 12);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, b)| b.starts_with(&i.to_string()))
        );

        // Sending frees the disk: the next seal writes what waited in memory, then itself.
        for seq in &seqs[..6] {
            s.remove(*seq).unwrap();
        }
        s.push(s.next_sequence(), "after", 1);
        assert!(!s.degraded(), "spooling resumed");
        assert_eq!(s.memory_depth(), (0, 0));
        assert_eq!(msg_files(fs.path()), 7);
        assert_eq!(bodies(&s).last().map(String::as_str), Some("after"));
    }

    #[test]
    fn memory_is_bounded_and_what_it_drops_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let under_a_file = dir.path().join("file");
        fs::write(&under_a_file, "").unwrap();
        let limits = Limits {
            max_memory_bytes: 10,
            ..Limits::default()
        };
        let s = Spool::open(&under_a_file.join("spool"), limits, Health::default());
        assert!(s.degraded());
        assert!(s.push(1, "12345", 2).in_memory);
        assert_eq!(
            s.push(2, "12345", 3),
            Pushed {
                in_memory: true,
                ..Pushed::default()
            }
        );
        let out = s.push(3, "12345", 4);
        assert_eq!(
            (out.dropped_messages, out.dropped_events),
            (1, 2),
            "the oldest went"
        );
        assert_eq!(s.memory_depth(), (2, 10));
        assert_eq!(bodies(&s).len(), 2);
    }

    #[test]
    fn a_full_disk_at_start_degrades_then_spooling_resumes() {
        let fs = Tmpfs::mount("16k");
        fill(&fs.path().join("filler"));
        let health = Health::default();
        health.set_pipeline(Pipeline::Running);
        let dir = fs.path().join("spool");
        let s = Spool::open(&dir, Limits::default(), health.clone());
        assert!(!s.agent_id().is_empty(), "an identity for this run");
        assert!(health.spool_faults(SpoolOp::Open, FaultKind::NoSpace) > 0);
        assert!(s.push(s.next_sequence(), "one", 1).in_memory);
        assert!(s.degraded());
        let (code, body) = health.healthz();
        assert_eq!(code, 200);
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert!(body.contains("\"spool_degraded\":true"), "{body}");

        fs::remove_file(fs.path().join("filler")).unwrap();
        s.push(s.next_sequence(), "two", 1);
        assert!(!s.degraded());
        assert_eq!(msg_files(&dir), 2);
        assert!(health.healthz().1.contains("\"status\":\"ok\""));
        drop(s);
        // The identity of that run was never written: the next one cannot reuse it.
        let again = Spool::open(&dir, Limits::default(), Health::default());
        assert_eq!(bodies(&again), ["one", "two"]);
    }

    const EMFILE_CHILD: &str = "PEREGRINE_SPOOL_EMFILE_CHILD";

    /// Run in a child process whose RLIMIT_NOFILE is 64 (see below).
    fn emfile_child(dir: &Path) {
        let health = Health::default();
        let s = Spool::open(dir, Limits::default(), health.clone());
        // Use every descriptor left.
        let mut held = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(f) => held.push(f),
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(s.push(1, "held", 1).in_memory);
        assert!(health.spool_faults(SpoolOp::Write, FaultKind::NoFiles) > 0);
        assert!(s.degraded());
        drop(held);
        assert!(!s.push(2, "written", 1).in_memory);
        assert!(!s.degraded());
        assert_eq!(msg_files(dir), 2);
    }

    #[test]
    fn emfile_during_seal_is_survived() {
        if let Some(dir) = std::env::var_os(EMFILE_CHILD) {
            emfile_child(Path::new(&dir));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // Lower the limit in a child only: it is per process, and other tests run in this one.
        let status = Command::new("sh")
            .args(["-c", "ulimit -n 64 && exec \"$@\"", "sh"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spool::tests::emfile_during_seal_is_survived",
                "--test-threads=1",
            ])
            .env(EMFILE_CHILD, dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "the child failed: {status}");
    }

    #[test]
    fn corrupt_and_foreign_files_are_quarantined_and_do_not_block_shipping() {
        let dir = tempfile::tempdir().unwrap();
        let health = Health::default();
        let s = Spool::open(dir.path(), Limits::default(), health.clone());
        s.push(5, "good", 1);
        drop(s);
        let p = dir.path();
        fs::write(p.join("README"), "hello").unwrap();
        fs::write(p.join("123-x.msg"), "foreign").unwrap();
        fs::create_dir(p.join("junk")).unwrap();
        fs::write(p.join(file_name(3, 4)), "").unwrap();
        fs::write(p.join(file_name(4, 6)), [0xff, 0xfe, 0x00]).unwrap();

        let s = Spool::open(p, Limits::default(), health.clone());
        assert_eq!(health.spool_quarantined_total(), 4, "at start");
        // The corrupt body is only found reading it; it does not stop the good one.
        assert_eq!(bodies(&s), ["good"]);
        assert_eq!(health.spool_quarantined_total(), 5);
        assert_eq!(s.depth().0, 1);
        assert_eq!(
            s.dropped(),
            (2, 10),
            "the events they held are counted as lost"
        );
        assert_eq!(health.drops().downstream_events, 10);
        assert_eq!(fs::read_dir(p.join(QUARANTINE)).unwrap().count(), 5);
        assert_eq!(mode(&p.join(QUARANTINE)), 0o700);
    }

    #[test]
    fn the_quarantine_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..QUARANTINE_MAX_FILES + 5 {
            fs::write(dir.path().join(format!("foreign-{i}")), "x").unwrap();
        }
        let health = Health::default();
        let _s = Spool::open(dir.path(), Limits::default(), health.clone());
        assert_eq!(
            health.spool_quarantined_total(),
            QUARANTINE_MAX_FILES as u64 + 5
        );
        assert_eq!(
            fs::read_dir(dir.path().join(QUARANTINE)).unwrap().count(),
            QUARANTINE_MAX_FILES
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            4,
            "agent-id, epoch, machine, quarantine/, nothing else"
        );
    }

    #[test]
    fn a_corrupt_epoch_starts_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), Limits::default(), Health::default());
        let id = s.agent_id().to_string();
        drop(s);
        fs::write(dir.path().join(EPOCH), "garbage").unwrap();
        let s = Spool::open(dir.path(), Limits::default(), Health::default());
        assert_ne!(s.agent_id(), id);
        assert_eq!(s.epoch(), 1);
    }

    #[test]
    fn the_start_history_beside_the_spool_is_not_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        crate::starts::StartHistory::record(dir.path(), std::time::SystemTime::now());
        let health = Health::default();
        let _s = Spool::open(dir.path(), Limits::default(), health.clone());
        assert_eq!(health.spool_quarantined_total(), 0);
        assert!(dir.path().join(crate::starts::FILE).is_file());
    }

    #[test]
    fn files_are_0600_in_a_0700_directory_fixed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        fs::create_dir(&spool).unwrap();
        fs::set_permissions(&spool, fs::Permissions::from_mode(0o755)).unwrap();
        let s = Spool::open(&spool, Limits::default(), Health::default());
        assert_eq!(mode(&spool), 0o700, "an existing directory is fixed");
        s.push(1, "a", 1);
        s.push(2, "b", 1);
        s.reject(2).unwrap();
        assert_eq!(mode(&spool.join(file_name(1, 1))), 0o600);
        assert_eq!(mode(&spool.join(AGENT_ID)), 0o600);
        assert_eq!(mode(&spool.join(EPOCH)), 0o600);
        assert_eq!(mode(&spool.join(REJECTED)), 0o700);
        assert_eq!(mode(&spool.join(REJECTED).join(file_name(2, 1))), 0o600);
        // A file left readable by an older agent is fixed at start.
        fs::set_permissions(
            spool.join(file_name(1, 1)),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        drop(s);
        let _s = Spool::open(&spool, Limits::default(), Health::default());
        assert_eq!(mode(&spool.join(file_name(1, 1))), 0o600);
        let fresh = dir.path().join("a").join("b");
        let _t = Spool::open(&fresh, Limits::default(), Health::default());
        assert_eq!(mode(&fresh), 0o700);
    }

    fn limits(max_messages: usize, max_bytes: u64, policy: FullPolicy) -> Limits {
        Limits {
            max_messages,
            max_bytes,
            policy,
            ..Limits::default()
        }
    }

    #[test]
    fn survives_a_restart_in_order_and_sequences_keep_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), Limits::default(), Health::default());
        let id = s.agent_id().to_string();
        let seqs: Vec<u64> = (0..3).map(|_| s.next_sequence()).collect();
        for (i, seq) in seqs.iter().enumerate() {
            s.push(*seq, &format!("body-{i}"), 10);
        }
        let last = seqs[2];
        drop(s);
        // A crash mid-write leaves a .tmp file: it is discarded.
        fs::write(dir.path().join("junk.tmp"), "partial").unwrap();

        let s = Spool::open(dir.path(), Limits::default(), Health::default());
        assert_eq!(s.agent_id(), id, "the agent id persists");
        assert!(
            s.next_sequence() > last,
            "sequences increase across restarts"
        );
        assert_eq!(s.depth().0, 3);
        let got = s.oldest(10, u64::MAX).unwrap();
        assert_eq!(
            got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["body-0", "body-1", "body-2"]
        );
        assert_eq!(got[0].events, 10);
        assert!(!dir.path().join("junk.tmp").exists());
        s.remove(got[0].sequence).unwrap();
        s.remove(got[0].sequence).unwrap(); // idempotent
        s.reject(got[1].sequence).unwrap();
        assert!(
            dir.path()
                .join("rejected")
                .join(file_name(got[1].sequence, 10))
                .exists()
        );
        assert_eq!(s.depth(), (1, "body-2".len() as u64));
        drop(s);
        // Rejected messages are not resent after a restart.
        let s = Spool::open(dir.path(), Limits::default(), Health::default());
        assert_eq!(s.depth(), (1, "body-2".len() as u64));
    }

    #[test]
    fn drop_oldest_when_full_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(
            dir.path(),
            limits(2, u64::MAX, FullPolicy::DropOldest),
            Health::default(),
        );
        for i in 1..=3u64 {
            s.push(i, &format!("m{i}"), i);
        }
        let kept: Vec<u64> = s
            .oldest(10, u64::MAX)
            .unwrap()
            .iter()
            .map(|m| m.sequence)
            .collect();
        assert_eq!(kept, [2, 3]);
        assert_eq!(s.dropped(), (1, 1));
    }

    #[test]
    fn drop_newest_when_full_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(
            dir.path(),
            limits(10, 10, FullPolicy::DropNewest),
            Health::default(),
        );
        assert_eq!(s.push(1, "12345", 4), Pushed::default());
        assert_eq!(s.push(2, "67890", 4), Pushed::default());
        assert_eq!(
            s.push(3, "x", 7),
            Pushed {
                dropped_messages: 1,
                dropped_events: 7,
                in_memory: false,
            }
        );
        let kept: Vec<u64> = s
            .oldest(10, u64::MAX)
            .unwrap()
            .iter()
            .map(|m| m.sequence)
            .collect();
        assert_eq!(kept, [1, 2]);
        assert_eq!(s.dropped(), (1, 7));
    }

    #[test]
    fn oldest_respects_the_byte_budget_but_returns_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), Limits::default(), Health::default());
        s.push(1, &"a".repeat(600), 1);
        s.push(2, &"b".repeat(600), 1);
        assert_eq!(s.oldest(10, 1000).unwrap().len(), 1);
        assert_eq!(s.oldest(10, 100).unwrap().len(), 1);
        assert_eq!(s.oldest(10, 1200).unwrap().len(), 2);
    }

    #[test]
    fn the_agent_id_survives_restarts_but_not_cloning() {
        let dir = tempfile::tempdir().unwrap();
        let a = Spool::open_on(
            dir.path(),
            Limits::default(),
            Health::default(),
            "m-a\nnode-a",
        );
        let (id, epoch) = (a.agent_id().to_owned(), a.epoch());
        drop(a);
        let again = Spool::open_on(
            dir.path(),
            Limits::default(),
            Health::default(),
            "m-a\nnode-a",
        );
        assert_eq!(again.agent_id(), id, "a restart keeps the id");
        assert_eq!(again.epoch(), epoch + 1);
        drop(again);
        // A copy of the disk booted as another machine.
        let copy = tempfile::tempdir().unwrap();
        for f in [AGENT_ID, EPOCH, MACHINE] {
            fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
        }
        let clone = Spool::open_on(
            copy.path(),
            Limits::default(),
            Health::default(),
            "m-b\nnode-b",
        );
        assert_ne!(clone.agent_id(), id, "a clone gets its own id");
        assert_eq!(clone.epoch(), 1, "and a new sequence space");
        drop(clone);
        let clone_again = Spool::open_on(
            copy.path(),
            Limits::default(),
            Health::default(),
            "m-b\nnode-b",
        );
        assert_ne!(clone_again.agent_id(), id);
        assert_eq!(
            clone_again.epoch(),
            2,
            "the clone's own id then survives its restarts"
        );
    }

    #[test]
    fn an_id_without_a_machine_binding_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(AGENT_ID), "old-agent-id\n").unwrap();
        fs::write(dir.path().join(EPOCH), "7").unwrap();
        let s = Spool::open_on(
            dir.path(),
            Limits::default(),
            Health::default(),
            "m-a\nnode-a",
        );
        assert_eq!(s.agent_id(), "old-agent-id");
        assert_eq!(s.epoch(), 8);
        assert_eq!(
            fs::read_to_string(dir.path().join(MACHINE)).unwrap(),
            machine_fingerprint("m-a\nnode-a")
        );
    }
}

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
//! is what the detector's redelivery dedupe keys on.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool file {path} is not a valid message name")]
    BadName { path: PathBuf },
    #[error("the spool epoch file {path} is corrupt: {content:?}")]
    BadEpoch { path: PathBuf, content: String },
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages: 100_000,
            max_bytes: 1 << 30,
            policy: FullPolicy::DropOldest,
        }
    }
}

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
}

#[derive(Default)]
struct Index {
    /// sequence → (bytes, events)
    entries: BTreeMap<u64, (u64, u64)>,
    bytes: u64,
}

const SUFFIX: &str = ".msg";

fn file_name(seq: u64, events: u64) -> String {
    format!("{seq:020}-{events}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (seq, events) = stem.split_once('-')?;
    Some((seq.parse().ok()?, events.parse().ok()?))
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `content` to `path` crash-safely.
fn write_atomic(dir: &Path, path: &Path, content: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(content).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fsync_dir(dir)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, loading what a previous run left, and starts a
    /// new epoch.
    pub fn open(dir: &Path, limits: Limits) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let id_path = dir.join("agent-id");
        let agent_id = match fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                write_atomic(dir, &id_path, id.as_bytes())?;
                id
            }
        };
        let epoch_path = dir.join("epoch");
        let epoch = match fs::read_to_string(&epoch_path) {
            Ok(s) => s
                .trim()
                .parse::<u32>()
                .map_err(|_| SpoolError::BadEpoch {
                    path: epoch_path.clone(),
                    content: s.clone(),
                })?
                .wrapping_add(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => {
                return Err(SpoolError::Io {
                    path: epoch_path,
                    source: e,
                });
            }
        };
        write_atomic(dir, &epoch_path, epoch.to_string().as_bytes())?;

        let mut index = Index::default();
        for ent in fs::read_dir(dir).map_err(io(dir))? {
            let ent = ent.map_err(io(dir))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A write interrupted by a crash: it was never acknowledged as spooled.
                let _ = fs::remove_file(ent.path());
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            let (seq, events) =
                parse_name(&name).ok_or(SpoolError::BadName { path: ent.path() })?;
            let len = ent.metadata().map_err(io(&ent.path()))?.len();
            index.entries.insert(seq, (len, events));
            index.bytes += len;
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            limits,
            agent_id,
            epoch,
            next: AtomicU64::new(1),
            index: Mutex::new(index),
            dropped_messages: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
        })
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

    /// (messages, bytes) waiting.
    pub fn depth(&self) -> (usize, u64) {
        let idx = self.index();
        (idx.entries.len(), idx.bytes)
    }

    /// (messages, events) dropped because the spool was full, since start.
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_messages.load(Ordering::Relaxed),
            self.dropped_events.load(Ordering::Relaxed),
        )
    }

    fn path(&self, seq: u64, events: u64) -> PathBuf {
        self.dir.join(file_name(seq, events))
    }

    /// Durably adds a message. Blocking (fsync): call from a blocking context.
    pub fn push(&self, seq: u64, body: &str, events: u64) -> Result<Pushed, SpoolError> {
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
                    out.dropped_messages += 1;
                    out.dropped_events += events;
                    return Ok(out);
                } else {
                    idx.entries.first_key_value().map(|(s, (_, e))| (*s, *e))
                }
            };
            let Some((old, old_events)) = victim else {
                break;
            };
            self.remove(old)?;
            self.count_drop(1, old_events);
            out.dropped_messages += 1;
            out.dropped_events += old_events;
        }
        write_atomic(&self.dir, &self.path(seq, events), body.as_bytes())?;
        let mut idx = self.index();
        idx.entries.insert(seq, (len, events));
        idx.bytes += len;
        Ok(out)
    }

    fn count_drop(&self, messages: u64, events: u64) {
        self.dropped_messages.fetch_add(messages, Ordering::Relaxed);
        self.dropped_events.fetch_add(events, Ordering::Relaxed);
    }

    /// The oldest messages, up to `max` of them and `max_bytes` in all (at least one).
    pub fn oldest(&self, max: usize, max_bytes: u64) -> Result<Vec<Spooled>, SpoolError> {
        let picked: Vec<(u64, u64, u64)> = {
            let idx = self.index();
            let mut total = 0;
            let mut v = Vec::new();
            for (seq, (len, events)) in idx.entries.iter().take(max) {
                if !v.is_empty() && total + len > max_bytes {
                    break;
                }
                total += len;
                v.push((*seq, *len, *events));
            }
            v
        };
        picked
            .into_iter()
            .map(|(sequence, _, events)| {
                let path = self.path(sequence, events);
                let body = fs::read_to_string(&path).map_err(io(&path))?;
                Ok(Spooled {
                    sequence,
                    body,
                    events,
                })
            })
            .collect()
    }

    /// Moves a message SQS will never accept into `rejected/`, out of the send path but kept
    /// on disk for inspection.
    pub fn reject(&self, seq: u64) -> Result<(), SpoolError> {
        let removed = self.index().entries.remove(&seq);
        if let Some((len, events)) = removed {
            let dir = self.dir.join("rejected");
            fs::create_dir_all(&dir).map_err(io(&dir))?;
            let from = self.path(seq, events);
            let to = dir.join(file_name(seq, events));
            fs::rename(&from, &to).map_err(io(&from))?;
            fsync_dir(&self.dir)?;
            let mut idx = self.index();
            idx.bytes = idx.bytes.saturating_sub(len);
        }
        Ok(())
    }

    /// Deletes an acknowledged (or dropped) message. Idempotent.
    pub fn remove(&self, seq: u64) -> Result<(), SpoolError> {
        let removed = self.index().entries.remove(&seq);
        if let Some((len, events)) = removed {
            let path = self.path(seq, events);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::Io { path, source: e }),
            }
            let mut idx = self.index();
            idx.bytes = idx.bytes.saturating_sub(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: usize, max_bytes: u64, policy: FullPolicy) -> Limits {
        Limits {
            max_messages,
            max_bytes,
            policy,
        }
    }

    #[test]
    fn survives_a_restart_in_order_and_sequences_keep_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), Limits::default()).unwrap();
        let id = s.agent_id().to_string();
        let seqs: Vec<u64> = (0..3).map(|_| s.next_sequence()).collect();
        for (i, seq) in seqs.iter().enumerate() {
            s.push(*seq, &format!("body-{i}"), 10).unwrap();
        }
        let last = seqs[2];
        drop(s);
        // A crash mid-write leaves a .tmp file: it is discarded.
        fs::write(dir.path().join("junk.tmp"), "partial").unwrap();

        let s = Spool::open(dir.path(), Limits::default()).unwrap();
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
        let s = Spool::open(dir.path(), Limits::default()).unwrap();
        assert_eq!(s.depth(), (1, "body-2".len() as u64));
    }

    #[test]
    fn drop_oldest_when_full_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), limits(2, u64::MAX, FullPolicy::DropOldest)).unwrap();
        for i in 1..=3u64 {
            s.push(i, &format!("m{i}"), i).unwrap();
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
        let s = Spool::open(dir.path(), limits(10, 10, FullPolicy::DropNewest)).unwrap();
        assert_eq!(s.push(1, "12345", 4).unwrap(), Pushed::default());
        assert_eq!(s.push(2, "67890", 4).unwrap(), Pushed::default());
        assert_eq!(
            s.push(3, "x", 7).unwrap(),
            Pushed {
                dropped_messages: 1,
                dropped_events: 7
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
        let s = Spool::open(dir.path(), Limits::default()).unwrap();
        s.push(1, &"a".repeat(600), 1).unwrap();
        s.push(2, &"b".repeat(600), 1).unwrap();
        assert_eq!(s.oldest(10, 1000).unwrap().len(), 1);
        assert_eq!(s.oldest(10, 100).unwrap().len(), 1);
        assert_eq!(s.oldest(10, 1200).unwrap().len(), 2);
    }
}

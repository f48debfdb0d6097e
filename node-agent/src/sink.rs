//! Where enriched events go: the [`EventSink`] trait, and the JSON-lines sink of standalone
//! `--events`. Findings (`findings`) and shipping (`ship`) are sinks too.

use std::{io::Write, num::NonZeroUsize, sync::Arc};

use lru::LruCache;
use peregrine_event::{BlindingReason, Container, Event, Process, Timestamp};
use serde_json::value::RawValue;

/// A stage that takes enriched events. Each sink has its own error type; the run loop only
/// needs to know whether an error means the reader went away.
#[allow(async_fn_in_trait)] // used generically, never as a trait object
pub trait EventSink {
    type Error: std::error::Error + Send + Sync + 'static;

    async fn emit(&mut self, ev: Event) -> Result<(), Self::Error>;
    /// Called when the input queue is empty and on each tick: write out what is due.
    async fn flush(&mut self) -> Result<(), Self::Error>;
    /// Called once at shutdown, after the last event: write out everything.
    async fn close(&mut self) -> Result<(), Self::Error> {
        self.flush().await
    }
    /// At each status tick while the agent judges itself blind (`reasons` is never empty).
    /// Standalone detection turns it into a finding; shipping ignores it (heartbeats carry the
    /// reasons), and so does the events sink.
    async fn blinded(
        &mut self,
        _reasons: &[BlindingReason],
        _at: Timestamp,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The reader went away (a closed pipe): the agent stops quietly.
    fn is_closed(_err: &Self::Error) -> bool {
        false
    }
}

/// What can go wrong writing JSON lines (events or findings).
#[derive(Debug, thiserror::Error)]
pub enum JsonLinesError {
    #[error("writing events: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One JSON object per line. Every control character and quote is escaped
/// ([`peregrine_event::json`]: C1 controls and bidirectional overrides too), so a path or argv
/// holding newlines or terminal escapes stays one line of inert data.
///
/// Most of an event's JSON is its process (argv, lineage) and container, which events share as
/// snapshots: each snapshot is serialised once and its bytes reused while it is cached. The
/// cache holds the snapshot itself, so its address identifies it for as long as the entry lives.
pub struct JsonLines<W: Write> {
    out: std::io::BufWriter<W>,
    processes: SerializedCache<Process>,
    containers: SerializedCache<Container>,
}

/// Snapshots kept serialised. Events come in runs from a few busy processes, so a small cache
/// catches nearly all repeats; each entry holds a snapshot and its JSON (a few KiB with a deep
/// lineage), so this also bounds the cache's memory.
const SERIALIZED_CACHE_ENTRIES: usize = 1024;

struct SerializedCache<T> {
    map: LruCache<usize, (Arc<T>, Box<RawValue>)>,
}

impl<T: serde::Serialize> SerializedCache<T> {
    fn new() -> Self {
        SerializedCache {
            map: LruCache::new(
                NonZeroUsize::new(SERIALIZED_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            ),
        }
    }

    fn get(&mut self, v: &Arc<T>) -> Result<&RawValue, serde_json::Error> {
        let key = Arc::as_ptr(v) as usize;
        if !self.map.contains(&key) {
            let raw = RawValue::from_string(peregrine_event::json::to_string(&**v)?)?;
            self.map.put(key, (v.clone(), raw));
        }
        match self.map.get(&key) {
            Some((_, raw)) => Ok(raw),
            // Just inserted; unreachable, but answer rather than panic.
            None => Err(serde::ser::Error::custom(
                "serialisation cache lost an entry",
            )),
        }
    }
}

/// [`Event`] with its process and container already serialised: the same field names, order
/// and omissions (a test checks that the output is identical).
#[derive(serde::Serialize)]
struct EventOut<'a> {
    #[serde(with = "peregrine_event::kind_name")]
    kind: peregrine_event::Kind,
    time: peregrine_event::Timestamp,
    tid: u32,
    process: &'a RawValue,
    container: Option<&'a RawValue>,
    #[serde(flatten)]
    detail: &'a peregrine_event::Detail,
}

impl<W: Write> JsonLines<W> {
    pub fn new(w: W) -> Self {
        JsonLines {
            out: std::io::BufWriter::with_capacity(64 * 1024, w),
            processes: SerializedCache::new(),
            containers: SerializedCache::new(),
        }
    }
}

impl<W: Write> EventSink for JsonLines<W> {
    type Error = JsonLinesError;

    async fn emit(&mut self, ev: Event) -> Result<(), JsonLinesError> {
        let process = self.processes.get(&ev.process)?;
        let container = match &ev.container {
            Some(c) => Some(self.containers.get(c)?),
            None => None,
        };
        let out = EventOut {
            kind: ev.kind,
            time: ev.time,
            tid: ev.tid,
            process,
            container,
            detail: &ev.detail,
        };
        peregrine_event::json::to_writer(&mut self.out, &out)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), JsonLinesError> {
        self.out.flush()?;
        Ok(())
    }

    fn is_closed(err: &JsonLinesError) -> bool {
        matches!(err, JsonLinesError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Counts and discards (benchmarks).
#[derive(Default)]
pub struct CountingSink {
    pub events: u64,
}

impl EventSink for CountingSink {
    type Error = std::convert::Infallible;

    async fn emit(&mut self, _ev: Event) -> Result<(), Self::Error> {
        self.events += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_event::{Ancestor, Detail, ExecInfo, FileInfo, Kind, MetadataState, Timestamp};

    fn events() -> Vec<Event> {
        let p = Arc::new(Process {
            pid: 10,
            ppid: 1,
            exe: "/bin/sh".into(),
            argv: vec!["sh".into(), "-c".into(), "x\n\u{1b}[2J\"".into()],
            lineage: vec![Ancestor {
                pid: 1,
                exe: "/sbin/init".into(),
                ..Ancestor::default()
            }],
            sha256: Some("ab".repeat(32)),
            ..Process::default()
        });
        let c = Arc::new(Container {
            id: "c".repeat(64),
            runtime: "containerd".into(),
            pod_name: Some("web-1".into()),
            metadata: MetadataState::Complete,
            ..Container::default()
        });
        let base = Event {
            kind: Kind::Open,
            time: Timestamp::from_unix_nanos(1_700_000_000_000_000_001),
            tid: 11,
            process: p.clone(),
            container: Some(c),
            detail: Detail::File(FileInfo {
                path: "/etc/\"shadow".into(),
                flags: 0o1,
                ..FileInfo::default()
            }),
        };
        let exec = Event {
            kind: Kind::Exec,
            container: None,
            detail: Detail::Exec(ExecInfo {
                filename: "/bin/sh".into(),
                ..ExecInfo::default()
            }),
            ..base.clone()
        };
        vec![base.clone(), exec, base]
    }

    #[tokio::test]
    async fn cached_serialisation_is_identical_to_serde() {
        let mut buf = Vec::new();
        {
            let mut sink = JsonLines::new(&mut buf);
            for e in events() {
                sink.emit(e).await.unwrap();
            }
            sink.flush().await.unwrap();
        }
        let want: String = events()
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        assert_eq!(String::from_utf8(buf).unwrap(), want);
    }

    #[tokio::test]
    async fn control_characters_in_events_are_escaped_in_every_part() {
        let hostile = "/tmp/\u{1b}[2J\u{9b}31m\u{202e}gpj.sh\n";
        let mut evs = events();
        for e in &mut evs {
            let mut p = (*e.process).clone();
            p.exe = hostile.into();
            p.argv = vec![hostile.into()];
            e.process = Arc::new(p);
            if let Some(f) = e.file_mut() {
                f.path = hostile.into();
            }
        }
        let mut buf = Vec::new();
        {
            let mut sink = JsonLines::new(&mut buf);
            for e in evs.clone() {
                sink.emit(e).await.unwrap();
            }
            sink.flush().await.unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.lines().count(), evs.len());
        for line in text.lines() {
            assert!(
                !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{line}"
            );
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["process"]["exe"], hostile);
        }
    }
}

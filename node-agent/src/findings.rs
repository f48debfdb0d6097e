//! Standalone detection: the same detection library the cloud detector runs, in-process.
//!
//! Each event is evaluated; a finding is printed (one JSON object per line, GuardDuty's finding
//! format) the first time it occurs. Repeats aggregate into that finding (same id, `count`
//! and `eventLastSeen` move on), and a finding that changed is printed again at most once per
//! update interval, and at shutdown: the cloud pipeline's semantics, on one host.

use std::{
    io::Write,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use peregrine_detect::{Engine, Match, to_finding};
use peregrine_event::{Event, Timestamp};
use peregrine_finding::{Finding, FindingEnv};

use crate::sink::EventSink;

/// What can go wrong printing findings.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    #[error("writing findings: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding a finding: {0}")]
    Encode(#[from] serde_json::Error),
}

struct Aggregate {
    finding: Finding,
    dirty: bool,
    printed_at: Instant,
}

pub struct FindingsSink<W: Write> {
    engine: Engine,
    env: FindingEnv,
    out: std::io::BufWriter<W>,
    seen: LruCache<String, Aggregate>,
    matches: Vec<Match>,
    update_interval: Duration,
    pub findings: u64,
}

impl<W: Write> FindingsSink<W> {
    pub fn new(engine: Engine, env: FindingEnv, out: W, update_interval: Duration) -> Self {
        FindingsSink {
            engine,
            env,
            out: std::io::BufWriter::new(out),
            seen: LruCache::new(NonZeroUsize::new(16384).unwrap_or(NonZeroUsize::MIN)),
            matches: Vec::new(),
            update_interval,
            findings: 0,
        }
    }

    fn print(out: &mut std::io::BufWriter<W>, f: &Finding) -> Result<(), FindingsError> {
        serde_json::to_writer(&mut *out, f)?;
        out.write_all(b"\n")?;
        Ok(())
    }

    fn print_due(&mut self, all: bool) -> Result<(), FindingsError> {
        let now = Instant::now();
        for (_, a) in self.seen.iter_mut() {
            if a.dirty && (all || now.duration_since(a.printed_at) >= self.update_interval) {
                Self::print(&mut self.out, &a.finding)?;
                a.dirty = false;
                a.printed_at = now;
            }
        }
        Ok(())
    }
}

impl<W: Write> EventSink for FindingsSink<W> {
    type Error = FindingsError;

    async fn emit(&mut self, ev: Event) -> Result<(), FindingsError> {
        self.engine.evaluate(&ev, &mut self.matches);
        for m in self.matches.drain(..) {
            let f = to_finding(&m, &ev, &self.env, Timestamp::now());
            match self.seen.get_mut(&f.id) {
                Some(a) => {
                    // Same id means same type, account and region: merging cannot fail.
                    if a.finding.record_occurrence(&f).is_ok() {
                        a.dirty = true;
                    }
                }
                None => {
                    Self::print(&mut self.out, &f)?;
                    self.findings += 1;
                    let id = f.id.clone();
                    self.seen.put(
                        id,
                        Aggregate {
                            finding: f,
                            dirty: false,
                            printed_at: Instant::now(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), FindingsError> {
        self.print_due(false)?;
        self.out.flush()?;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), FindingsError> {
        self.print_due(true)?;
        self.out.flush()?;
        Ok(())
    }

    fn is_closed(err: &FindingsError) -> bool {
        matches!(err, FindingsError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_detect::Catalog;
    use peregrine_event::{Detail, FileInfo, Kind, Process};

    fn env() -> FindingEnv {
        FindingEnv {
            account_id: "000000000000".into(),
            region: "local".into(),
            partition: "aws".into(),
            detector_id: "standalone".into(),
            cluster_name: "test".into(),
            cluster_arn: None,
            node_name: "node-1".into(),
            instance_id: None,
            agent_id: "a".into(),
            agent_version: "0".into(),
        }
    }

    fn release_agent_write() -> Event {
        Event {
            kind: Kind::Open,
            time: Timestamp::now(),
            tid: 7,
            process: std::sync::Arc::new(Process {
                pid: 7,
                exe: "/bin/sh".into(),
                comm: "sh".into(),
                ..Process::default()
            }),
            container: None,
            detail: Detail::File(FileInfo {
                path: "/tmp/cg/release_agent".into(),
                flags: 0o1101,
                result: 3,
                ..FileInfo::default()
            }),
        }
    }

    #[tokio::test]
    async fn prints_new_findings_at_once_and_aggregates_repeats() {
        let engine = Engine::new([Catalog::builtin().unwrap()]);
        let mut out = Vec::new();
        {
            let mut sink = FindingsSink::new(engine, env(), &mut out, Duration::from_secs(3600));
            sink.emit(release_agent_write()).await.unwrap();
            sink.emit(release_agent_write()).await.unwrap();
            sink.flush().await.unwrap();
            assert_eq!(sink.findings, 1);
            sink.close().await.unwrap();
        }
        let lines: Vec<Finding> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The first occurrence at once, the aggregated one at close.
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].finding_type,
            "PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified"
        );
        assert_eq!(lines[0].id, lines[1].id);
        assert_eq!(lines[0].service.count, 1);
        assert_eq!(lines[1].service.count, 2);
    }
}

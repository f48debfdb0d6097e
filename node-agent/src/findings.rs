//! Standalone detection: the same detection library the cloud detector runs, in-process.
//!
//! Each event is evaluated; a finding is printed (one JSON object per line, GuardDuty's finding
//! format, or one line for a person: [`Format`]) the first time it occurs. Repeats aggregate into that finding (same id, `count`
//! and `eventLastSeen` move on), and a finding that changed is printed again at most once per
//! update interval, and at shutdown: the cloud pipeline's semantics, on one host.

use std::{
    io::Write,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use peregrine_detect::{Engine, Match, agent_blinded_finding, to_finding};
use peregrine_event::{BlindingReason, Event, Timestamp};
use peregrine_finding::{Finding, FindingEnv};

use crate::sink::EventSink;

mod text;

/// How findings are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// GuardDuty's finding JSON, one object per line: for tools, files and pipes.
    #[default]
    Json,
    /// One line per finding for a person at a terminal ([`text`]): time, severity, type and
    /// count, pod or host, process, evidence; attacker strings escaped and bounded.
    /// `color`: the severity word in ANSI colour.
    Text { color: bool },
}

/// Writes findings in a [`Format`]. A finding's JSON is made in either format: its length is
/// what the aggregate is weighed by.
struct Printer<W: Write> {
    out: std::io::BufWriter<W>,
    format: Format,
    line: Vec<u8>,
    text: String,
}

impl<W: Write> Printer<W> {
    /// Prints `f`; returns the length of its JSON line. Every control character in the JSON is
    /// escaped ([`peregrine_event::json`]), and the text line escapes them for a terminal
    /// ([`crate::termsafe`]), so attacker strings cannot break the line or reach a terminal
    /// raw.
    fn print(&mut self, f: &Finding) -> Result<usize, FindingsError> {
        self.line.clear();
        peregrine_event::json::to_writer(&mut self.line, f)?;
        self.line.push(b'\n');
        match self.format {
            Format::Json => self.out.write_all(&self.line)?,
            Format::Text { color } => {
                self.text.clear();
                text::push_line(&mut self.text, f, color);
                self.out.write_all(self.text.as_bytes())?;
            }
        }
        Ok(self.line.len())
    }
}

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
    /// What the aggregate is taken to cost in memory (see [`weight`]).
    weight: usize,
}

/// Findings kept for aggregation, at most.
const AGGREGATES: usize = 16384;
/// Bytes the kept findings may cost, at most. A finding can carry up to 200 KiB of attacker
/// strings (`peregrine_finding::MAX_FINDING_BYTES`), and rules that aggregate by
/// `process.exe` make a new finding per executable path an attacker chooses, so a count bound
/// alone would allow gigabytes.
pub const AGGREGATE_BYTES: usize = 16 << 20;

/// The memory an aggregate is taken to cost: its JSON twice over (strings are held with their
/// capacity, beside the struct and list overheads) plus the key and the cache's node.
fn weight(json_len: usize, id: &str) -> usize {
    2 * json_len + id.len() + 256
}

pub struct FindingsSink<W: Write> {
    engine: Engine,
    env: FindingEnv,
    out: Printer<W>,
    seen: LruCache<String, Aggregate>,
    seen_bytes: usize,
    max_bytes: usize,
    /// Aggregates let go to stay within the bounds (a pending update is printed first).
    pub evicted: u64,
    matches: Vec<Match>,
    update_interval: Duration,
    pub findings: u64,
}

impl<W: Write> FindingsSink<W> {
    pub fn new(engine: Engine, env: FindingEnv, out: W, update_interval: Duration) -> Self {
        Self::with_bounds(
            engine,
            env,
            out,
            update_interval,
            AGGREGATES,
            AGGREGATE_BYTES,
        )
    }

    /// At most `max_entries` aggregates costing at most `max_bytes` (the newest is always kept).
    pub fn with_bounds(
        engine: Engine,
        env: FindingEnv,
        out: W,
        update_interval: Duration,
        max_entries: usize,
        max_bytes: usize,
    ) -> Self {
        FindingsSink {
            engine,
            env,
            out: Printer {
                out: std::io::BufWriter::new(out),
                format: Format::Json,
                line: Vec::new(),
                text: String::new(),
            },
            seen: LruCache::new(NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN)),
            seen_bytes: 0,
            max_bytes,
            evicted: 0,
            matches: Vec::new(),
            update_interval,
            findings: 0,
        }
    }

    /// Prints in `format` (JSON lines unless told).
    pub fn with_format(mut self, format: Format) -> Self {
        self.out.format = format;
        self
    }

    /// Bytes the kept aggregates are taken to cost.
    pub fn aggregate_bytes(&self) -> usize {
        self.seen_bytes
    }

    /// Lets the least recently seen aggregates go until one more of `incoming` bytes fits,
    /// printing any pending update first, so that no occurrence goes unreported.
    fn make_room(&mut self, incoming: usize) -> Result<(), FindingsError> {
        while !self.seen.is_empty()
            && (self.seen.len() >= self.seen.cap().get()
                || self.seen_bytes + incoming > self.max_bytes)
        {
            let Some((_, a)) = self.seen.pop_lru() else {
                break;
            };
            if a.dirty {
                self.out.print(&a.finding)?;
            }
            self.seen_bytes = self.seen_bytes.saturating_sub(a.weight);
            self.evicted += 1;
        }
        Ok(())
    }

    /// Prints `f` if it is new (keeping it to aggregate, within the bounds), or folds it into
    /// the finding already printed.
    fn record(&mut self, f: Finding) -> Result<(), FindingsError> {
        match self.seen.get_mut(&f.id) {
            Some(a) => {
                // Same id means same type, account and region: merging cannot fail.
                if a.finding.record_occurrence(&f).is_ok() {
                    a.dirty = true;
                }
            }
            None => {
                let len = self.out.print(&f)?;
                self.findings += 1;
                let w = weight(len, &f.id);
                self.make_room(w)?;
                self.seen_bytes += w;
                let id = f.id.clone();
                self.seen.put(
                    id,
                    Aggregate {
                        finding: f,
                        dirty: false,
                        printed_at: Instant::now(),
                        weight: w,
                    },
                );
            }
        }
        Ok(())
    }

    fn print_due(&mut self, all: bool) -> Result<(), FindingsError> {
        let now = Instant::now();
        for (_, a) in self.seen.iter_mut() {
            if a.dirty && (all || now.duration_since(a.printed_at) >= self.update_interval) {
                let len = self.out.print(&a.finding)?;
                a.dirty = false;
                a.printed_at = now;
                // Occurrences can grow a finding (within its bounds): weigh it again.
                let w = weight(len, &a.finding.id);
                self.seen_bytes = (self.seen_bytes + w).saturating_sub(a.weight);
                a.weight = w;
            }
        }
        Ok(())
    }
}

impl<W: Write> EventSink for FindingsSink<W> {
    type Error = FindingsError;

    async fn emit(&mut self, ev: Event) -> Result<(), FindingsError> {
        // Taken out for the loop, which needs `self` (and put back for its allocation).
        let mut matches = std::mem::take(&mut self.matches);
        self.engine.evaluate(&ev, &mut matches);
        for m in matches.drain(..) {
            let f = to_finding(&m, &ev, &self.env, Timestamp::now());
            self.record(f)?;
        }
        self.matches = matches;
        Ok(())
    }

    /// The agent is blind: the same finding the detector makes from a heartbeat, one per node,
    /// each blind tick an occurrence. Printed at once the first time, and written out at
    /// once (a blinded agent may not live to the next flush).
    async fn blinded(
        &mut self,
        reasons: &[BlindingReason],
        at: Timestamp,
    ) -> Result<(), FindingsError> {
        let new = self.findings;
        self.record(agent_blinded_finding(reasons, &self.env, at, at))?;
        if self.findings > new {
            self.out.out.flush()?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), FindingsError> {
        self.print_due(false)?;
        self.out.out.flush()?;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), FindingsError> {
        self.print_due(true)?;
        self.out.out.flush()?;
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

    /// An `authorized_keys` append by `exe` (a persistence finding aggregated by executable).
    fn authorized_keys_append(exe: &str) -> Event {
        let mut ev = release_agent_write();
        ev.process = std::sync::Arc::new(Process {
            pid: 7,
            exe: exe.into(),
            comm: "sh".into(),
            ..Process::default()
        });
        if let Some(f) = ev.file_mut() {
            f.path = "/root/.ssh/authorized_keys".into();
            f.flags = 0o2001;
        }
        ev
    }

    fn lines(out: &[u8]) -> Vec<Finding> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn aggregates_are_bounded_in_bytes_and_evicted_updates_are_printed() {
        let engine = Engine::new([Catalog::builtin().unwrap()]);
        let budget = 1 << 20;
        let mut out = Vec::new();
        let evicted;
        {
            let mut sink = FindingsSink::with_bounds(
                engine,
                env(),
                &mut out,
                Duration::from_secs(3600),
                AGGREGATES,
                budget,
            );
            // One finding per executable an attacker chooses, each naming a 4 KiB path, each
            // seen twice so that every aggregate holds an unprinted update.
            for i in 0..400 {
                let exe = format!("/tmp/{}/{i}", "x".repeat(4000));
                sink.emit(authorized_keys_append(&exe)).await.unwrap();
                sink.emit(authorized_keys_append(&exe)).await.unwrap();
                assert!(
                    sink.aggregate_bytes() <= budget,
                    "{} > {budget}",
                    sink.aggregate_bytes()
                );
            }
            assert_eq!(sink.findings, 400);
            evicted = sink.evicted;
            assert!(evicted > 0 && evicted < 400, "{evicted}");
            sink.close().await.unwrap();
        }
        // Every finding's second occurrence is printed: at eviction or at close.
        let printed = lines(&out);
        assert_eq!(printed.len(), 800);
        let mut counts = std::collections::HashMap::<String, Vec<u64>>::new();
        for f in &printed {
            counts
                .entry(f.id.clone())
                .or_default()
                .push(f.service.count);
        }
        assert_eq!(counts.len(), 400);
        assert!(counts.values().all(|c| c == &[1, 2]), "{counts:?}");
    }

    #[tokio::test]
    async fn control_characters_in_attacker_strings_never_reach_the_output_raw() {
        let engine = Engine::new([Catalog::builtin().unwrap()]);
        let mut out = Vec::new();
        {
            let mut sink = FindingsSink::new(engine, env(), &mut out, Duration::from_secs(3600));
            let exe = "/tmp/\u{1b}]0;owned\u{7}\u{1b}[2J\r\nforged finding\u{0}\u{9b}31m";
            sink.emit(authorized_keys_append(exe)).await.unwrap();
            sink.close().await.unwrap();
        }
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            !text.trim_end_matches('\n').chars().any(|c| c.is_control()),
            "{text:?}"
        );
        // The string is data: it round-trips intact.
        let f = &lines(&out)[0];
        let json = serde_json::to_string(f).unwrap();
        assert!(json.contains("\\u001b]0;owned"), "{json}");
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

    #[tokio::test]
    async fn the_text_format_prints_the_same_findings_one_line_each() {
        let run = |format: Format| async move {
            let engine = Engine::new([Catalog::builtin().unwrap()]);
            let mut out = Vec::new();
            {
                let mut sink =
                    FindingsSink::new(engine, env(), &mut out, Duration::from_secs(3600))
                        .with_format(format);
                sink.emit(release_agent_write()).await.unwrap();
                sink.emit(release_agent_write()).await.unwrap();
                sink.emit(authorized_keys_append("/tmp/\u{1b}[2J\u{202e}x"))
                    .await
                    .unwrap();
                sink.close().await.unwrap();
            }
            String::from_utf8(out).unwrap()
        };
        let json = run(Format::Json).await;
        // JSON lines as they always were: each finding through the event JSON writer.
        let mut again = Vec::new();
        for f in lines(json.as_bytes()) {
            peregrine_event::json::to_writer(&mut again, &f).unwrap();
            again.push(b'\n');
        }
        assert_eq!(String::from_utf8(again).unwrap(), json);
        let text = run(Format::Text { color: false }).await;
        // Each JSON line's finding, as the text format writes it.
        let mut want = String::new();
        for f in lines(json.as_bytes()) {
            text::push_line(&mut want, &f, false);
        }
        // The two runs stamp findings with their own clock, which may have ticked between them:
        // compare what follows the time (`2026-12-03T20:05:34Z`, 20 bytes).
        let untimed = |s: &str| {
            s.lines()
                .map(|l| l.get(20..).unwrap_or(l).to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(untimed(&text), untimed(&want));
        let text: Vec<&str> = text.lines().collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("High      PrivilegeEscalation:Runtime/CGroupsReleaseAgentModified  host  /bin/sh[7]  release_agent=/tmp/cg/release_agent"), "{}", text[0]);
        assert!(
            text[1].contains("/tmp/\\x1b[2J\\u{202e}x[7]  write=/root/.ssh/authorized_keys"),
            "{}",
            text[1]
        );
        // The repeat, at close, with its count.
        assert!(
            text[2].contains("CGroupsReleaseAgentModified ×2  host"),
            "{}",
            text[2]
        );
        assert!(text.iter().all(|l| !l.chars().any(char::is_control)));
    }

    #[tokio::test]
    async fn a_blinded_agent_is_the_detectors_finding() {
        use peregrine_event::BlindingKind;
        let engine = Engine::new([Catalog::builtin().unwrap()]);
        let reasons = [BlindingReason::new(
            BlindingKind::SustainedDrops,
            "events lost in each of the last 3 ticks",
        )];
        let t = Timestamp::from_unix_nanos(1_764_000_000_000_000_000);
        let mut out = Vec::new();
        {
            let mut sink = FindingsSink::new(engine, env(), &mut out, Duration::from_secs(3600));
            sink.blinded(&reasons, t).await.unwrap();
            sink.blinded(&reasons, t).await.unwrap();
            assert_eq!(sink.findings, 1);
            sink.close().await.unwrap();
        }
        let lines: Vec<Finding> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], agent_blinded_finding(&reasons, &env(), t, t));
        assert_eq!(
            lines[0].finding_type,
            "DefenseEvasion:Runtime/PeregrineAgentBlinded"
        );
        assert_eq!(lines[1].service.count, 2);
    }
}

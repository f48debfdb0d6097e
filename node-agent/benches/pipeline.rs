#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness
//! User-space cost per event, without the kernel: synthetic decoded records from this process
//! go through enrichment (process table, lineage, container lookup) and then either nowhere or
//! the JSON-lines writer.
//!
//!   cargo bench -p node-agent --bench pipeline

use std::time::{Duration, Instant};

use node_agent::{
    decode::{RawBody, RawEvent, RawFile},
    enrich::{EnrichConfig, Enricher},
    sink::{CountingSink, EventSink, JsonLines},
};
use node_agent_common::{EventHeader, Kind};

fn header(kind: Kind) -> EventHeader {
    let me = std::process::id();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no memory effects.
    let ns_per_tick = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let start: u64 = rest[19].parse::<u64>().unwrap() * ns_per_tick;
    let ppid: u32 = rest[1].parse().unwrap();
    EventHeader {
        kind: kind as u32,
        flags: 0,
        ktime_ns: start + 1_000_000,
        start_boottime_ns: start,
        parent_start_boottime_ns: 0,
        cgroup_id: 1,
        tgid: me,
        tid: me,
        ppid,
        uid: 0,
        euid: 0,
        gid: 0,
        mnt_ns: 4026531841,
        data_len: 0,
        comm: *b"pipeline\0\0\0\0\0\0\0\0",
    }
}

fn events(n: usize) -> Vec<RawEvent> {
    let h = header(Kind::Open);
    (0..n)
        .map(|i| RawEvent {
            header: {
                // (Struct-update syntax here trips a rustc 1.95 ICE on the const-length array.)
                let mut hh = h;
                hh.ktime_ns += i as u64;
                hh
            },
            body: RawBody::File(RawFile {
                path: format!("/var/lib/app/data/segment-{:05}.log", i % 1000),
                new_path: None,
                result: 3,
                ino: 1000 + (i % 1000) as u64,
                dev: 2049,
                flags: 0o101,
                mode: 0o644,
                syscall: 257,
            }),
        })
        .collect()
}

async fn run<S: EventSink>(name: &str, sink: &mut S) {
    let mut e = Enricher::new(EnrichConfig::default());
    let evs = events(200_000);
    // Warm up: process table, cgroup cache.
    for ev in evs.iter().take(1000).cloned() {
        if let Some(out) = e.enrich(ev).await {
            sink.emit(out).await.unwrap();
        }
    }
    let n = evs.len();
    let t = Instant::now();
    for ev in evs {
        if let Some(out) = e.enrich(ev).await {
            sink.emit(out).await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    let d: Duration = t.elapsed();
    println!(
        "{name:<28} {:>9.0} events/s  {:>6.0} ns/event",
        n as f64 / d.as_secs_f64(),
        d.as_nanos() as f64 / n as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run("enrich only", &mut CountingSink::default()).await;
        run(
            "enrich + JSON to /dev/null",
            &mut JsonLines::new(std::fs::File::create("/dev/null").unwrap()),
        )
        .await;
    });
}

//! Blinding raises an alarm, and a flood cannot silence it. Needs root (real probes, real
//! kernel, real storms).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::{Agent, require_root};
use node_agent::probes::{KernelView, LoadOptions, Probes, Watch, Watched};
use peregrine_event::Kind;

/// Opens (and, on a second thread, execs) until dropped: a storm that does not stop between
/// the agent's ticks, as an attacker's flood would not.
struct Storm {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
    _dir: tempfile::TempDir,
}

impl Drop for Storm {
    /// A test that fails mid-storm stops it before its directory goes.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Storm {
    fn start() -> Storm {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..2 {
            let path: PathBuf = dir.path().join(format!("storm-{i}"));
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        drop(
                            OpenOptions::new()
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .open(&path)
                                .unwrap(),
                        );
                    }
                    n += 256;
                }
                n
            }));
        }
        let stop2 = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                Command::new("/bin/true").status().unwrap();
                n += 1;
            }
            n
        }));
        Storm {
            stop,
            threads,
            _dir: dir,
        }
    }

    /// Stops the storm; returns the operations it made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap()).sum()
    }
}

fn healthz(agent: &Agent) -> serde_json::Value {
    let body = agent.get("/healthz").expect("/healthz answers");
    serde_json::from_str(&body).unwrap()
}

fn blinded_codes(h: &serde_json::Value) -> Vec<String> {
    h["blinded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `/healthz` until `done` says so; panics with the last answer after `limit`.
fn wait_healthz(
    agent: &Agent,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let h = healthz(agent);
        if done(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last /healthz {h}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ticks the test watches the storm through.
const TICKS: u64 = 10;

#[test]
fn a_continuous_storm_cannot_starve_the_status_tick() {
    // The smallest ring buffer the kernel allows: every tick of the storm loses events.
    let mut agent = Agent::start(&["--ring-buffer-bytes", "4096"]);
    let storm = Storm::start();
    // The storm is on once the kernel drops; count ticks from there.
    agent.wait_metric("peregrine_kernel_drops_total{reason=\"ringbuf_full\"}", 1.0);
    let first = healthz(&agent)["tick"].as_u64().unwrap();
    // Status updates keep coming while the storm goes on: /healthz answers with ever newer
    // ticks. A tick starved by the flood would stop here.
    let mut seen = BTreeSet::new();
    let last = wait_healthz(
        &agent,
        "ticks during the storm",
        Duration::from_secs(60),
        |h| {
            seen.insert(h["tick"].as_u64().unwrap());
            h["tick"].as_u64().unwrap() >= first + TICKS
        },
    )["tick"]
        .as_u64()
        .unwrap();
    let ops = storm.stop();
    assert!(agent.stop().success());
    assert!(seen.len() > 1, "the status moved on: {seen:?}");

    // Every tick of the storm emitted its own Loss event, with kernel drops: no tick was
    // skipped (a tick whose report the run loop could not take in time would be merged into
    // the next, leaving a gap) and none repeated.
    let events = agent.events();
    let mut ticks: Vec<u64> = Vec::new();
    for e in events.iter().filter(|e| e.kind == Kind::Loss) {
        let l = e.loss().unwrap();
        if (first + 1..=last).contains(&l.tick) {
            assert!(
                l.kernel_ringbuf_full > 0,
                "tick {} of the storm: {l:?}",
                l.tick
            );
            ticks.push(l.tick);
        }
    }
    let want: Vec<u64> = (first + 1..=last).collect();
    assert_eq!(
        ticks, want,
        "one Loss event per tick of the storm, in order ({ops} operations)"
    );
}

#[test]
fn a_sustained_flood_is_a_blinded_finding_and_clears_after() {
    let mut agent = Agent::start_findings(&["--ring-buffer-bytes", "4096"]);
    assert!(healthz(&agent)["blinded"].as_array().unwrap().is_empty());
    let storm = Storm::start();
    let h = wait_healthz(&agent, "sustained drops", Duration::from_secs(60), |h| {
        blinded_codes(h).contains(&"sustained_drops".to_owned())
    });
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["blinded"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("events lost in each of the last "),
        "{h}"
    );
    // The finding is written as soon as the agent judges itself blind.
    let finding = wait_finding(&agent.output, Duration::from_secs(30));
    assert_eq!(finding["severity"], 8.0);
    assert_eq!(finding["service"]["count"], 1);
    let info: serde_json::Value = serde_json::from_str(
        finding["service"]["additionalInfo"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        info["blindingReasons"][0]["code"], "sustained_drops",
        "{info}"
    );
    storm.stop();
    // Drops stop, and so does the alarm.
    wait_healthz(&agent, "the alarm clears", Duration::from_secs(60), |h| {
        blinded_codes(h).is_empty() && h["status"] == "ok"
    });
    assert!(agent.stop().success());
    // At shutdown the aggregated finding is written again with its count: one per blind tick.
    let all = findings(&agent.output);
    let last = all.iter().rev().find(|f| f["type"] == BLINDED).unwrap();
    assert_eq!(last["id"], finding["id"]);
    assert!(last["service"]["count"].as_u64().unwrap() >= 1);
}

const BLINDED: &str = "DefenseEvasion:Runtime/PeregrineAgentBlinded";

fn findings(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_finding(path: &Path, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(f) = findings(path).into_iter().find(|f| f["type"] == BLINDED) {
            return f;
        }
        assert!(Instant::now() < deadline, "no {BLINDED} finding");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_restart_loop_is_reported_from_the_start_history() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap().to_owned();
    let args = ["--state-dir", dir.as_str(), "--blind-restarts", "3"];
    // Killed twice, as an attacker (or an OOM loop) would.
    for _ in 0..2 {
        let mut a = Agent::start(&args);
        assert!(healthz(&a)["blinded"].as_array().unwrap().is_empty());
        a.kill();
    }
    let mut agent = Agent::start_unchecked(&args);
    let h = wait_healthz(&agent, "a restart loop", Duration::from_secs(30), |h| {
        blinded_codes(h) == ["restart_loop"]
    });
    assert_eq!(h["status"], "degraded");
    assert!(agent.stop().success());
    let starts = std::fs::read_to_string(state.path().join("starts")).unwrap();
    assert_eq!(starts.lines().count(), 3, "{starts}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.path().join("starts"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn the_probe_recheck_finds_every_live_link_and_misses_the_gone() {
    require_root();
    let (probes, _ring, _drops) = Probes::load(LoadOptions::default()).unwrap();
    let watched = probes.watch_list();
    assert_eq!(
        watched.len(),
        probes.attached(),
        "every attached probe is watched"
    );
    // This kernel has BPF perf links: every probe is a link the kernel lists by id.
    assert!(
        watched
            .iter()
            .all(|w| matches!(w.watch, Watch::Link { .. })),
        "{watched:?}"
    );
    let view = KernelView::read().unwrap();
    assert!(view.missing(&watched).is_empty(), "all attached right now");
    // A link id the kernel does not have, and a real link claimed for another program.
    let Watch::Link { link_id, prog_id } = watched[0].watch else {
        unreachable!()
    };
    let bogus = [
        Watched {
            index: 100,
            watch: Watch::Link {
                link_id: u32::MAX,
                prog_id,
            },
        },
        Watched {
            index: 101,
            watch: Watch::Link {
                link_id,
                prog_id: prog_id.wrapping_add(1_000_000),
            },
        },
    ];
    assert_eq!(view.missing(&bogus), [100, 101]);
    // Detached for real: every one of them is missing.
    probes.detach();
    let after = KernelView::read().unwrap();
    assert_eq!(after.missing(&watched).len(), watched.len());
}

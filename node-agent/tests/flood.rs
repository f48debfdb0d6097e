//! Overload: losing events is allowed only when it is counted and reported. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{fs::OpenOptions, process::Command};

use common::{Agent, unique};
use peregrine_event::Kind;

const STORM: usize = 200_000;

fn open_storm(path: &std::path::Path) {
    for _ in 0..STORM {
        drop(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .unwrap(),
        );
    }
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_full_kernel_ring_buffer_is_counted_reported_and_survived() {
    // The smallest ring buffer the kernel allows: one page.
    let mut agent = Agent::start(&["--ring-buffer-bytes", "4096"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("storm");
    open_storm(&path);

    let dropped = agent.wait_metric("peregrine_kernel_drops_total{reason=\"ringbuf_full\"}", 1.0);
    let loss = agent.wait_for("a loss event", |e| {
        e.kind == Kind::Loss && e.loss().unwrap().kernel_ringbuf_full > 0
    });
    assert!(loss.container.is_none());
    let per_cpu: f64 = agent
        .metrics()
        .lines()
        .filter(|l| l.starts_with("peregrine_kernel_ringbuf_drops_per_cpu{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        per_cpu >= dropped,
        "per-CPU counts ({per_cpu}) cover the total ({dropped})"
    );

    // Still alive and capturing.
    let marker = exec_marker("after-storm");
    agent.wait_for("an exec after the storm", |e| {
        e.kind == Kind::Exec && e.process.argv.contains(&marker)
    });
    let hwm = vm_kib(agent.pid(), "VmHWM:");
    assert!(hwm < 128 * 1024, "agent peak RSS {hwm} KiB is not bounded");

    // Nothing vanished silently: every open of the storm was delivered or counted as lost.
    assert!(agent.stop().success());
    let (delivered, lost) = delivered_and_lost(&agent, &path);
    assert!(
        delivered < STORM as u64,
        "a one-page ring buffer cannot keep up with {STORM} opens"
    );
    assert!(
        delivered + lost >= STORM as u64,
        "delivered {delivered} + reported lost {lost} < {STORM}"
    );
}

#[test]
fn a_full_user_queue_is_counted_separately_and_reported() {
    // A large ring buffer but a tiny queue in front of enrichment.
    let mut agent = Agent::start(&["--ring-buffer-bytes", "67108864", "--queue-capacity", "8"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("storm");
    open_storm(&path);

    agent.wait_metric("peregrine_user_queue_drops_total", 1.0);
    let loss = agent.wait_for("a loss event for the queue", |e| {
        e.kind == Kind::Loss && e.loss().unwrap().user_queue_full > 0
    });
    assert_eq!(
        loss.loss().unwrap().kernel_ringbuf_full,
        0,
        "the kernel side kept up"
    );
    assert!(agent.stop().success());
    let (delivered, lost) = delivered_and_lost(&agent, &path);
    assert!(
        delivered + lost >= STORM as u64,
        "delivered {delivered} + reported lost {lost} < {STORM}"
    );
}

/// Runs `sh -c 'exit 0' <marker>` (a fresh marker, returned) to completion.
fn exec_marker(tag: &str) -> String {
    let marker = unique(tag);
    assert!(
        Command::new("/bin/sh")
            .args(["-c", "exit 0", &marker])
            .status()
            .unwrap()
            .success()
    );
    marker
}

/// Opens of `path` the agent delivered, and the events its loss reports counted as lost.
fn delivered_and_lost(agent: &Agent, path: &std::path::Path) -> (u64, u64) {
    let events = agent.events();
    let p = path.to_string_lossy();
    let delivered = events
        .iter()
        .filter(|e| e.kind == Kind::Open && e.file().unwrap().path == p)
        .count() as u64;
    let lost: u64 = events
        .iter()
        .filter_map(|e| e.loss())
        .map(|l| l.total())
        .sum();
    (delivered, lost)
}

/// Names (truncated by the kernel to 15 bytes) of our programs that are loaded right now.
fn our_loaded_programs() -> Vec<String> {
    let ours = [
        "sched_process_e",
        "sys_enter_track",
        "sys_exit_tracke",
        "cgroup_mkdir",
        "compat_sys_ente",
        "compat_sys_exit",
    ];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .filter(|n| ours.contains(&n.as_str()))
        .collect()
}

#[test]
fn sigterm_detaches_probes_and_flushes_what_was_captured() {
    let mut agent = Agent::start(&[]);
    // sched_process_exec and sched_process_exit share the truncated name.
    assert_eq!(
        our_loaded_programs().len(),
        7,
        "the running agent's programs are visible"
    );
    let marker = exec_marker("last");
    // Stop at once: the exec is in the kernel's buffer or the queue, not yet necessarily written.
    let status = agent.stop();
    assert!(status.success(), "graceful exit, got {status}");
    let events = agent.events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == Kind::Exec && e.process.argv.contains(&marker)),
        "the last exec before SIGTERM was flushed"
    );
    // No program of ours stays loaded.
    let loaded = our_loaded_programs();
    assert!(
        loaded.is_empty(),
        "programs still loaded after exit: {loaded:?}"
    );
}

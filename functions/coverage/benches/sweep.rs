//! A sweep of a generated organization in moto: `ACCOUNTS` member accounts (500) with
//! `CLUSTERS` clusters each (5), two worker nodes per cluster, one of them heartbeating.
//!
//! `cargo bench -p peregrine-coverage --bench sweep` (needs moto: scripts/setup);
//! `ACCOUNTS=50 CLUSTERS=2 cargo bench ...` for a smaller one.
//!
//! Prints the set-up time, then the first sweep (every cluster new: one event per unhealthy
//! cluster) and a second one (steady state: no event), with the account concurrency the
//! template sets (16).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of a process, in seconds (`/proc/<pid>/stat`, clock ticks of 100 Hz).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let (accounts, clusters) = (env("ACCOUNTS", 500), env("CLUSTERS", 5));
    let org = org(&[]).await;
    let setup = Instant::now();
    let ids = org.accounts(accounts, "bench").await;
    let org = &org;
    futures_util::stream::iter(ids.iter())
        .map(|account| async move {
            org.member_role(account, EXTERNAL_ID).await;
            let inside = org.inside(account).await;
            for c in 0..clusters {
                // Cluster names repeat across accounts, as they do in real organizations.
                let name = format!("cluster-{c}");
                let nodes = org.cluster_in(&inside, account, &name, &[], 2).await;
                // As an agent told its cluster's ARN (managed installs are) sends it.
                let arn = format!("arn:aws:eks:us-east-1:{account}:cluster/{name}");
                org.heartbeat(&arn, &nodes[0], Duration::from_secs(30))
                    .await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    println!(
        "set-up: {accounts} accounts x {clusters} clusters x 2 nodes in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let deps = org.deps();
    let moto_pid = org.moto.pid().unwrap().to_string();
    for run in ["first sweep (all new)", "second sweep (steady)"] {
        let start = Instant::now();
        let (own, moto) = (cpu_seconds("self"), cpu_seconds(&moto_pid));
        let s = deps.sweep(clock(), None).await.unwrap();
        println!(
            "{run:<24} {:>8.1} s   CPU: sweeper {:.1} s, moto {:.1} s   clusters {}  events {}  states {:?}  statuses {:?}",
            start.elapsed().as_secs_f64(),
            cpu_seconds("self") - own,
            cpu_seconds(&moto_pid) - moto,
            s.clusters_swept,
            s.events_published,
            s.count_by_sweep_state,
            s.count_by_coverage_status
        );
    }
    println!(
        "VmHWM (this process; moto runs in its own): {} KiB",
        vm_hwm_kib()
    );
}

//! Memory: attacker-sized strings cannot grow the agent past its budgets. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{path::PathBuf, process::Command};

use common::{Agent, unique};
use peregrine_event::Kind;

/// The DaemonSet's memory limit (infra/).
const LIMIT_KIB: u64 = 256 * 1024;
/// Each process leaves a ~8.5 KiB entry behind (exited processes stay five minutes, for their
/// children's lineage): this many hold about 100 MiB, twice the default 48 MiB budget.
const PROCESSES: usize = 12_000;
const THREADS: usize = 2;

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A directory whose absolute path is about 4 KiB long (16 components of 250 bytes under a
/// temporary directory; the kernel keeps at most 48 components and 4 KiB).
fn deep_dir(root: &std::path::Path) -> PathBuf {
    let mut p = root.to_path_buf();
    for i in 0..16 {
        let budget = 4000usize.saturating_sub(p.as_os_str().len() + 1).min(250);
        if budget < 8 {
            break;
        }
        p.push(format!("{i:02}{}", "d".repeat(budget - 2)));
    }
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn long_cwds_and_ld_library_paths_evict_by_bytes_and_rss_stays_bounded() {
    let mut agent = Agent::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let deep = deep_dir(tmp.path());
    let cwd_len = deep.as_os_str().len();
    assert!(cwd_len > 3800, "cwd is {cwd_len} bytes");
    // A library directory under it: 4 KiB.
    let ld = format!("{}/{}", deep.display(), "l".repeat(4095 - cwd_len));
    assert_eq!(ld.len(), 4096);

    let marker = unique("memory");
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..PROCESSES / THREADS {
                    let st = Command::new("/bin/true")
                        .arg(&marker)
                        .current_dir(&deep)
                        .env_clear()
                        .env("LD_LIBRARY_PATH", &ld)
                        .status()
                        .unwrap();
                    assert!(st.success());
                }
            });
        }
    });

    // The agent saw them with their long strings ...
    let e = agent.wait_for("an exec with a 4 KiB cwd and LD_LIBRARY_PATH", |e| {
        e.kind == Kind::Exec && e.process.argv.contains(&marker)
    });
    assert_eq!(e.process.cwd, deep.to_string_lossy());
    assert_eq!(e.process.ld_library_path.as_deref(), Some(ld.as_str()));

    // ... and dropped the oldest entries to stay within the process table's byte budget.
    let evicted = agent.wait_metric(
        "peregrine_cache_evictions_total{cache=\"process_table\",reason=\"bytes\"}",
        1.0,
    );
    let bytes = agent
        .metric("peregrine_cache_bytes{cache=\"process_table\"}")
        .unwrap();
    let budget = agent
        .metric("peregrine_cache_max_bytes{cache=\"process_table\"}")
        .unwrap();
    assert!(
        bytes <= budget,
        "process table {bytes} B > budget {budget} B"
    );

    let rss = vm_kib(agent.pid(), "VmRSS:");
    let hwm = vm_kib(agent.pid(), "VmHWM:");
    eprintln!(
        "{PROCESSES} processes: {evicted} evicted by bytes, table {bytes} of {budget} B, \
         agent RSS {rss} KiB, peak {hwm} KiB"
    );
    assert!(
        hwm < LIMIT_KIB,
        "agent peak RSS {hwm} KiB reaches the 256 MiB limit"
    );
    assert!(rss < LIMIT_KIB, "agent RSS {rss} KiB");
    assert!(agent.stop().success());
}

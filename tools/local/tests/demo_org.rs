//! `scripts/demo-org` end to end, as a user runs it (with the `peregrine-local` this test was
//! built with): an organization in moto, agents' heartbeats through the events queue, two
//! sweeps. Its output must show the coverage table (one cluster HEALTHY, one UNHEALTHY with
//! "Agent not reporting" and the node without an agent, the disabled account not swept) and
//! the status-change event of the cluster whose agents stopped, as it arrived on the queue an
//! EventBridge rule targets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The text of the section headed `== <title>…`, up to the next section.
fn section<'a>(out: &'a str, title: &str) -> &'a str {
    let start = out
        .find(&format!("== {title}"))
        .unwrap_or_else(|| panic!("no section {title:?} in\n{out}"));
    let rest = &out[start..];
    let body = &rest[rest.find('\n').map_or(rest.len(), |i| i + 1)..];
    &body[..body.find("\n== ").unwrap_or(body.len())]
}

/// The table line whose words include `word`, as words, and the line after it.
fn row<'a>(table: &'a str, word: &str) -> (Vec<&'a str>, &'a str) {
    let lines: Vec<&str> = table.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.split_whitespace().any(|w| w == word))
        .unwrap_or_else(|| panic!("no row with {word:?} in\n{table}"));
    (
        lines[i].split_whitespace().collect(),
        lines.get(i + 1).copied().unwrap_or_default(),
    )
}

/// Runs the script to its end: its exit status, stdout and stderr. A script that hangs (a
/// step waiting forever) is stopped with SIGTERM, so that its trap stops what it started, after
/// far longer than it takes (about 40 s).
fn run(cmd: &mut Command) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/demo-org starts");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).map(|_| text)
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            panic!(
                "demo-org did not finish within 10 minutes ({status})\n{}",
                stderr.join().unwrap().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (
        status,
        stdout.join().unwrap().unwrap(),
        stderr.join().unwrap().unwrap_or_default(),
    )
}

#[test]
fn demo_org_shows_the_coverage_table_and_the_status_change_event() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = Path::new(env!("CARGO_BIN_EXE_peregrine-local"));
    let (status, stdout, stderr) =
        run(Command::new(root.join("scripts/demo-org"))
            .env("PEREGRINE_BIN_DIR", bin.parent().unwrap()));
    assert!(
        status.success(),
        "demo-org failed ({status})\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "no control characters reach the terminal: {stdout:?}"
    );

    // Sweep 1: payments-prod's three agents report, analytics-etl's GPU node has none.
    let first = section(&stdout, "coverage after sweep 1");
    let (payments, _) = row(first, "payments-prod");
    assert_eq!(
        payments[1..],
        [
            "payments",
            "us-east-1",
            "payments-prod",
            "HEALTHY",
            "3/3",
            "-"
        ],
        "{first}"
    );
    // The node without an agent is the GPU node group's, whose taint the row names.
    let gpu = first
        .lines()
        .find(|l| l.contains("node group gpu has taints"))
        .unwrap_or_else(|| panic!("no node row names the gpu node group's taint: {first}"));
    let gpu: Vec<&str> = gpu.split_whitespace().collect();
    assert_eq!(gpu[0], "node", "{first}");
    let gpu_node = gpu[2];
    assert!(gpu_node.ends_with(".ec2.internal"), "{first}");
    assert_eq!(
        gpu[3..].join(" "),
        "UNHEALTHY no heartbeat: Agent not reporting:no heartbeat ever; node group gpu has taints nvidia.com/gpu=true:NO_SCHEDULE",
        "{first}"
    );
    let (analytics, next) = row(first, "analytics-etl");
    assert_eq!(
        analytics[1..6],
        [
            "analytics",
            "us-east-1",
            "analytics-etl",
            "UNHEALTHY",
            "2/3"
        ],
        "{first}"
    );
    assert_eq!(
        analytics[6..].join(" "),
        format!("Agent not reporting:1 of 3 nodes have no heartbeat within 10s: {gpu_node}"),
        "{first}"
    );
    assert_eq!(
        next.trim(),
        format!("nodes without agent: {gpu_node}"),
        "{first}"
    );
    let (sandbox, _) = row(first, "sandbox");
    assert_eq!(
        sandbox[1..6],
        ["sandbox", "-", "-", "DISABLED", "-"],
        "{first}"
    );
    assert!(
        sandbox
            .join(" ")
            .ends_with("runtime monitoring DISABLED (ACCOUNT_SETTING): not swept"),
        "{first}"
    );
    assert!(
        first.contains("clusters: 1 HEALTHY, 1 UNHEALTHY; nodes covered: 5/6"),
        "{first}"
    );
    let events = section(&stdout, "status changes after sweep 1");
    let summary = events.lines().next().unwrap_or_default();
    assert!(
        summary.starts_with("Peregrine Coverage Status Change: account ")
            && summary
                .ends_with(" cluster analytics-etl: (first seen) → UNHEALTHY, 2/3 nodes covered"),
        "{events}"
    );

    // Sweep 2: payments-prod's agents stopped.
    let second = section(&stdout, "coverage after sweep 2");
    let (payments, next) = row(second, "payments-prod");
    assert_eq!(payments[4..6], ["UNHEALTHY", "0/3"], "{second}");
    assert!(
        payments[6..]
            .join(" ")
            .starts_with("Agent not reporting:3 of 3 nodes have no heartbeat within 10s: "),
        "{second}"
    );
    assert!(
        next.trim().starts_with("nodes without agent: ip-10-10-1-"),
        "{second}"
    );
    let (analytics, _) = row(second, "analytics-etl");
    assert_eq!(analytics[4..6], ["UNHEALTHY", "2/3"], "unchanged: {second}");

    // Its event, and only its: analytics-etl stayed UNHEALTHY.
    let events = section(&stdout, "status changes after sweep 2");
    let summary = events.lines().next().unwrap_or_default();
    assert!(
        summary.starts_with("Peregrine Coverage Status Change: account ")
            && summary.ends_with(" cluster payments-prod: HEALTHY → UNHEALTHY, 0/3 nodes covered"),
        "{events}"
    );
    let json = &events[events.find("\n{").expect("the event in full") + 1..];
    let event: Value = serde_json::from_str(json).unwrap();
    assert_eq!(event["detail-type"], "Peregrine Coverage Status Change");
    assert_eq!(event["source"], "peregrine");
    let detail = &event["detail"];
    assert_eq!(detail["previousStatus"], "HEALTHY");
    assert_eq!(detail["currentStatus"], "UNHEALTHY");
    let cluster = &detail["resourceDetails"]["eksClusterDetails"];
    assert_eq!(cluster["clusterName"], "payments-prod");
    assert_eq!(cluster["coveredNodes"], 0);
    assert_eq!(
        cluster["nodesWithoutAgent"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        event["resources"][0],
        format!(
            "arn:aws:eks:us-east-1:{}:cluster/payments-prod",
            detail["resourceAccountId"].as_str().unwrap()
        )
    );
}

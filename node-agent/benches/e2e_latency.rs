#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark harness
//! Local end-to-end latency: from an action on the node to its finding on a queue an
//! EventBridge rule targets, through the real agent (eBPF, `run`), SQS, the detector run by the
//! local runner with the template's event-source settings, DynamoDB and EventBridge. moto
//! stands in for AWS. Root and moto are needed (scripts/setup).
//!
//!   cargo bench -p node-agent --bench e2e_latency [-- N]
//!
//! Each action runs its own copy of /bin/true named `nmap` (Execution:Runtime/SuspiciousTool,
//! aggregated by executable path), so each is a new finding and is published at once. Per
//! finding it reports:
//! - action → finding built: capture, agent batching (--batch-max-delay-ms, default 1 s), SQS
//!   (moto), the runner's poll, decode and detection;
//! - finding built → on the target queue: the DynamoDB transaction and PutEvents (moto), and the
//!   delivery to the rule's queue, as seen by a 1 s long poll.
//!
//! To separate moto's slowness from the product's, it also reports moto's own latency per API
//! call.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use common::{Agent, stack};
use peregrine_local::{
    ProvisionOptions, provision,
    runner::{Runner, RunnerOptions},
    template::Template,
};
use peregrine_testkit::moto::Moto;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    common::require_root();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start().unwrap();
    let sdk = rt.block_on(moto.sdk_config());

    let template = Template::load(&repo.join("template.yaml")).unwrap();
    let stack = rt
        .block_on(provision(&sdk, &template, &ProvisionOptions::default()))
        .unwrap();
    let bus = stack.buses.values().next().unwrap().clone();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let target = rt.block_on(stack::all_findings_queue(&sdk, &bus, "latency-findings"));

    // The template's event-source settings (batch size, batching window), a 20 s long poll.
    let options = RunnerOptions {
        wait_time: Duration::from_secs(20),
        ..RunnerOptions::from_stack(&stack)
    };
    println!(
        "event source: batch size {}, batching window {:?} (from template.yaml)",
        options.batch_size, options.batching_window
    );
    let runner = Runner::from_stack(&sdk, &stack, options).unwrap();
    let runner = stack::spawn_runner(&rt, runner);

    // The agent, with its shipped defaults (batches of up to 1 s).
    let queue_url = &stack.event_source_queue("DetectorFunction").unwrap().url;
    let spool = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "run",
        "--queue-url",
        queue_url,
        "--cluster-name",
        "bench",
        "--node-name",
        "node-1",
        "--spool-dir",
        spool.path().to_str().unwrap(),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut agent = Agent::start_with(&args, &moto.env());

    // moto's own latency per call, for the breakdown.
    let moto_call = rt.block_on(async {
        let t = Instant::now();
        for _ in 0..20 {
            sqs.get_queue_attributes()
                .queue_url(&target)
                .send()
                .await
                .unwrap();
        }
        t.elapsed() / 20
    });

    // The actions: a distinct `nmap` every 300 ms, from this host (container attribution is
    // covered by the e2e test; latency does not depend on it). The copies are made first.
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..n {
        let dir = tmp.path().join(i.to_string());
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy("/bin/true", dir.join("nmap")).unwrap();
    }
    let script = format!(
        "for i in $(seq 0 {last}); do {dir}/$i/nmap; sleep 0.3; done",
        last = n - 1,
        dir = tmp.path().display()
    );
    let mut actions = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();

    let mut built = Vec::new();
    let mut delivered = Vec::new();
    let mut total = Vec::new();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64);
    while seen.len() < n && Instant::now() < deadline {
        for (env, at) in rt.block_on(stack::receive(&sqs, &target)) {
            let f = &env["detail"];
            if !seen.insert(f["id"].as_str().unwrap().to_string()) {
                continue;
            }
            let acted = stack::iso_to_system(f["service"]["eventFirstSeen"].as_str().unwrap());
            let created = stack::iso_to_system(f["createdAt"].as_str().unwrap());
            built.push(ms(created.duration_since(acted).unwrap_or_default()));
            delivered.push(ms(at.duration_since(created).unwrap_or_default()));
            total.push(ms(at.duration_since(acted).unwrap_or_default()));
        }
    }
    actions.wait().unwrap();
    agent.stop();
    runner.stop(&rt);
    assert!(!total.is_empty(), "no finding arrived: {}", agent.log());

    println!(
        "\n## local end-to-end latency, {} of {n} findings (ms)",
        total.len()
    );
    println!("{:<38} {:>8} {:>8} {:>8}", "", "p50", "p99", "max");
    for (name, v) in [
        ("action → finding built", &mut built),
        ("finding built → on the target queue", &mut delivered),
        ("action → on the target queue", &mut total),
    ] {
        let max = v.iter().cloned().fold(0.0, f64::max);
        println!(
            "{name:<38} {:>8.0} {:>8.0} {:>8.0}",
            pct(v, 0.5),
            pct(v, 0.99),
            max
        );
    }
    println!(
        "moto: {:.1} ms per SQS API call through the SDK",
        ms(moto_call)
    );
}

//! End to end, on this machine: real eBPF capture of a real container, the agent shipping to
//! SQS, the detector and publisher (run by the local runner, as Lambda's event-source mapping
//! and schedule would), DynamoDB, EventBridge, and a queue an EventBridge rule targets. moto
//! stands in for AWS. The scenarios are declarative: tests/e2e/scenarios/*.yaml.
//! Needs root, containerd, runc, busybox-static and moto (scripts/setup).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{Agent, Containerd, busybox_rootfs, pod, run_in_kubelet_cgroup, stack};
use peregrine_local::{
    ProvisionOptions, provision,
    runner::{Runner, RunnerOptions},
    template::Template,
};
use peregrine_testkit::moto::Moto;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Scenario {
    name: String,
    trigger: String,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
struct Expect {
    #[serde(rename = "type")]
    finding_type: String,
    severity: f64,
    process: String,
    #[serde(default)]
    context: BTreeMap<String, String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scenarios() -> Vec<Scenario> {
    let dir = repo().join("tests/e2e/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            serde_yaml_ng::from_str(&std::fs::read_to_string(p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

#[test]
fn container_attacks_become_findings_on_an_eventbridge_target() {
    common::require_root();
    let scenarios = scenarios();
    assert!(
        scenarios.len() >= 3,
        "scenarios: {:?}",
        scenarios.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start().unwrap();
    let sdk = rt.block_on(moto.sdk_config());

    // The stack, exactly as the template declares it, and the runner doing Lambda's job.
    let template = Template::load(&repo().join("template.yaml")).unwrap();
    let options = ProvisionOptions {
        prefix: "e2e".into(),
        ..ProvisionOptions::default()
    };
    let stack = rt.block_on(provision(&sdk, &template, &options)).unwrap();
    let bus = stack
        .buses
        .values()
        .next()
        .expect("the template declares a findings bus")
        .clone();
    let target = rt.block_on(stack::all_findings_queue(&sdk, &bus, "e2e-all-findings"));
    let runner_options = RunnerOptions {
        wait_time: Duration::from_secs(1),
        batching_window: Duration::ZERO,
        publish_interval: Duration::from_secs(2),
        ..RunnerOptions::from_stack(&stack)
    };
    let runner = Runner::from_stack(&sdk, &stack, runner_options).unwrap();
    let runner = stack::spawn_runner(&rt, runner);
    let queue_url = stack
        .event_source_queue("DetectorFunction")
        .expect("the detector's queue")
        .url
        .clone();

    // The node: containerd and the agent shipping to the events queue.
    let cd = Containerd::start();
    let spool = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "run",
        "--queue-url",
        &queue_url,
        "--cluster-name",
        "e2e-cluster",
        "--node-name",
        "node-1",
        "--spool-dir",
        spool.path().to_str().unwrap(),
        "--batch-max-delay-ms",
        "100",
        "--containerd-socket",
        cd.socket.to_str().unwrap(),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut agent = Agent::start_with(&args, &moto.env());

    // The attacks, in one pod's container with a kubelet-style cgroup.
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let p = pod();
    let script = scenarios
        .iter()
        .map(|s| format!("( {} )", s.trigger))
        .collect::<Vec<_>>()
        .join("; ");
    let _cleanup = run_in_kubelet_cgroup(&cd, &rootfs, &p, &script);

    // Every expected finding arrives on the target queue.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut found: BTreeMap<String, (serde_json::Value, std::time::SystemTime)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while found.len() < scenarios.len() {
        assert!(
            Instant::now() < deadline,
            "findings still missing: {:?}\nagent log:\n{}",
            scenarios
                .iter()
                .filter(|s| !found.contains_key(&s.expect.finding_type))
                .map(|s| &s.name)
                .collect::<Vec<_>>(),
            agent.log()
        );
        for (env, at) in rt.block_on(stack::receive(&sqs, &target)) {
            let detail = &env["detail"];
            if detail["resource"]["containerDetails"]["id"] == p.cid.as_str() {
                found
                    .entry(detail["type"].as_str().unwrap().to_string())
                    .or_insert((env.clone(), at));
            }
        }
    }

    println!("\naction → finding on the EventBridge target queue (moto, debug build):");
    for s in &scenarios {
        let (env, at) = &found[&s.expect.finding_type];
        assert_eq!(env["source"], "peregrine");
        assert_eq!(env["detail-type"], "Peregrine Finding");
        let f = &env["detail"];
        assert_eq!(f["schemaVersion"], "2.0");
        assert_eq!(
            f["severity"].as_f64().unwrap(),
            s.expect.severity,
            "{}",
            s.name
        );
        assert_eq!(f["resource"]["resourceType"], "EKSCluster");
        assert_eq!(f["resource"]["eksClusterDetails"]["name"], "e2e-cluster");
        let w = &f["resource"]["kubernetesDetails"]["kubernetesWorkloadDetails"];
        assert_eq!(w["name"], p.name.as_str(), "{}: pod name", s.name);
        assert_eq!(
            w["namespace"],
            p.namespace.as_str(),
            "{}: namespace",
            s.name
        );
        assert_eq!(w["uid"], p.uid.as_str(), "{}: pod uid", s.name);
        assert_eq!(
            f["resource"]["containerDetails"]["name"],
            p.container.as_str()
        );
        let proc_ = &f["service"]["runtimeDetails"]["process"];
        assert_eq!(
            proc_["executablePath"],
            s.expect.process.as_str(),
            "{}: process",
            s.name
        );
        let lineage = proc_["lineage"].as_array().unwrap();
        assert!(!lineage.is_empty(), "{}: lineage", s.name);
        assert!(
            lineage.iter().any(|a| a["executablePath"]
                .as_str()
                .unwrap_or("")
                .contains("containerd-shim")),
            "{}: lineage reaches the runtime shim: {lineage:?}",
            s.name
        );
        for (k, v) in &s.expect.context {
            assert_eq!(
                f["service"]["runtimeDetails"]["context"][k],
                v.as_str(),
                "{}: context.{k}",
                s.name
            );
        }
        assert_eq!(f["service"]["featureName"], "RuntimeMonitoring");
        assert!(
            !f["service"]["detection"]["rule"]["evidence"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let acted = stack::iso_to_system(f["service"]["eventFirstSeen"].as_str().unwrap());
        let latency = at.duration_since(acted).unwrap_or_default();
        println!(
            "  {:<26} {:>6} ms  ({})",
            s.name,
            latency.as_millis(),
            s.expect.finding_type
        );
    }

    assert!(agent.stop().success());
    runner.stop(&rt);
}

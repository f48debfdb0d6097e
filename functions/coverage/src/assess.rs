//! The coverage of one cluster: its nodes (from EC2) against its agents' heartbeats (from
//! HeartbeatsTable) and their previous rows (for drops since the last sweep). Pure: the sweep
//! gathers the inputs and stores the outputs.
//!
//! A node is
//! - **not counted** when it is a Windows node (no agent runs there), or was launched within the
//!   staleness window and has not reported yet (`startingNodes`);
//! - **covered** when its agent's latest heartbeat was received within the staleness window;
//!   it is then `DEGRADED` when the agent reports probes that failed to attach, blinding
//!   reasons, or drops since the last sweep, and `UNHEALTHY` when the agent is older than the
//!   minimum version;
//! - **without an agent** otherwise: `UNHEALTHY`, "Agent not reporting".
//!
//! The cluster's issues summarise its nodes' (plus any the sweep adds: a missing VPC endpoint,
//! agent management), and its status is the worst of them.

use std::collections::BTreeMap;
use std::time::Duration;

use peregrine_event::Timestamp;
use peregrine_org::coverage::{
    ClusterCoverage, CoverageStatus, Issue, IssueKind, MAX_LISTED_NODES, ManagementType,
    NodeCoverage, rank, status_of,
};
use peregrine_org::inventory::{ClusterInventory, NodeInventory};
use peregrine_org::text::{bounded, list};
use peregrine_store::{HeartbeatRecord, parse_iso};

/// Most bytes of an agent version kept.
const MAX_VERSION: usize = 64;
/// Most bytes of a node name kept.
const MAX_NODE_NAME: usize = 253;
/// Node names named in one issue.
const NAMED_IN_ISSUE: usize = 5;

/// The thresholds the assessment applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// A heartbeat older than this (by the detector's receive time) is not recent.
    pub stale_after: Duration,
    /// Agents older than this are out of date.
    pub minimum_version: Option<semver::Version>,
}

// In peregrine-org, which the API shares.
pub use peregrine_org::coverage::{oldest_version, parse_version};

/// One node's findings.
struct NodeState {
    row: NodeCoverage,
    issues: Vec<Issue>,
    reporting: bool,
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    let ns = now.unix_nanos().saturating_sub(then.unix_nanos());
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// The heartbeat row of `node`: the most recently received one naming it.
fn heartbeat_of<'h>(
    node: &NodeInventory,
    heartbeats: &'h [HeartbeatRecord],
) -> Option<&'h HeartbeatRecord> {
    heartbeats
        .iter()
        .filter(|h| node.is_named(&h.node_name))
        .max_by(|a, b| a.received_at.cmp(&b.received_at))
}

fn received(h: &HeartbeatRecord) -> Option<Timestamp> {
    parse_iso(&h.received_at).or_else(|| parse_iso(&h.last_seen))
}

fn drops_of(h: &HeartbeatRecord) -> [u64; 4] {
    [
        h.kernel_ringbuf_full,
        h.kernel_no_scratch,
        h.user_queue_full,
        h.spool_dropped,
    ]
}

/// Events lost since `previous` (the last sweep's counters): the difference, or all of the
/// current counters when the agent restarted (its counters start again from 0).
fn new_drops(current: [u64; 4], uptime: u64, previous: Option<&NodeCoverage>) -> u64 {
    let Some(p) = previous else { return 0 };
    let restarted = p.agent_uptime_seconds.is_some_and(|u| uptime < u)
        || current.iter().zip(p.drops.iter()).any(|(c, p)| c < p);
    if restarted {
        current.iter().sum()
    } else {
        current.iter().zip(p.drops.iter()).map(|(c, p)| c - p).sum()
    }
}

/// Failed probes' programs from the heartbeat's probes JSON (`[{program, target, state,
/// error}]`).
fn failed_probes(json: &str) -> Vec<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(json)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.get("state").and_then(|s| s.as_str()) == Some("failed"))
        .filter_map(|p| p.get("program").and_then(|s| s.as_str()))
        .map(|p| bounded(p, 64))
        .collect()
}

/// Blinding reason codes from the heartbeat's `blindingReasons` (`[{code, detail}]`).
fn blinding_codes(json: &str) -> Vec<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("code").and_then(|s| s.as_str()))
        .map(|c| bounded(c, 64))
        .collect()
}

fn assess_node(
    cluster: &ClusterInventory,
    node: &NodeInventory,
    heartbeats: &[HeartbeatRecord],
    previous: Option<&NodeCoverage>,
    t: &Thresholds,
    now: Timestamp,
) -> NodeState {
    let hb = heartbeat_of(node, heartbeats);
    let last = hb.and_then(received);
    let reporting = last.is_some_and(|at| age(now, at) <= t.stale_after);
    let display_name = hb
        .map(|h| bounded(&h.node_name, MAX_NODE_NAME))
        .or_else(|| node.private_dns_name.clone())
        .unwrap_or_else(|| node.instance_id.clone());
    let mut row = NodeCoverage {
        account_id: cluster.account_id.clone(),
        region: cluster.region.clone(),
        cluster_name: cluster.name.clone(),
        instance_id: node.instance_id.clone(),
        node_name: Some(display_name),
        nodegroup: node.nodegroup.clone(),
        instance_type: node.instance_type.clone(),
        coverage_status: CoverageStatus::Healthy,
        issue: None,
        counted: true,
        last_heartbeat_at: last,
        agent_version: hb.map(|h| bounded(&h.agent_version, MAX_VERSION)),
        drops: hb.map(drops_of).unwrap_or_default(),
        agent_uptime_seconds: hb.map(|h| h.uptime_seconds),
        launch_time: node.launch_time,
        updated_at: now,
    };
    let mut issues = Vec::new();
    if !node.is_compatible() {
        row.counted = false;
        return NodeState {
            row,
            issues,
            reporting: false,
        };
    }
    if !reporting {
        let starting = node
            .launch_time
            .is_some_and(|l| age(now, l) <= t.stale_after);
        if starting {
            row.counted = false;
            return NodeState {
                row,
                issues,
                reporting: false,
            };
        }
        let since = match last {
            Some(at) => format!("last heartbeat {at}"),
            None => "no heartbeat ever".to_owned(),
        };
        let taints = cluster
            .nodegroup(node)
            .filter(|g| !g.taints.is_empty())
            .map(|g| {
                let t: Vec<String> = g
                    .taints
                    .iter()
                    .map(|t| match &t.value {
                        Some(v) => format!("{}={v}:{}", t.key, t.effect),
                        None => format!("{}:{}", t.key, t.effect),
                    })
                    .collect();
                format!("; node group {} has taints {}", g.name, list(&t, 3))
            })
            .unwrap_or_default();
        issues.push(Issue::new(
            IssueKind::AgentNotReporting,
            format!("{since}{taints}"),
        ));
    } else if let Some(h) = hb {
        if let Some(min) = &t.minimum_version {
            match parse_version(&h.agent_version) {
                Some(v) if v >= *min => {}
                Some(v) => issues.push(Issue::new(
                    IssueKind::AgentOutOfDate,
                    format!("agent {v}, older than {min}"),
                )),
                None => issues.push(Issue::new(
                    IssueKind::AgentOutOfDate,
                    format!(
                        "agent version {:?} is not a version (minimum {min})",
                        bounded(&h.agent_version, MAX_VERSION)
                    ),
                )),
            }
        }
        if h.probes_failed > 0 {
            let names = failed_probes(&h.probes_json);
            issues.push(Issue::new(
                IssueKind::ProbesFailed,
                format!("{} probes failed: {}", h.probes_failed, list(&names, 5)),
            ));
        }
        for code in blinding_codes(&h.blinding_json) {
            let kind = match code.as_str() {
                "sustained_drops" => IssueKind::EventsDropped,
                "probes_failed" | "probes_detached" => IssueKind::ProbesFailed,
                "restart_loop" => IssueKind::AgentRestarting,
                _ => IssueKind::AgentBlinded,
            };
            issues.push(Issue::new(kind, format!("the agent reports {code}")));
        }
        let dropped = new_drops(drops_of(h), h.uptime_seconds, previous);
        if dropped > 0 {
            issues.push(Issue::new(
                IssueKind::EventsDropped,
                format!("{dropped} events dropped since the last sweep"),
            ));
        }
    }
    let issues = rank(issues);
    row.coverage_status = status_of(&issues);
    row.issue = issues.first().map(Issue::text);
    NodeState {
        row,
        issues,
        reporting,
    }
}

/// The nodes named in an issue, and how many there are.
fn named(nodes: &[&NodeState]) -> String {
    let names: Vec<&str> = nodes
        .iter()
        .map(|n| n.row.node_name.as_deref().unwrap_or(&n.row.instance_id))
        .collect();
    list(&names, NAMED_IN_ISSUE)
}

/// Assesses `cluster`. `previous` are its node rows from the last sweep; `extra` are issues the
/// sweep found for the cluster as a whole.
pub fn assess(
    cluster: &ClusterInventory,
    heartbeats: &[HeartbeatRecord],
    previous: &[NodeCoverage],
    extra: Vec<Issue>,
    management: ManagementType,
    t: &Thresholds,
    now: Timestamp,
) -> (ClusterCoverage, Vec<NodeCoverage>) {
    let nodes: Vec<NodeState> = cluster
        .nodes
        .iter()
        .map(|n| {
            let prev = previous.iter().find(|p| p.instance_id == n.instance_id);
            assess_node(cluster, n, heartbeats, prev, t, now)
        })
        .collect();
    let counted: Vec<&NodeState> = nodes.iter().filter(|n| n.row.counted).collect();
    let compatible = counted.len() as u64;
    let missing: Vec<&NodeState> = counted.iter().copied().filter(|n| !n.reporting).collect();
    let covered = compatible - missing.len() as u64;
    let with = |kind: IssueKind| -> Vec<&NodeState> {
        counted
            .iter()
            .copied()
            .filter(|n| n.reporting && n.issues.iter().any(|i| i.kind == kind))
            .collect()
    };
    let mut issues = extra;
    if !missing.is_empty() {
        issues.push(Issue::new(
            IssueKind::AgentNotReporting,
            format!(
                "{} of {compatible} nodes have no heartbeat within {}s: {}",
                missing.len(),
                t.stale_after.as_secs(),
                named(&missing)
            ),
        ));
    }
    for (kind, what) in [
        (
            IssueKind::AgentOutOfDate,
            "run an agent older than the minimum",
        ),
        (IssueKind::ProbesFailed, "have probes that failed to attach"),
        (IssueKind::EventsDropped, "are dropping events"),
        (IssueKind::AgentRestarting, "have agents in a restart loop"),
        (IssueKind::AgentBlinded, "report themselves blind"),
    ] {
        let affected = with(kind);
        if !affected.is_empty() {
            let first = affected
                .iter()
                .flat_map(|n| n.issues.iter())
                .find(|i| i.kind == kind)
                .map(|i| i.detail.clone())
                .unwrap_or_default();
            issues.push(Issue::new(
                kind,
                format!(
                    "{} of {compatible} nodes {what} ({}; first: {first})",
                    affected.len(),
                    named(&affected)
                ),
            ));
        }
    }
    let issues = rank(issues);
    let status = status_of(&issues);
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for n in counted.iter().filter(|n| n.reporting) {
        if let Some(v) = &n.row.agent_version {
            *versions.entry(v.clone()).or_default() += 1;
        }
    }
    let coverage = ClusterCoverage {
        account_id: cluster.account_id.clone(),
        region: cluster.region.clone(),
        cluster_name: cluster.name.clone(),
        cluster_arn: cluster.arn.clone(),
        kubernetes_version: cluster.version.clone(),
        coverage_status: status,
        issue: issues.first().map(Issue::text),
        issues,
        covered_nodes: covered,
        compatible_nodes: compatible,
        degraded_nodes: counted
            .iter()
            .filter(|n| n.reporting && n.row.coverage_status == CoverageStatus::Degraded)
            .count() as u64,
        starting_nodes: nodes
            .iter()
            .filter(|n| !n.row.counted && cluster_node_compatible(cluster, &n.row.instance_id))
            .count() as u64,
        incompatible_nodes: cluster.nodes.iter().filter(|n| !n.is_compatible()).count() as u64,
        desired_nodes: cluster.desired_nodes(),
        nodes_without_agent: missing
            .iter()
            .take(MAX_LISTED_NODES)
            .map(|n| {
                n.row
                    .node_name
                    .clone()
                    .unwrap_or_else(|| n.row.instance_id.clone())
            })
            .collect(),
        agent_versions: versions,
        management_type: management,
        updated_at: now,
    };
    (coverage, nodes.into_iter().map(|n| n.row).collect())
}

fn cluster_node_compatible(cluster: &ClusterInventory, instance: &str) -> bool {
    cluster
        .nodes
        .iter()
        .any(|n| n.instance_id == instance && n.is_compatible())
}

#[cfg(test)]
mod tests {
    use super::*;
    use peregrine_org::inventory::{NodegroupInventory, Taint};
    use peregrine_store::{Coverage, iso};

    const S: i64 = 1_000_000_000;

    fn now() -> Timestamp {
        Timestamp::from_unix_nanos(1_764_000_000 * S)
    }

    fn ago(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(now().unix_nanos() - secs * S)
    }

    fn node(i: u32, launched_secs_ago: i64) -> NodeInventory {
        NodeInventory {
            instance_id: format!("i-{i:04}"),
            private_dns_name: Some(format!("ip-10-0-0-{i}.ec2.internal")),
            state: "running".into(),
            launch_time: Some(ago(launched_secs_ago)),
            nodegroup: Some("ng".into()),
            ..NodeInventory::default()
        }
    }

    fn cluster(nodes: Vec<NodeInventory>) -> ClusterInventory {
        ClusterInventory {
            account_id: "111111111111".into(),
            region: "eu-west-1".into(),
            name: "prod".into(),
            arn: "arn:aws:eks:eu-west-1:111111111111:cluster/prod".into(),
            nodegroups: vec![NodegroupInventory {
                name: "ng".into(),
                desired_size: Some(3),
                taints: vec![Taint {
                    key: "gpu".into(),
                    value: Some("true".into()),
                    effect: "NO_SCHEDULE".into(),
                }],
                ..NodegroupInventory::default()
            }],
            nodes,
            ..ClusterInventory::default()
        }
    }

    fn hb(i: u32, received_secs_ago: i64) -> HeartbeatRecord {
        HeartbeatRecord {
            cluster_name: "prod".into(),
            cluster_arn: None,
            node_name: format!("ip-10-0-0-{i}.ec2.internal"),
            agent_id: format!("agent-{i}"),
            agent_version: "0.2.0".into(),
            kernel_release: "6.1".into(),
            last_seen: iso(ago(received_secs_ago)),
            received_at: iso(ago(received_secs_ago)),
            probes_json: "[]".into(),
            probes_attached: 20,
            probes_failed: 0,
            kernel_ringbuf_full: 0,
            kernel_no_scratch: 0,
            user_queue_full: 0,
            spool_dropped: 0,
            spool_messages: 0,
            spool_bytes: 0,
            events_sent: 10,
            uptime_seconds: 1000,
            next_sequence: 1,
            coverage: Coverage::Healthy,
            blinding_json: "[]".into(),
            expires_at: 0,
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            stale_after: Duration::from_secs(180),
            minimum_version: parse_version("0.2.0"),
        }
    }

    fn run(
        c: &ClusterInventory,
        hbs: &[HeartbeatRecord],
        prev: &[NodeCoverage],
    ) -> (ClusterCoverage, Vec<NodeCoverage>) {
        assess(
            c,
            hbs,
            prev,
            Vec::new(),
            ManagementType::Manual,
            &thresholds(),
            now(),
        )
    }

    #[test]
    fn every_node_reporting_is_healthy() {
        let c = cluster(vec![node(1, 9000), node(2, 9000)]);
        let (cov, nodes) = run(&c, &[hb(1, 30), hb(2, 60)], &[]);
        assert_eq!(
            cov.coverage_status,
            CoverageStatus::Healthy,
            "{:?}",
            cov.issues
        );
        assert_eq!((cov.covered_nodes, cov.compatible_nodes), (2, 2));
        assert_eq!(cov.issue, None);
        assert_eq!(cov.agent_versions.get("0.2.0"), Some(&2));
        assert_eq!(cov.desired_nodes, Some(3));
        assert!(
            nodes
                .iter()
                .all(|n| n.coverage_status == CoverageStatus::Healthy)
        );
    }

    #[test]
    fn a_node_without_a_recent_heartbeat_makes_the_cluster_unhealthy() {
        let c = cluster(vec![node(1, 9000), node(2, 9000), node(3, 9000)]);
        // Node 2's last heartbeat is stale, node 3 never reported.
        let (cov, nodes) = run(&c, &[hb(1, 30), hb(2, 600)], &[]);
        assert_eq!(cov.coverage_status, CoverageStatus::Unhealthy);
        assert_eq!((cov.covered_nodes, cov.compatible_nodes), (1, 3));
        assert_eq!(
            cov.nodes_without_agent,
            vec!["ip-10-0-0-2.ec2.internal", "ip-10-0-0-3.ec2.internal"]
        );
        let issue = cov.issue.unwrap();
        assert!(
            issue.starts_with("Agent not reporting:2 of 3 nodes have no heartbeat within 180s"),
            "{issue}"
        );
        let n3 = nodes.iter().find(|n| n.instance_id == "i-0003").unwrap();
        assert_eq!(n3.coverage_status, CoverageStatus::Unhealthy);
        let i3 = n3.issue.as_deref().unwrap();
        assert!(i3.contains("no heartbeat ever"), "{i3}");
        assert!(i3.contains("taints gpu=true:NO_SCHEDULE"), "{i3}");
    }

    #[test]
    fn new_and_windows_nodes_are_not_counted() {
        let mut win = node(4, 9000);
        win.platform = Some("windows".into());
        let c = cluster(vec![node(1, 9000), node(2, 60), win]);
        let (cov, _) = run(&c, &[hb(1, 30)], &[]);
        assert_eq!(
            cov.coverage_status,
            CoverageStatus::Healthy,
            "{:?}",
            cov.issues
        );
        assert_eq!((cov.covered_nodes, cov.compatible_nodes), (1, 1));
        assert_eq!((cov.starting_nodes, cov.incompatible_nodes), (1, 1));
        // Once the new node is older than the window it counts.
        let c = cluster(vec![node(1, 9000), node(2, 600)]);
        let (cov, _) = run(&c, &[hb(1, 30)], &[]);
        assert_eq!(cov.coverage_status, CoverageStatus::Unhealthy);
    }

    #[test]
    fn probes_blinding_and_new_drops_degrade() {
        let c = cluster(vec![node(1, 9000), node(2, 9000), node(3, 9000)]);
        let mut h1 = hb(1, 30);
        h1.probes_failed = 1;
        h1.probes_json = r#"[{"program":"sched_process_exec","state":"failed","error":"x"},{"program":"openat","state":"attached"}]"#.into();
        let mut h2 = hb(2, 30);
        h2.blinding_json = r#"[{"code":"restart_loop","detail":"3 starts"}]"#.into();
        let mut h3 = hb(3, 30);
        h3.kernel_ringbuf_full = 150;
        let (first, rows) = run(&c, &[h1.clone(), h2.clone(), h3.clone()], &[]);
        assert_eq!(first.coverage_status, CoverageStatus::Degraded);
        assert_eq!(first.degraded_nodes, 2, "{:?}", first.issues);
        let kinds: Vec<IssueKind> = first.issues.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            vec![IssueKind::ProbesFailed, IssueKind::AgentRestarting]
        );
        assert!(
            first.issues[0].detail.contains("sched_process_exec"),
            "{:?}",
            first.issues
        );
        // The drops seen at the first sweep are the baseline; more since then degrade.
        h3.kernel_ringbuf_full = 170;
        h3.user_queue_full = 5;
        let (second, _) = run(&c, &[hb(1, 30), hb(2, 30), h3.clone()], &rows);
        assert_eq!(second.coverage_status, CoverageStatus::Degraded);
        assert_eq!(
            second.issue.as_deref(),
            Some(
                "Events being dropped:1 of 3 nodes are dropping events (ip-10-0-0-3.ec2.internal; first: 25 events dropped since the last sweep)"
            )
        );
        // No new drops: healthy again.
        let (_, rows) = run(&c, &[hb(1, 30), hb(2, 30), h3.clone()], &rows);
        let (third, _) = run(&c, &[hb(1, 30), hb(2, 30), h3.clone()], &rows);
        assert_eq!(
            third.coverage_status,
            CoverageStatus::Healthy,
            "{:?}",
            third.issues
        );
        // A restart (uptime went down) counts everything since it.
        let mut restarted = h3.clone();
        restarted.uptime_seconds = 10;
        restarted.kernel_ringbuf_full = 3;
        restarted.user_queue_full = 0;
        let (fourth, _) = run(&c, &[hb(1, 30), hb(2, 30), restarted], &rows);
        assert!(
            fourth
                .issue
                .as_deref()
                .unwrap()
                .contains("3 events dropped"),
            "{:?}",
            fourth.issue
        );
    }

    #[test]
    fn old_or_unreadable_agent_versions_are_out_of_date() {
        let c = cluster(vec![node(1, 9000), node(2, 9000)]);
        let mut old = hb(1, 30);
        old.agent_version = "0.1.9".into();
        let mut odd = hb(2, 30);
        odd.agent_version = "\u{1b}[31mevil\n".repeat(40);
        let (cov, nodes) = run(&c, &[old, odd], &[]);
        assert_eq!(cov.coverage_status, CoverageStatus::Unhealthy);
        assert_eq!((cov.covered_nodes, cov.compatible_nodes), (2, 2));
        let issue = cov.issue.clone().unwrap();
        assert!(
            issue.starts_with("Agent out of date:2 of 2 nodes"),
            "{issue}"
        );
        assert!(
            !issue.contains('\n') && !issue.contains('\u{1b}'),
            "{issue}"
        );
        assert!(
            nodes
                .iter()
                .all(|n| n.agent_version.as_ref().unwrap().len() <= MAX_VERSION)
        );
        assert_eq!(oldest_version(&cov).as_deref(), Some("0.1.9"));
    }

    #[test]
    fn heartbeats_by_instance_id_count_and_extra_issues_are_kept() {
        let c = cluster(vec![node(1, 9000)]);
        let mut by_id = hb(1, 30);
        by_id.node_name = "i-0001.eu-west-1.compute.internal".into();
        let extra = vec![Issue::new(IssueKind::VpcEndpointMissing, "vpc-1 has none")];
        let (cov, _) = assess(
            &c,
            &[by_id],
            &[],
            extra,
            ManagementType::AutoManaged,
            &thresholds(),
            now(),
        );
        assert_eq!((cov.covered_nodes, cov.compatible_nodes), (1, 1));
        assert_eq!(
            cov.issue.as_deref(),
            Some("VPC endpoint missing:vpc-1 has none")
        );
        assert_eq!(cov.management_type, ManagementType::AutoManaged);
    }
}

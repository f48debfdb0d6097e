//! What the sweeper reports, shaped like GuardDuty's coverage (`ListCoverage`'s
//! `CoverageResource` with `CoverageEksClusterDetails`, `GetCoverageStatistics`, the
//! coverage-change event; `../shared/reference/guardduty-runtime.md` §3.4 and §4):
//!
//! - a cluster is `HEALTHY`, `UNHEALTHY` (a node without a reporting agent, an agent out of
//!   date, a missing VPC endpoint, agent management failing) or `DEGRADED` (agents report but
//!   see less than they should: probes not attached, events dropped, a restart loop), with the
//!   issue that matters most as `Issue type:Extra information`, and covered against compatible
//!   nodes;
//! - each node likewise, with its last heartbeat;
//! - each account: swept, failed (with the reason: authorization, throttling, a region not
//!   enabled), disabled or inactive;
//! - statistics: counts by status and by account;
//! - [`StatusChange`]: the event a cluster's change of status publishes once.

use std::collections::BTreeMap;

use peregrine_event::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::{Management, Monitoring, Reason};
use crate::names;
use crate::text::bounded;

/// Most bytes of an issue's extra information.
pub const MAX_ISSUE_DETAIL: usize = 480;
/// Most issues kept per cluster or account (the worst first).
pub const MAX_ISSUES: usize = 10;
/// Most node names listed in a cluster's `nodesWithoutAgent`.
pub const MAX_LISTED_NODES: usize = 20;

names! {
    /// A cluster's or node's coverage. Declared from best to worst, so `max` is the worst.
    pub enum CoverageStatus ("coverageStatus") {
        Healthy = "HEALTHY",
        Degraded = "DEGRADED",
        Unhealthy = "UNHEALTHY",
    }
}

names! {
    /// GuardDuty's `ManagementType` for a cluster.
    pub enum ManagementType ("managementType") {
        AutoManaged = "AUTO_MANAGED",
        Manual = "MANUAL",
    }
}

names! {
    /// The "Issue type" half of an issue string, GuardDuty's where one applies.
    pub enum IssueKind ("issueType") {
        /// Nodes without a heartbeat within the staleness window (GuardDuty's ECS and EC2
        /// coverage say "Agent not reporting").
        AgentNotReporting = "Agent not reporting",
        /// The deployment requires agents to send through an SQS VPC endpoint
        /// (`AllowedSourceVpce`) and the cluster's VPC has none that is allowed.
        VpcEndpointMissing = "VPC endpoint missing",
        /// Agents older than the minimum version.
        AgentOutOfDate = "Agent out of date",
        /// The agent manager could not do its job in the cluster (any failure without a
        /// kind of its own below).
        ManagementFailed = "Agent management failed",
        /// Automatic management (`crates/manage`): the SQS endpoint could not be made (a
        /// VPC's DNS attributes off, a shared VPC), as in GuardDuty.
        VpcEndpointCreationFailed = "VPC Endpoint Creation Failed",
        /// The endpoint of a VPC whose last covered cluster left could not be removed yet.
        VpcEndpointDeletionFailed = "VPC Endpoint Deletion Failed",
        /// The agent's service account has another principal's Pod Identity association, or
        /// IRSA without an OIDC issuer.
        AgentIdentityConflict = "Agent Identity Conflict",
        AgentIdentityCreationFailed = "Agent Identity Creation Failed",
        /// Pod Identity needs the `eks-pod-identity-agent` add-on (or EKS Auto Mode).
        PodIdentityAgentMissing = "Pod Identity Agent Missing",
        /// The cluster takes no access entries (authentication mode `CONFIG_MAP`).
        KubernetesAccessNotGranted = "Kubernetes Access Not Granted",
        KubernetesAccessCreationFailed = "Kubernetes Access Creation Failed",
        /// A new access entry has not reached the API server yet; the next sweep carries on.
        ProvisioningInProgress = "Agent provisioning in progress",
        /// The DaemonSet's objects could not be applied (the API server unreachable, an
        /// object in the way that Peregrine did not create).
        AgentCreationFailed = "Agent Creation Failed",
        /// The member role lacks a permission management needs (its `AgentManagement`
        /// parameter off, or an SCP).
        ManagementPermissionNotGranted = "Agent management permission not granted",
        /// AUTO management asked for, but the sweeper is not configured for it (the
        /// template's `AgentImage`), or its configuration is invalid.
        ManagementMisconfigured = "Agent management misconfigured",
        /// Probes that failed to attach, or were found detached (degraded).
        ProbesFailed = "Probes failed to attach",
        /// Events lost since the last sweep, or sustained drops (degraded).
        EventsDropped = "Events being dropped",
        /// The agent keeps restarting (degraded).
        AgentRestarting = "Agent restart loop",
        /// A blinding reason this build does not know (degraded).
        AgentBlinded = "Agent blinded",
        /// The member role cannot be assumed, or a call was denied (GuardDuty: "Error due to
        /// authorization failure").
        AuthorizationFailure = "Authorization failure",
        /// The account's APIs kept throttling the sweep.
        Throttled = "Throttled",
        /// The region is not enabled in the account (an opt-in region).
        RegionNotEnabled = "Region not enabled",
        /// Any other failure listing the account's clusters and nodes.
        InventoryFailed = "Inventory failed",
        /// The sweep ran out of time before reaching the account.
        NotSwept = "Not swept",
    }
}

impl IssueKind {
    /// The status an issue of this kind gives a cluster.
    pub fn status(self) -> CoverageStatus {
        match self {
            IssueKind::ProbesFailed
            | IssueKind::EventsDropped
            | IssueKind::AgentRestarting
            | IssueKind::AgentBlinded => CoverageStatus::Degraded,
            _ => CoverageStatus::Unhealthy,
        }
    }
}

/// One issue: its kind and extra information, shown as `Issue type:Extra information`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    #[serde(rename = "type")]
    pub kind: IssueKind,
    pub detail: String,
}

impl Issue {
    /// `detail` is bounded to [`MAX_ISSUE_DETAIL`] bytes and defused.
    pub fn new(kind: IssueKind, detail: impl AsRef<str>) -> Issue {
        Issue {
            kind,
            detail: bounded(detail.as_ref(), MAX_ISSUE_DETAIL),
        }
    }

    pub fn status(&self) -> CoverageStatus {
        self.kind.status()
    }

    /// GuardDuty's form, `Issue type:Extra information`.
    pub fn text(&self) -> String {
        format!("{}:{}", self.kind, self.detail)
    }

    /// Reads [`Issue::text`] back.
    pub fn parse(text: &str) -> Option<Issue> {
        let (kind, detail) = text.split_once(':')?;
        Some(Issue::new(kind.parse().ok()?, detail))
    }
}

/// Worst first (by status, then kind), at most [`MAX_ISSUES`].
pub fn rank(mut issues: Vec<Issue>) -> Vec<Issue> {
    issues.sort_by(|a, b| b.status().cmp(&a.status()).then(a.kind.cmp(&b.kind)));
    issues.dedup();
    issues.truncate(MAX_ISSUES);
    issues
}

/// The worst status among `issues` (`HEALTHY` when there are none).
pub fn status_of(issues: &[Issue]) -> CoverageStatus {
    issues
        .iter()
        .map(Issue::status)
        .max()
        .unwrap_or(CoverageStatus::Healthy)
}

/// A cluster's row: GuardDuty's `CoverageResource` with `CoverageEksClusterDetails`, plus what
/// GuardDuty does not show (which nodes lack an agent, degraded nodes, versions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCoverage {
    pub account_id: String,
    pub region: String,
    pub cluster_name: String,
    pub cluster_arn: String,
    pub kubernetes_version: Option<String>,
    pub coverage_status: CoverageStatus,
    /// The worst issue, `Issue type:Extra information`; absent when healthy.
    pub issue: Option<String>,
    /// Every issue, worst first (at most [`MAX_ISSUES`]).
    pub issues: Vec<Issue>,
    /// Compatible nodes whose agent reported within the staleness window.
    pub covered_nodes: u64,
    /// Running Linux worker nodes old enough to have reported.
    pub compatible_nodes: u64,
    /// Covered nodes whose agent reports degraded coverage.
    pub degraded_nodes: u64,
    /// Nodes launched within the staleness window that have not reported yet (not counted).
    pub starting_nodes: u64,
    /// Windows nodes (no agent runs there; not counted).
    pub incompatible_nodes: u64,
    /// The managed node groups' desired sizes, summed.
    pub desired_nodes: Option<i64>,
    /// Compatible nodes without a recent heartbeat (their names, at most
    /// [`MAX_LISTED_NODES`]; `compatibleNodes - coveredNodes` says how many in all).
    pub nodes_without_agent: Vec<String>,
    /// Agent versions seen and how many nodes run each (bounded strings).
    pub agent_versions: BTreeMap<String, u64>,
    pub management_type: ManagementType,
    pub updated_at: Timestamp,
}

/// Reads an agent version (`0.1.0`, `v0.1.0`, `0.1.0-rc.1+sha`).
pub fn parse_version(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v.trim().trim_start_matches('v')).ok()
}

/// The oldest agent version among a cluster's (GuardDuty's `addonVersion`).
pub fn oldest_version(c: &ClusterCoverage) -> Option<String> {
    c.agent_versions
        .keys()
        .min_by(|a, b| match (parse_version(a), parse_version(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.cmp(b),
        })
        .cloned()
}

/// A node's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCoverage {
    pub account_id: String,
    pub region: String,
    pub cluster_name: String,
    pub instance_id: String,
    /// The node's name as its heartbeat gives it, else its private DNS name.
    pub node_name: Option<String>,
    pub nodegroup: Option<String>,
    pub instance_type: Option<String>,
    /// `HEALTHY`, `UNHEALTHY` (no recent heartbeat, or out of date) or `DEGRADED`.
    pub coverage_status: CoverageStatus,
    pub issue: Option<String>,
    /// Not counted against coverage: launched too recently to have reported, or Windows.
    pub counted: bool,
    /// When the detector stored the node's latest heartbeat.
    pub last_heartbeat_at: Option<Timestamp>,
    pub agent_version: Option<String>,
    /// The agent's cumulative loss counters as of its latest heartbeat (kernel ring buffer
    /// full, no scratch, user queue full, spool dropped), to tell new drops at the next sweep.
    pub drops: [u64; 4],
    pub agent_uptime_seconds: Option<u64>,
    pub launch_time: Option<Timestamp>,
    pub updated_at: Timestamp,
}

names! {
    /// What became of an account in a sweep.
    pub enum SweepState ("sweepState") {
        /// Every region swept.
        Swept = "SWEPT",
        /// Some regions failed; the others were swept.
        Partial = "PARTIAL",
        /// Nothing could be swept (the member role, throttling): the previous rows are kept.
        Failed = "FAILED",
        /// The sweep's deadline came first: the previous rows are kept.
        NotSwept = "NOT_SWEPT",
        /// Monitoring is off for the account.
        Disabled = "DISABLED",
        /// The account is not active in the organization (suspended, closing).
        Inactive = "INACTIVE",
    }
}

/// An account's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountCoverage {
    pub account_id: String,
    pub account_name: String,
    pub monitoring: Monitoring,
    pub management: Management,
    pub reason: Reason,
    pub sweep_state: SweepState,
    /// Why the account or some of its regions could not be swept, worst first; each detail
    /// starts with the region.
    pub issues: Vec<Issue>,
    /// Its clusters by status (swept ones, and kept rows of regions that failed).
    pub count_by_coverage_status: BTreeMap<CoverageStatus, u64>,
    /// Clusters tagged out (`peregrine:managed=false`) or outside an `INCLUDED_ONLY` scope.
    pub excluded_clusters: u64,
    pub updated_at: Timestamp,
}

/// `GetCoverageStatistics` for the whole organization, as of the latest sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageStatistics {
    pub count_by_coverage_status: BTreeMap<CoverageStatus, u64>,
    /// `{"EKS": clusters}`.
    pub count_by_resource_type: BTreeMap<String, u64>,
    /// Clusters by status for each account that has any.
    pub count_by_account: BTreeMap<String, BTreeMap<CoverageStatus, u64>>,
    /// Accounts by what the sweep did with them.
    pub count_by_sweep_state: BTreeMap<SweepState, u64>,
    pub covered_nodes: u64,
    pub compatible_nodes: u64,
    pub sweep_started_at: Option<Timestamp>,
    pub sweep_finished_at: Option<Timestamp>,
    /// Every enabled account was reached before the deadline.
    pub complete: bool,
}

/// The `detail` of a "Peregrine Coverage Status Change" event: GuardDuty's runtime coverage
/// event (`schemaVersion`, `resourceAccountId`, `currentStatus`, `previousStatus`,
/// `resourceDetails.eksClusterDetails`, `issue`, `lastUpdatedAt`; node counts as strings, as
/// there) with Peregrine's additions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub schema_version: String,
    pub resource_account_id: String,
    pub region: String,
    pub current_status: CoverageStatus,
    /// The status last published; `null` for a cluster seen for the first time.
    pub previous_status: Option<CoverageStatus>,
    pub resource_details: ResourceDetails,
    /// The worst issue, `""` when healthy.
    pub issue: String,
    pub issues: Vec<String>,
    pub last_updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDetails {
    /// `EKS`.
    pub resource_type: String,
    pub eks_cluster_details: EksClusterDetails,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EksClusterDetails {
    pub cluster_name: String,
    pub cluster_arn: String,
    /// Covered nodes, as a string (GuardDuty's `availableNodes`).
    pub available_nodes: String,
    /// Compatible nodes, as a string (GuardDuty's `desiredNodes`).
    pub desired_nodes: String,
    /// The oldest agent version running (GuardDuty's `addonVersion`); `""` when none reports.
    pub addon_version: String,
    pub covered_nodes: u64,
    pub compatible_nodes: u64,
    pub nodes_without_agent: Vec<String>,
    pub management_type: ManagementType,
}

/// The event's `source` and `detail-type`.
pub const EVENT_SOURCE: &str = "peregrine";
pub const EVENT_DETAIL_TYPE: &str = "Peregrine Coverage Status Change";

impl StatusChange {
    /// The event for `cluster` moving from `previous` (the status last published).
    pub fn new(
        cluster: &ClusterCoverage,
        previous: Option<CoverageStatus>,
        oldest_version: Option<&str>,
    ) -> StatusChange {
        StatusChange {
            schema_version: "1.0".into(),
            resource_account_id: cluster.account_id.clone(),
            region: cluster.region.clone(),
            current_status: cluster.coverage_status,
            previous_status: previous,
            resource_details: ResourceDetails {
                resource_type: "EKS".into(),
                eks_cluster_details: EksClusterDetails {
                    cluster_name: cluster.cluster_name.clone(),
                    cluster_arn: cluster.cluster_arn.clone(),
                    available_nodes: cluster.covered_nodes.to_string(),
                    desired_nodes: cluster.compatible_nodes.to_string(),
                    addon_version: oldest_version.unwrap_or_default().to_owned(),
                    covered_nodes: cluster.covered_nodes,
                    compatible_nodes: cluster.compatible_nodes,
                    nodes_without_agent: cluster.nodes_without_agent.clone(),
                    management_type: cluster.management_type,
                },
            },
            issue: cluster.issue.clone().unwrap_or_default(),
            issues: cluster.issues.iter().map(Issue::text).collect(),
            last_updated_at: cluster.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_read_as_guardduty_writes_them() {
        let i = Issue::new(IssueKind::AgentNotReporting, "2 of 5 nodes: ip-1, ip-2");
        assert_eq!(i.text(), "Agent not reporting:2 of 5 nodes: ip-1, ip-2");
        assert_eq!(Issue::parse(&i.text()), Some(i));
        assert_eq!(Issue::parse("Something else:x"), None);
        let long = Issue::new(IssueKind::AgentOutOfDate, "\n".repeat(10_000));
        assert!(long.detail.len() <= MAX_ISSUE_DETAIL);
        assert!(!long.detail.contains('\n'));
    }

    #[test]
    fn the_worst_issue_decides() {
        let dropped = Issue::new(IssueKind::EventsDropped, "x");
        let missing = Issue::new(IssueKind::AgentNotReporting, "y");
        assert_eq!(status_of(&[]), CoverageStatus::Healthy);
        assert_eq!(
            status_of(std::slice::from_ref(&dropped)),
            CoverageStatus::Degraded
        );
        let ranked = rank(vec![dropped.clone(), missing.clone(), dropped.clone()]);
        assert_eq!(ranked, vec![missing, dropped]);
        assert_eq!(status_of(&ranked), CoverageStatus::Unhealthy);
        assert!(CoverageStatus::Unhealthy > CoverageStatus::Degraded);
    }

    #[test]
    fn the_event_detail_is_shaped_like_guardduty() {
        let c = ClusterCoverage {
            account_id: "111111111111".into(),
            region: "eu-west-1".into(),
            cluster_name: "prod".into(),
            cluster_arn: "arn:aws:eks:eu-west-1:111111111111:cluster/prod".into(),
            kubernetes_version: Some("1.31".into()),
            coverage_status: CoverageStatus::Unhealthy,
            issue: Some("Agent not reporting:1 of 3 nodes".into()),
            issues: vec![Issue::new(IssueKind::AgentNotReporting, "1 of 3 nodes")],
            covered_nodes: 2,
            compatible_nodes: 3,
            degraded_nodes: 0,
            starting_nodes: 0,
            incompatible_nodes: 0,
            desired_nodes: Some(3),
            nodes_without_agent: vec!["ip-10-0-0-1.ec2.internal".into()],
            agent_versions: BTreeMap::from([("0.1.0".to_owned(), 2)]),
            management_type: ManagementType::Manual,
            updated_at: Timestamp::from_unix_nanos(1_764_000_000_000_000_000),
        };
        let e = serde_json::to_value(StatusChange::new(
            &c,
            Some(CoverageStatus::Healthy),
            Some("0.1.0"),
        ))
        .unwrap();
        assert_eq!(e["schemaVersion"], "1.0");
        assert_eq!(e["resourceAccountId"], "111111111111");
        assert_eq!(e["currentStatus"], "UNHEALTHY");
        assert_eq!(e["previousStatus"], "HEALTHY");
        assert_eq!(e["resourceDetails"]["resourceType"], "EKS");
        let d = &e["resourceDetails"]["eksClusterDetails"];
        assert_eq!(d["clusterName"], "prod");
        assert_eq!(d["availableNodes"], "2");
        assert_eq!(d["desiredNodes"], "3");
        assert_eq!(d["addonVersion"], "0.1.0");
        assert_eq!(e["issue"], "Agent not reporting:1 of 3 nodes");
        assert_eq!(e["lastUpdatedAt"], "2025-11-24T16:00:00Z");
        let first = serde_json::to_value(StatusChange::new(&c, None, None)).unwrap();
        assert!(first["previousStatus"].is_null());
    }
}

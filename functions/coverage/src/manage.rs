//! **Agent management.** For every swept cluster whose selection says *managed* (an account
//! whose management is `AUTO`, or a cluster tagged `peregrine:managed=true`), the sweep calls an
//! [`AgentManager`] with the member account's credentials and the cluster's inventory, before
//! assessing the cluster; its issues (a VPC endpoint that could not be created, DNS attributes
//! off, a DaemonSet apply refused) become the cluster's. Clusters that share a VPC are managed
//! one after the other (they share its endpoint). After the clusters of a region, the manager
//! releases what it had set up for clusters of that region that no longer exist.
//!
//! [`AutoManagement`] is the real one: `crates/manage`'s `manage_cluster` and
//! `release_departed` with the stack's [`ManageConfig`]. [`NoAgentManagement`] manages nothing
//! (tests, the benchmark).

use std::collections::BTreeSet;
use std::future::Future;

use aws_config::SdkConfig;
use peregrine_manage::{ManageConfig, ManageError, ManageReport};
use peregrine_org::coverage::{Issue, IssueKind};
use peregrine_org::inventory::ClusterInventory;

/// What the agent manager did for one cluster (or, releasing, for one region).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagementOutcome {
    /// Problems to report as the cluster's issues (never a failure of the sweep).
    pub issues: Vec<Issue>,
    /// Whether it changed anything (created, updated or deleted a resource).
    pub changed: bool,
}

/// Deploys and keeps the agent in a cluster. Idempotent: a second call with nothing changed
/// changes nothing.
pub trait AgentManager: Send + Sync {
    fn manage(
        &self,
        member: &SdkConfig,
        cluster: &ClusterInventory,
    ) -> impl Future<Output = ManagementOutcome> + Send;

    /// Releases what was set up for clusters of `account` and `region` that are not in
    /// `existing` (the names the sweep just listed there): deleted clusters. Nothing, unless
    /// the manager sets things up.
    fn release_departed(
        &self,
        _member: &SdkConfig,
        _account: &str,
        _region: &str,
        _existing: &BTreeSet<String>,
    ) -> impl Future<Output = ManagementOutcome> + Send {
        std::future::ready(ManagementOutcome::default())
    }
}

/// Manages nothing.
#[derive(Debug, Default)]
pub struct NoAgentManagement;

impl AgentManager for NoAgentManagement {
    async fn manage(&self, _member: &SdkConfig, _cluster: &ClusterInventory) -> ManagementOutcome {
        ManagementOutcome::default()
    }
}

/// Automatic agent management (`crates/manage`), with the stack's configuration, or the reason
/// there is none (the template's `AgentImage` unset, or a value that does not validate): then
/// every managed cluster reports `Agent management misconfigured` with that reason, and the
/// rest of the sweep goes on.
#[derive(Debug)]
pub struct AutoManagement {
    config: Result<ManageConfig, String>,
}

impl AutoManagement {
    pub fn new(config: Result<ManageConfig, String>) -> AutoManagement {
        if let Err(why) = &config {
            tracing::warn!(reason = %why, "automatic agent management is not configured; AUTO clusters will report it");
        }
        AutoManagement { config }
    }

    fn misconfigured(why: &str) -> ManagementOutcome {
        ManagementOutcome {
            issues: vec![Issue::new(IssueKind::ManagementMisconfigured, why)],
            changed: false,
        }
    }
}

/// A management issue string (`Issue type:Extra information`) as a coverage issue: its own
/// kind when the coverage model has it, else "Agent management failed" with the whole text.
fn issue(text: &str) -> Issue {
    Issue::parse(text).unwrap_or_else(|| Issue::new(IssueKind::ManagementFailed, text))
}

fn from_report(report: &ManageReport) -> ManagementOutcome {
    ManagementOutcome {
        issues: report
            .issues
            .iter()
            .map(|i| issue(&i.to_string()))
            .collect(),
        changed: report.changed(),
    }
}

fn from_error(e: &ManageError) -> ManagementOutcome {
    ManagementOutcome {
        issues: vec![issue(&e.issue())],
        changed: false,
    }
}

impl AgentManager for AutoManagement {
    async fn manage(&self, member: &SdkConfig, cluster: &ClusterInventory) -> ManagementOutcome {
        let cfg = match &self.config {
            Ok(c) => c,
            Err(why) => return AutoManagement::misconfigured(why),
        };
        let inventory = match peregrine_manage::ClusterInventory::try_from(cluster) {
            Ok(i) => i,
            Err(e) => return from_error(&e),
        };
        match peregrine_manage::manage_cluster(member, &inventory, cfg).await {
            Ok(report) => {
                if report.changed() {
                    tracing::info!(cluster = %cluster.arn, actions = ?report.actions, "agent management changed the cluster");
                }
                from_report(&report)
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster.arn, error = %e, "agent management failed");
                from_error(&e)
            }
        }
    }

    async fn release_departed(
        &self,
        member: &SdkConfig,
        account: &str,
        region: &str,
        existing: &BTreeSet<String>,
    ) -> ManagementOutcome {
        if self.config.is_err() {
            return ManagementOutcome::default();
        }
        match peregrine_manage::release_departed(member, account, region, existing).await {
            Ok(report) => {
                if report.changed() {
                    tracing::info!(account, region, actions = ?report.actions, "released the endpoint shares of deleted clusters");
                }
                from_report(&report)
            }
            Err(e) => {
                tracing::warn!(account, region, error = %e, "releasing deleted clusters' endpoint shares failed");
                from_error(&e)
            }
        }
    }
}

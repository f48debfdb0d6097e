//! **The agent-management seam.** For every swept cluster whose selection says *managed* (an
//! account whose management is `AUTO`, or a cluster tagged `peregrine:managed=true`), the sweep
//! calls an [`AgentManager`] with the member account's credentials for the cluster's region and
//! the cluster's inventory, before assessing the cluster. Its issues (a VPC endpoint that could
//! not be created, DNS attributes off, a DaemonSet apply refused) become the cluster's.
//!
//! Automatic agent management itself (issue 9 part 3: the SQS VPC endpoint, the agent's Pod
//! Identity association, the DaemonSet through the Kubernetes API) lives in `crates/manage`,
//! whose `manage_cluster(member, cluster, cfg)` an implementation of this trait calls. Until it
//! is wired in, [`NoAgentManagement`] stands here: it manages nothing and says so once per
//! sweep, and clusters report `managementType: AUTO_MANAGED` as configured.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_config::SdkConfig;
use peregrine_org::coverage::Issue;
use peregrine_org::inventory::ClusterInventory;

/// What the agent manager did for one cluster.
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
}

/// No automatic management in this build (see the module's documentation).
#[derive(Debug, Default)]
pub struct NoAgentManagement {
    warned: AtomicBool,
}

impl AgentManager for NoAgentManagement {
    async fn manage(&self, _member: &SdkConfig, cluster: &ClusterInventory) -> ManagementOutcome {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cluster = %cluster.name,
                account = %cluster.account_id,
                "clusters are configured for AUTO agent management, which this build does not include; deploy the agent yourself (docs/deploy.md)"
            );
        }
        ManagementOutcome::default()
    }
}

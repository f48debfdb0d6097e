//! Automatic agent management for AUTO accounts: what the coverage sweeper does for each
//! covered cluster, and undoes for a cluster that is no longer covered. Every step finds what
//! exists first, so a second call with the same inputs changes nothing.
//!
//! [`manage_cluster`], in the cluster's account (the member-account role's credentials):
//!
//! 1. [`endpoint`]: an SQS interface endpoint in the cluster's VPC (one subnet per AZ, private
//!    DNS, a security group taking HTTPS from the cluster security group), tagged
//!    `peregrine:managed-by=peregrine` and `peregrine:cluster/<name>`. A VPC whose DNS
//!    attributes are off, or that is shared from another account, is an issue, as in GuardDuty.
//! 2. [`identity`]: an EKS Pod Identity association for `peregrine/peregrine-agent` with the
//!    agent role (or, in IRSA mode, nothing but a check).
//! 3. [`access`]: an EKS access entry for the member role, with `AmazonEKSAdminPolicy` scoped
//!    to the `peregrine` namespace; `AmazonEKSClusterAdminPolicy` only for as long as the
//!    cluster-scoped objects (the Namespace and the PriorityClass) need creating, changing or
//!    removing.
//! 4. [`apply`]: `infra/daemonset.yaml`, rendered for the cluster ([`render`]), applied object
//!    by object with server-side apply, through a small Kubernetes client ([`kube`]) that
//!    authenticates with aws-iam-authenticator's token ([`token`]).
//!
//! [`unmanage_cluster`] removes, in reverse, what carries Peregrine's marks (tags, the
//! `peregrine` field manager) and leaves everything else alone.
//!
//! Nothing here panics on what AWS or the API server answers; failures are a [`ManageError`]
//! (with the GuardDuty-style issue string the sweeper shows), conditions the user must fix are
//! [`Issue`]s in the [`ManageReport`].

pub mod access;
pub mod apply;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod identity;
pub mod inventory;
pub mod kube;
pub mod render;
pub mod report;
pub mod token;
mod validate;

pub use config::{AgentIdentity, EndpointIngress, ManageConfig};
pub use error::{ManageError, Step};
pub use inventory::ClusterInventory;
pub use report::{Action, Issue, IssueKind, ManageReport, Outcome, Resource};

/// The tag every AWS resource Peregrine creates carries, and the only one it ever removes.
pub const MANAGED_BY_KEY: &str = "peregrine:managed-by";
pub const MANAGED_BY_VALUE: &str = "peregrine";
/// Per-cluster tag on shared resources (the endpoint and its security group serve every
/// covered cluster of a VPC): `peregrine:cluster/<cluster name>` = the cluster's ARN.
pub const CLUSTER_TAG_PREFIX: &str = "peregrine:cluster/";
/// The agent's namespace and service account, as `infra/daemonset.yaml` names them.
pub const AGENT_NAMESPACE: &str = "peregrine";
pub const AGENT_SERVICE_ACCOUNT: &str = "peregrine-agent";
/// The Kubernetes field manager of everything Peregrine applies.
pub const FIELD_MANAGER: &str = "peregrine";

/// Brings one covered cluster to the managed state: the VPC endpoint, the agent's identity,
/// the access entry and the DaemonSet. `member` holds credentials in the cluster's account
/// (the sweeper's assumed member-account role), in any region: each client is pointed at the
/// cluster's region.
///
/// Idempotent: a second call with the same inputs reports every resource `Unchanged` and
/// changes nothing. Clusters that share a VPC share its endpoint: manage them one after the
/// other, not concurrently (see docs/deploy.md, "Automatic agent management").
pub async fn manage_cluster(
    member: &aws_config::SdkConfig,
    cluster: &ClusterInventory,
    cfg: &ManageConfig,
) -> Result<ManageReport, ManageError> {
    cluster.validate()?;
    cfg.validate()?;
    let clients = Clients::new(member, &cluster.region);
    let mut report = ManageReport::new(&cluster.arn);

    endpoint::ensure(&clients.ec2, cluster, cfg, &mut report).await?;
    identity::ensure(&clients.eks, cluster, cfg, &mut report).await?;
    if let Some(access) = access::ensure(&clients.eks, cluster, cfg, &mut report).await? {
        apply::ensure(member, cluster, cfg, &clients.eks, access, &mut report).await?;
    }
    report.finish();
    Ok(report)
}

/// Removes what Peregrine created for a cluster that is no longer covered: the agent's
/// Kubernetes objects (only those Peregrine's field manager applied), the access entry (only if
/// Peregrine created it), the Pod Identity association (only if tagged as Peregrine's), and the
/// cluster's share of the VPC endpoint (the endpoint and its security group go with the VPC's
/// last covered cluster). A cluster that no longer exists skips the EKS and Kubernetes steps.
///
/// `complete` in the report is false while something is still on its way out (an access policy
/// that has not reached the API server yet, a security group whose endpoint is still being
/// deleted): call again on the next sweep.
pub async fn unmanage_cluster(
    member: &aws_config::SdkConfig,
    cluster: &ClusterInventory,
    cfg: &ManageConfig,
) -> Result<ManageReport, ManageError> {
    cluster.validate()?;
    cfg.validate()?;
    let clients = Clients::new(member, &cluster.region);
    let mut report = ManageReport::new(&cluster.arn);

    if access::cluster_exists(&clients.eks, cluster).await? {
        apply::remove(member, cluster, cfg, &clients.eks, &mut report).await?;
        identity::remove(&clients.eks, cluster, &mut report).await?;
    } else {
        report.left_alone(
            Resource::Cluster,
            &cluster.name,
            "the cluster no longer exists: nothing left in it to remove",
        );
    }
    endpoint::remove(&clients.ec2, cluster, &mut report).await?;
    report.finish();
    Ok(report)
}

/// Releases the VPC endpoint shares of the clusters of one account and region that no longer
/// exist: clusters deleted while managed, whose `peregrine:cluster/<name>` tag would otherwise
/// keep the endpoint (and so its VPC) alive for good. `existing` holds the names of the
/// region's clusters as the sweep just listed them. The endpoint and its security group go
/// with the VPC's last cluster, as in [`unmanage_cluster`]; nothing else of a deleted cluster
/// is left to remove.
pub async fn release_departed(
    member: &aws_config::SdkConfig,
    account_id: &str,
    region: &str,
    existing: &std::collections::BTreeSet<String>,
) -> Result<ManageReport, ManageError> {
    let ec2 = Clients::new(member, region).ec2;
    let mut report = ManageReport::new("");
    for cluster in endpoint::departed(&ec2, account_id, region, existing, &mut report).await? {
        report.left_alone(
            Resource::Cluster,
            &cluster.arn,
            "the cluster no longer exists: releasing its share of the VPC endpoint",
        );
        endpoint::remove(&ec2, &cluster, &mut report).await?;
    }
    report.finish();
    Ok(report)
}

/// The clients of one call, in the cluster's region.
struct Clients {
    ec2: aws_sdk_ec2::Client,
    eks: aws_sdk_eks::Client,
}

impl Clients {
    fn new(member: &aws_config::SdkConfig, region: &str) -> Clients {
        let region = aws_config::Region::new(region.to_owned());
        let ec2 = aws_sdk_ec2::config::Builder::from(member)
            .region(region.clone())
            .build();
        let eks = aws_sdk_eks::config::Builder::from(member)
            .region(region)
            .build();
        Clients {
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            eks: aws_sdk_eks::Client::from_conf(eks),
        }
    }
}
